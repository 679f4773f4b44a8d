"""The served model under load: latency percentiles and peak memory of ``mlflow models serve``.

    python bench/serving_load.py                                   # random generator, demo architecture
    python bench/serving_load.py --model models:/esrgan-x4@champion  # the registered champion's weights
    python bench/serving_load.py --requests 16 --concurrency 4 --size 256 --tiles 0,128

For each tile setting the generator is logged with :func:`pipeline.registry.log_generator_model`
(the pyfunc the register step deploys; only its ``tile`` differs) into a scratch registry, served
by a real ``mlflow models serve --env-manager local`` process, and sent ``--requests`` POSTs of
one ``--size`` x ``--size`` PNG from ``--concurrency`` client threads. Reported per setting:
p50/p95/max latency, throughput, the server's peak resident memory (its whole process tree,
sampled every 20 ms; idle baseline alongside), and the HTTP status of a set of bad requests,
which must be 4xx (a 500 means the server blamed itself for the client's mistake).

Not a test: figures depend on the machine and its load. Results: a table on stdout and
``bench/results/serving_load.json``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "serving_load.json"
MIB = 1024.0 * 1024.0


def png_b64(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_image(size: int) -> np.ndarray:
    """A photo crop (skimage's astronaut, offline) so the PNG codec does realistic work."""
    from skimage import data

    img = data.astronaut()
    reps = -(-size // min(img.shape[:2]))
    return np.tile(img, (reps, reps, 1))[:size, :size].copy()


def post(url: str, body: bytes, content_type: str = "application/json", timeout: float = 600) -> tuple[int, float]:
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return status, time.perf_counter() - start


def request(image_b64: str, column: str = "image") -> bytes:
    return json.dumps({"dataframe_split": {"columns": [column], "data": [[image_b64]]}}).encode()


BAD_REQUESTS: dict[str, tuple[bytes, str]] = {
    "not base64": (request("not base64 at all!"), "application/json"),
    "not an image": (request(base64.b64encode(b"hello").decode()), "application/json"),
    "wrong column": (request(base64.b64encode(b"x").decode(), column="picture"), "application/json"),
    "empty string": (request(""), "application/json"),
    "malformed JSON": (b'{"dataframe_split": ', "application/json"),
    "no body": (b"", "application/json"),
    "wrong content type": (b"image bytes", "image/png"),
}


class TreeMemory:
    """Peak resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        self.root, self.period, self.peak = psutil.Process(pid), period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        total = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.period)

    def __enter__(self) -> TreeMemory:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def serve(model_uri: str, tracking_uri: str, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mlflow models serve`` in its own process group; stopped by its process group id."""
    from pipeline.processes import free_port, mlflow_serve_command, server_process  # after ROOT is on sys.path

    port = free_port()
    cmd = [*mlflow_serve_command(Path(sys.executable).with_name("mlflow"), model_uri, port), "--timeout", "600"]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    with server_process(cmd, f"{url}/ping", log, env=env, timeout=180) as proc:
        yield url, proc


def generator_file(model: str | None, workdir: Path) -> tuple[Path, str]:
    """The weights to serve: a file, a registry URI's generator, or random weights of params.yaml's architecture."""
    from esrgan.models import RRDBNet, load_generator, save_generator

    if model and model.startswith(("models:/", "runs:/")):
        from pipeline.registry import load_registered_generator

        net, label = load_registered_generator(model), model
    elif model:
        net, label = load_generator(model), model
    else:
        import torch

        arch = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
        torch.manual_seed(0)
        net = RRDBNet(**arch)
        label = f"random RRDBNet {arch}"
    path = workdir / "generator.safetensors"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(net, path)
    return path, label


def bench_one(generator: Path, tile: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import mlflow

    from pipeline.registry import log_generator_model

    tracking = f"sqlite:///{workdir / 'bench.db'}"
    mlflow.set_tracking_uri(tracking)
    exp = mlflow.get_experiment_by_name("serving-bench")
    exp_id = exp.experiment_id if exp else mlflow.create_experiment("serving-bench", (workdir / "art").as_uri())
    with mlflow.start_run(experiment_id=exp_id):
        info = log_generator_model(generator, registered_model_name="serving-bench", tile=tile, onnx=False)
    uri = f"models:/serving-bench/{info.registered_model_version}"
    body = request(png_b64(test_image(args.size)))
    with serve(uri, tracking, workdir / f"serve_tile{tile}.log") as (url, proc):
        status, _ = post(url, body)  # warm-up: first request pays lazy initialisation
        assert status == 200, f"warm-up request answered {status}"
        mem = TreeMemory(proc.pid)
        idle = mem.current()
        with mem, ThreadPoolExecutor(args.concurrency) as pool:
            start = time.perf_counter()
            results = list(pool.map(lambda _: post(url, body), range(args.requests)))
            wall = time.perf_counter() - start
        bad = {name: post(url, data, ctype)[0] for name, (data, ctype) in BAD_REQUESTS.items()}
    lat = sorted(t for _, t in results)
    statuses = sorted({s for s, _ in results})
    return {
        "tile": tile,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "size": args.size,
        "statuses": statuses,
        "p50_s": statistics.median(lat),
        "p95_s": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))],
        "max_s": lat[-1],
        "throughput_img_s": args.requests / wall,
        "idle_rss_mib": idle / MIB,
        "peak_rss_mib": mem.peak / MIB,
        "bad_requests": bad,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="generator file or models:/ URI (default: random weights, params.yaml architecture)")
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--size", type=int, default=256, help="request image edge in pixels")
    p.add_argument("--tiles", default="0,128", help="comma-separated served tile edges; 0 = whole image")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        generator, label = generator_file(args.model, workdir)
        rows = [bench_one(generator, int(t), args, workdir) for t in args.tiles.split(",")]
    print(
        f"model: {label}; {args.requests} requests of {args.size}x{args.size}, {args.concurrency} concurrent; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'tile':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'img/s':>6} {'idle MiB':>9} {'peak MiB':>9}  statuses")
    for r in rows:
        print(
            f"{r['tile']:>5} {r['p50_s']:7.2f} {r['p95_s']:7.2f} {r['max_s']:7.2f} {r['throughput_img_s']:6.2f} "
            f"{r['idle_rss_mib']:9.0f} {r['peak_rss_mib']:9.0f}  {r['statuses']}"
        )
    print("bad requests (status per case, must be 4xx):")
    for r in rows:
        print(f"  tile {r['tile']}: " + ", ".join(f"{k} {v}" for k, v in r["bad_requests"].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"model": label, "rows": rows, "cpus": os.cpu_count()}, indent=2))
    server_errors = [k for r in rows for k, v in r["bad_requests"].items() if v >= 500]
    if server_errors:
        print(f"FAIL: 5xx for bad requests: {sorted(set(server_errors))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
