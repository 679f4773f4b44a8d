"""Data at DIV2K scale: patch extraction time and disk, training-loader patches/s per worker.

    python bench/data_scale.py generate --out /tmp/div2k_like          # 800 photo-like PNGs, 2040x1356
    python bench/data_scale.py extract --data /tmp/div2k_like --out /tmp/patches --images 40
    python bench/data_scale.py loader --patches /tmp/patches --seconds 20

``generate`` writes a procedural stand-in for DIV2K train (800 photos at 2040x1356, no download):
a smooth bicubic illumination field, mid-frequency colour variation, sharp-edged anti-aliased
shapes and lines, band-limited grain and sensor noise, a slight optical blur. Its PNGs compress to
about 46% of the raw pixels, like real photos (DIV2K train: 800 PNGs, ~3.5 GB).

``extract`` runs the pipeline's extraction (``esrgan.data.extract_with_config``, what
``pipeline/steps/extract_patches.py`` calls) with one worker on the first ``--images`` photos, and reports
seconds per photo, sub-images and bytes on disk, and the extrapolation to the whole set (extraction
is independent per photo, so time and disk scale linearly with photos; time divides by workers).

``loader`` measures the training loader as ``esrgan.training.loop`` builds it
(``PairedPatchDataset`` -> ``EpochIndexed`` -> ``InfiniteSampler`` -> ``DataLoader``, batch 16,
augmentation on) in patches/s *per worker*: ``num_workers=0`` (the whole cost on one core) and
``num_workers=1`` (one worker process feeding the main one, which only collates), for every
``--patch-size``, each storage the dataset offers. The machine's load (``uptime``) is recorded with
every result, since on a shared machine a worker gets less than one core.

The reference consumer: the paper model's GAN step at batch 16 runs ~4.8 it/s on one H200, i.e.
~77 patches/s per GPU (BENCHMARKS.md, GPU section).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GPU_PATCHES_PER_S = 77.0  # paper GAN step, batch 16, ~4.8 it/s on one H200
DIV2K_TRAIN = 800
DIV2K_SIZE = (1356, 2040)  # height, width (the commonest DIV2K train size)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def load_average() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------------- generate


def photo(rng: np.random.Generator, height: int = DIV2K_SIZE[0], width: int = DIV2K_SIZE[1]) -> np.ndarray:
    """One photo-like RGB uint8 image: smooth gradients, sharp edges, grain (see the module docstring)."""
    import cv2

    h, w = height, width
    img = cv2.resize(rng.uniform(20, 235, (4, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img += cv2.resize(rng.normal(0, 18, (34, 51, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(15, 40))):
        color = rng.uniform(0, 255, 3).tolist()
        if rng.random() < 0.5:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(img, centre, int(rng.integers(10, 300)), color, -1, lineType=cv2.LINE_AA)
        else:
            points = rng.integers(0, (w, h), (int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(img, [points], color, lineType=cv2.LINE_AA)
    for _ in range(int(rng.integers(10, 60))):
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        p2 = tuple(int(v) for v in rng.integers(0, (w, h)))
        cv2.line(img, p1, p2, rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 6)), lineType=cv2.LINE_AA)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2) * float(rng.uniform(8, 30))
    img += grain[:, :, None]
    img += rng.normal(0, float(rng.uniform(1, 3)), (h, w, 3)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return out


def generate(out: Path, count: int, seed: int) -> dict[str, Any]:
    """``out/train/0001.png`` ... (DIV2K's names); existing files are kept, so an interrupted run resumes."""
    import cv2

    train = out / "train"
    train.mkdir(parents=True, exist_ok=True)
    (out / "val").mkdir(exist_ok=True)
    start, made = time.perf_counter(), 0
    for i in range(1, count + 1):
        path = train / f"{i:04d}.png"
        if path.exists():
            continue
        rgb = photo(np.random.default_rng([seed, i]))
        tmp = path.with_suffix(".tmp.png")
        cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        tmp.rename(path)
        made += 1
    size = sum(p.stat().st_size for p in train.glob("*.png"))
    return {
        "photos": count,
        "generated_now": made,
        "seconds": round(time.perf_counter() - start, 1),
        "png_gb": size / 1e9,
    }


# -------------------------------------------------------------------------------------- extract


def du_bytes(folder: Path) -> int:
    """Bytes the files under ``folder`` occupy on disk (allocated blocks, as ``du``)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def extract(data: Path, out: Path, images: int, total: int) -> dict[str, Any]:
    from esrgan.data import ExtractConfig, extract_with_config

    src = sorted((data / "train").glob("*.png"))[:images]
    with tempfile.TemporaryDirectory(prefix="subset-", dir=out.parent) as tmp:
        subset = Path(tmp)
        for p in src:
            (subset / p.name).symlink_to(p)
        cfg = ExtractConfig(workers=1)  # BasicSR's x4 recipe: 480 every 240, as params.yaml
        load_before = load_average()
        start, cpu0 = time.perf_counter(), time.process_time()
        summary = extract_with_config(subset, out, cfg, overwrite=True)  # workers=1: in this process
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    hr, lr = du_bytes(out / "hr"), du_bytes(out / "lr")
    per = seconds / len(src)
    factor = total / len(src)
    return {
        "photos": len(src),
        "sub_images": summary["patches"],
        "seconds": round(seconds, 1),
        "seconds_per_photo": round(per, 3),
        "cpu_seconds_per_photo": round(cpu_s / len(src), 3),
        "hr_gb": hr / 1e9,
        "lr_gb": lr / 1e9,
        f"extrapolated_{total}": {
            "sub_images": round(summary["patches"] * factor),
            "one_core_minutes": round(cpu_s / len(src) * total / 60, 1),
            "disk_gb": round((hr + lr) * factor / 1e9, 2),
        },
        "load_before": load_before,
        "uptime_after": uptime(),
    }


# --------------------------------------------------------------------------------------- loader


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loader_rate(dataset: Any, workers: int, seconds: float, batch: int = 16, seed: int = 0) -> dict[str, float]:
    """Patches/s of the training DataLoader over ``seconds`` after a warm-up, wall and per CPU second.

    ``per_cpu_s`` divides by the CPU time of the process doing the loading (the main process with
    no workers, else the worker), so it is what one worker delivers on a core of its own however
    loaded this machine is.
    """

    from esrgan.training.sampler import InfiniteSampler, training_loader

    sampler = InfiniteSampler(len(dataset), batch, seed)
    loader = training_loader(dataset, sampler, workers, prefetch_factor=2, seed=seed, pin_memory=False)
    it = iter(loader)
    for _ in range(2):  # worker start-up and the first reads are not steady state
        next(it)
    pids = [w.pid for w in getattr(it, "_workers", [])]

    def cpu() -> float:
        return sum(_cpu_seconds(pid) for pid in pids) if pids else time.process_time()

    load_before = load_average()
    cpu0, start, n = cpu(), time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        n += next(it)["hr"].shape[0]
    elapsed, used = time.perf_counter() - start, cpu() - cpu0
    del it
    return {
        "patches_per_s": round(n / elapsed, 1),
        "patches_per_cpu_s": round(n / used, 1),
        "loader_cpu_fraction": round(used / elapsed, 2),
        "load": round((load_before + load_average()) / 2, 2),
    }


def loader(patches: Path, sizes: list[int], seconds: float, storages: list[str], cache: Path) -> list[dict[str, Any]]:
    """Rows of patches/s for every storage x HR patch size x (0 workers, 1 worker)."""
    import torch

    from esrgan.data import PairedPatchDataset

    torch.set_num_threads(1)  # as in a DataLoader worker
    rows = []
    for storage in storages:
        for size in sizes:
            # cache_bytes=0: a DIV2K-scale set (~22 GB decoded) never fits the memory cache.
            disk_cache = None if storage == "png" else cache
            start = time.perf_counter()
            dataset = PairedPatchDataset(
                patches, patch_size=size, scale=4, augment=True, seed=0, cache_bytes=0, disk_cache=disk_cache
            )
            init_s = time.perf_counter() - start
            for workers in (0, 1):
                rate = loader_rate(dataset, workers, seconds)
                row = {"storage": storage, "hr_patch": size, "workers": workers, "init_s": round(init_s, 1), **rate}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


# ------------------------------------------------------------------------------------------- s3


def s3_fetch(data: Path, images: int, reps: int, workers: list[int]) -> dict[str, Any]:
    """``pipeline.data.storage.download_prefix`` of ``images`` photos from a loopback SeaweedFS, per worker count.

    Loopback has no network latency, so this shows the overhead of the client and server, not what
    concurrency hides on a real S3 endpoint (tens of ms to the first byte of every object).
    """
    import os as _os

    from pipeline.data import storage
    from tests.e2e.s3 import weed_s3

    src = sorted((data / "train").glob("*.png"))[:images]
    size = sum(p.stat().st_size for p in src)
    with tempfile.TemporaryDirectory(prefix="s3bench-", dir=data.parent) as tmp, weed_s3(Path(tmp) / "weed") as server:
        saved = {k: _os.environ.get(k) for k in server.env()}
        _os.environ.update(server.env())
        try:
            server.create_buckets("bench")
            admin = server.admin()
            for p in src:
                admin.upload_file(str(p), "bench", f"hr/train/{p.name}")
            times: dict[int, list[float]] = {w: [] for w in workers}
            for rep in range(reps):
                for w in workers[rep % len(workers) :] + workers[: rep % len(workers)]:
                    dest = Path(tmp) / f"dest-{w}"
                    start = time.perf_counter()
                    storage.download_prefix("s3://bench/hr", dest, workers=w)
                    times[w].append(time.perf_counter() - start)
                    shutil.rmtree(dest)
        finally:
            for k, v in saved.items():
                if v is None:
                    _os.environ.pop(k, None)
                else:
                    _os.environ[k] = v
    return {
        "objects": len(src),
        "gb": size / 1e9,
        "seconds": {w: sorted(t) for w, t in times.items()},
        "mb_per_s_median": {w: round(size / 1e6 / sorted(t)[len(t) // 2], 1) for w, t in times.items()},
        "load": load_average(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write the procedural DIV2K-sized set")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--count", type=int, default=DIV2K_TRAIN)
    g.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("extract", help="time the extraction step on a subset and extrapolate")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--images", type=int, default=40)
    e.add_argument("--total", type=int, default=DIV2K_TRAIN)
    ld = sub.add_parser("loader", help="training-loader patches/s per worker")
    ld.add_argument("--patches", type=Path, required=True, help="an extraction root (hr/, lr/)")
    ld.add_argument("--patch-size", type=int, nargs="+", default=[128, 192])
    ld.add_argument("--seconds", type=float, default=20.0)
    ld.add_argument("--storage", nargs="+", choices=["png", "decoded"], default=["png", "decoded"])
    ld.add_argument("--cache", type=Path, help="decoded cache folder (default: beside --patches)")
    ld.add_argument("--clean", action="store_true", help="delete --patches and the cache afterwards")
    s3 = sub.add_parser("s3", help="download_prefix from a loopback SeaweedFS, sequential vs concurrent")
    s3.add_argument("--data", type=Path, required=True)
    s3.add_argument("--images", type=int, default=100)
    s3.add_argument("--reps", type=int, default=3)
    s3.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)
    print(uptime(), flush=True)
    if args.cmd == "generate":
        result: Any = generate(args.out, args.count, args.seed)
    elif args.cmd == "extract":
        result = extract(args.data, args.out, args.images, args.total)
    elif args.cmd == "s3":
        result = s3_fetch(args.data, args.images, args.reps, args.workers)
    else:
        cache = args.cache or args.patches.parent / f"{args.patches.name}-decoded"
        result = loader(args.patches, args.patch_size, args.seconds, args.storage, cache)
        result = {
            "rows": result,
            "gpu_patches_per_s": GPU_PATCHES_PER_S,
            "cache_gb": du_bytes(cache) / 1e9 if cache.exists() else 0,
        }
        if args.clean:
            shutil.rmtree(args.patches)
            shutil.rmtree(cache, ignore_errors=True)
    print(json.dumps(result, indent=1), flush=True)
    print(uptime(), flush=True)


if __name__ == "__main__":
    main()
