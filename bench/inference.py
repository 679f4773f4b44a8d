"""Inference throughput and peak memory: every engine x precision vs spandrel (and BasicSR), same weights, same inputs.

    python bench/inference.py                 # CPU suite: torch, ONNX Runtime, OpenVINO x fp32/bf16 (minutes)
    python bench/inference.py --device cuda   # GPU matrix: fp32, bf16/fp16 autocast, channels_last, compile

On the CPU every row runs through ``esrgan.engines`` (``load_engine`` + ``Engine.upscale_nchw``:
the same tile plan and seams as ``esrgan.upscale``), except the peers, which run their own module.
"x spandrel" is spandrel's median time over the row's (> 1: faster than spandrel fp32, the
community default); "peak" is the utilisation against a dense ``torch.matmul`` of the row's
precision measured in the same run (OpenVINO may use Winograd convolutions, which do fewer
multiplies than counted, so its utilisation can read high).

Default network: RRDBNet x4, nf 64, 23 blocks, gc 32, random weights (seed 0), random input (seed 1).
Configurations: the whole image at ``--whole`` px, and ``--tiled`` px in ``--tile`` tiles with
``--tile-pad`` context (every implementation runs the same tile geometry: ours through
``esrgan.upscale_tensor``, the peers through :func:`plain_tiled`, the usual community loop).
Throughput is output megapixels per second (median of ``--reps`` interleaved runs); peak memory
is measured once per implementation in a fresh child process (see ``bench/common.py``).
The FLOP utilisation relates the analytic multiply-add count to the measured matmul peak.
Results: a table on stdout and ``bench/results/inference_<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import peers

from esrgan.engines import EngineUnavailable, load_engine
from esrgan.inference import upscale_tensor
from esrgan.models import RRDBNet

SCRIPT = Path(__file__).resolve()
ARCH = {"num_feat": 64, "num_block": 23, "num_grow": 32, "scale": 4}
Runner = Callable[[torch.Tensor], torch.Tensor]
#: Every engine x precision measured on the CPU (torch fp32 first: ``esrgan.upscale_tensor`` itself).
ENGINE_ROWS = (
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
)


def _openvino_variant(engine: Any, options: dict[str, Any]) -> Any:
    """The same OpenVINO model compiled with other properties (diagnostic rows only; no cache)."""
    from esrgan.engines.runtimes import OV_PRECISION, OpenVinoEngine, ov_core

    core = ov_core()
    compiled = core.compile_model(
        core.read_model(_onnx(engine)),
        "CPU",
        {"INFERENCE_PRECISION_HINT": OV_PRECISION[engine.precision], **options},
    )
    return OpenVinoEngine(compiled, engine.info, engine.precision)


def _onnx(engine: Any) -> bytes:
    from esrgan.engines.loader import _exports

    return _exports[engine.info.digest]


# ---- the work ----------------------------------------------------------------------------------


def rrdbnet_macs_per_lr_pixel(
    num_feat: int = 64, num_block: int = 23, num_grow: int = 32, scale: int = 4, in_ch: int = 3, out_ch: int = 3
) -> int:
    """Multiply-adds of the convolutions per *input* pixel (x4 or x8; biases and activations not counted).

    conv_first and the trunk run at LR resolution; each x2 upsampling conv at 4**k times as many
    pixels; conv_hr and conv_last at the output resolution (scale**2 pixels per LR pixel).
    """
    if scale not in (4, 8):
        raise ValueError("counted for scale 4 and 8 (scales 1 and 2 unshuffle first)")
    k = 9  # 3x3
    nf, gc = num_feat, num_grow
    dense_block = k * gc * (nf + (nf + gc) + (nf + 2 * gc) + (nf + 3 * gc)) + k * nf * (nf + 4 * gc)
    lr = k * in_ch * nf + num_block * 3 * dense_block + k * nf * nf  # conv_first, trunk, conv_body
    ups = sum(k * nf * nf * 4**i for i in range(1, scale.bit_length()))  # conv_up1 (x4 px), conv_up2 (x16)...
    hr = scale * scale * (k * nf * nf + k * nf * out_ch)  # conv_hr, conv_last
    return lr + ups + hr


def plain_tiled(model: nn.Module, x: torch.Tensor, tile: int, tile_pad: int, scale: int) -> torch.Tensor:
    """The community's tiling loop (Real-ESRGAN/chaiNNer style) with our tile geometry, clamped output."""
    n, c, h, w = x.shape
    out = torch.empty((n, c, h * scale, w * scale), dtype=torch.float32)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            cy0, cx0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
            cy1, cx1 = min(y1 + tile_pad, h), min(x1 + tile_pad, w)
            result = model(x[:, :, cy0:cy1, cx0:cx1])
            oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = (
                result[:, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale].float().cpu()
            )
    return out.clamp_(0.0, 1.0)


@dataclass(frozen=True)
class Config:
    name: str
    size: int
    tile: int  # 0: whole image

    def lr_pixels_processed(self, tile_pad: int) -> int:
        """LR pixels the network actually runs on (tiles include their context)."""
        if self.tile == 0:
            return self.size * self.size
        total = 0
        for y0 in range(0, self.size, self.tile):
            for x0 in range(0, self.size, self.tile):
                y1, x1 = min(y0 + self.tile, self.size), min(x0 + self.tile, self.size)
                hy = min(y1 + tile_pad, self.size) - max(y0 - tile_pad, 0)
                hx = min(x1 + tile_pad, self.size) - max(x0 - tile_pad, 0)
                total += hy * hx
        return total


def make_models(device: torch.device) -> dict[str, nn.Module]:
    """Our generator (seed 0) and the peers that load here, all holding the same weights."""
    torch.manual_seed(0)
    ours = RRDBNet(**ARCH).eval().to(device)
    state = {k: v.cpu() for k, v in ours.state_dict().items()}
    models: dict[str, nn.Module] = {"ours": ours}
    for name, load in (("spandrel", peers.spandrel_generator), ("basicsr", peers.basicsr_generator)):
        try:
            models[name] = load(state).to(device)
        except peers.PeerUnavailable as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
    return models


def make_input(size: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand((1, 3, size, size), generator=gen).to(device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[None]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def runners(
    models: dict[str, nn.Module], cfg: Config, tile_pad: int, device: torch.device, variants: bool
) -> dict[str, Runner]:
    """``{row name: x -> clamped output}``. ``variants`` adds the CUDA matrix / diagnostic rows."""
    scale = ARCH["scale"]

    def peer(
        model: nn.Module, fmt: torch.memory_format = torch.contiguous_format, dtype: torch.dtype | None = None
    ) -> Runner:
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), autocast(device, dtype):
                x = x.contiguous(memory_format=fmt)
                if cfg.tile == 0:
                    return model(x).float().clamp_(0.0, 1.0).cpu()
                return plain_tiled(model, x, cfg.tile, tile_pad, scale)

        return run

    def ours(model: nn.Module, precision: str = "fp32") -> Runner:
        return lambda x: upscale_tensor(model, x, cfg.tile, tile_pad, precision)  # type: ignore[arg-type]

    def engine(name: str, precision: str, **options: Any) -> Runner | None:
        try:
            eng = load_engine(models["ours"], name, precision)
        except EngineUnavailable as exc:
            print(f"skipping {name} {precision}: {exc}", file=sys.stderr)
            return None
        if options:  # a diagnostic compile with other OpenVINO properties
            eng = _openvino_variant(eng, options)
        return lambda x: torch.from_numpy(eng.upscale_nchw(x.numpy(), cfg.tile, tile_pad))

    if device.type == "cpu":
        rows: dict[str, Runner] = {}
        for name in ("spandrel", "basicsr"):
            if name in models:
                rows[name] = peer(models[name])
        rows["torch fp32"] = ours(models["ours"])
        for name, precision in ENGINE_ROWS[1:]:
            if (run := engine(name, precision)) is not None:
                rows[f"{name} {precision}"] = run
        if variants:
            if "spandrel" in models:  # the peer given what helps us: bf16 autocast, channels_last
                rows["spandrel bf16 channels_last"] = peer(models["spandrel"], torch.channels_last, torch.bfloat16)
            for hint in ("THROUGHPUT",):
                run = engine("openvino", "bf16", PERFORMANCE_HINT=hint)
                if run is not None:
                    rows[f"openvino bf16 {hint.lower()} hint"] = run
        return rows

    rows = {"ours": ours(models["ours"])}
    for name in ("spandrel", "basicsr"):
        if name in models:
            rows[name] = peer(models[name])
    if not variants:
        return rows
    cl = torch.channels_last
    rows["ours bf16"] = ours(models["ours"], "bf16")
    rows["ours fp16"] = ours(models["ours"], "fp16")
    rows["ours fp32 NCHW model(x)"] = peer(models["ours"])
    compiled = torch.compile(models["ours"])
    rows["ours fp32 compiled"] = ours(compiled)  # type: ignore[arg-type]
    rows["ours fp16 compiled"] = ours(compiled, "fp16")  # type: ignore[arg-type]
    for name in ("spandrel", "basicsr"):
        if name in models:
            rows[f"{name} channels_last"] = peer(models[name], cl)
            rows[f"{name} fp16 autocast channels_last"] = peer(models[name], cl, torch.float16)
            rows[f"{name} bf16 autocast channels_last"] = peer(models[name], cl, torch.bfloat16)
    return rows


# ---- child process: one peak-memory measurement ------------------------------------------------


def child(impl: str, cfg: Config, tile_pad: int, device: torch.device) -> dict[str, Any]:
    models = make_models(device)
    rows = runners(models, cfg, tile_pad, device, variants=impl not in ("ours", "spandrel", "basicsr"))
    run = rows[impl]
    keep = {"ours": models["ours"]} if impl.startswith("ours") else {}
    models.clear()
    models.update(keep)  # drop the other implementations' weights before measuring
    x = make_input(cfg.size, device)
    return common.measure_peak(lambda: run(x), device)


# ---- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--whole", type=int, default=64, help="whole-image input edge (LR px)")
    parser.add_argument("--tiled", type=int, default=128, help="tiled input edge (LR px)")
    parser.add_argument("--tile", type=int, default=64, help="tile edge (LR px)")
    parser.add_argument("--tile-pad", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process peak memory runs")
    parser.add_argument("--no-variants", action="store_true", help="only ours / spandrel / basicsr rows")
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "CONFIG", "SIZE:TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    device = torch.device(args.device)

    if args.child:
        impl, name, geometry = args.child
        size, tile = (int(v) for v in geometry.split(":"))
        print(common.json.dumps(child(impl, Config(name, size, tile), args.tile_pad, device)))
        return

    configs = [Config("whole", args.whole, 0), Config("tiled", args.tiled, args.tile)]
    info = common.machine_info(device)
    info["spandrel"] = peers.spandrel_version()
    with contextlib.suppress(peers.PeerUnavailable):
        info["basicsr"] = peers.basicsr_version()
    macs = rrdbnet_macs_per_lr_pixel()
    peak = common.matmul_peak_gflops(device)
    peaks = {"fp32": peak["gflops"]}
    if device.type == "cpu":
        peaks["bf16"] = common.matmul_peak_gflops(device, dtype=torch.bfloat16)["gflops"]
        from esrgan.engines import auto_order, native_bf16

        info["native_bf16"] = native_bf16()
        info["auto_picks"] = " ".join(auto_order("cpu")[0])
        info["onnxruntime"] = _version("onnxruntime")
        info["openvino"] = _version("openvino")
    print(
        f"machine: {info['cpu'] if device.type == 'cpu' else info['device_name']}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load {info['loadavg_start'][0]:.2f}"
    )
    print(
        f"dense matmul peak: {', '.join(f'{k} {v:.1f}' for k, v in peaks.items())} GFLOP/s; "
        f"RRDBNet x4 nf64 nb23 gc32: {macs:,} multiply-adds per LR pixel"
    )
    if device.type == "cpu":
        print(
            f"onnxruntime {info['onnxruntime']}, openvino {info['openvino']}, spandrel {info['spandrel']}; "
            f"native bf16: {info['native_bf16']}; auto picks: {info['auto_picks']}"
        )

    models = make_models(device)
    results: dict[str, Any] = {
        "machine": info,
        "arch": ARCH,
        "macs_per_lr_pixel": macs,
        "matmul_peak": peak,
        "matmul_peaks_by_precision": peaks,
        "tile_pad": args.tile_pad,
        "reps": args.reps,
        "configs": {},
    }
    for cfg in configs:
        # Diagnostic rows on the whole image only (on CPU), to keep the suite short.
        variants = not args.no_variants and (cfg.tile == 0 or device.type == "cuda")
        rows = runners(models, cfg, args.tile_pad, device, variants=variants)
        x = make_input(cfg.size, device)
        reference = rows["ours" if "ours" in rows else "torch fp32"](x)
        max_diff = {name: float((run(x) - reference).abs().max()) for name, run in rows.items()}
        calls = {name: (lambda run=run, x=x: run(x)) for name, run in rows.items()}
        times = common.time_interleaved(calls, args.reps, args.warmup, device)
        out_mp = cfg.size * cfg.size * ARCH["scale"] ** 2 / 1e6
        flops = 2.0 * macs * cfg.lr_pixels_processed(args.tile_pad)
        entry: dict[str, Any] = {"size": cfg.size, "tile": cfg.tile, "output_megapixels": out_mp, "rows": {}}
        for name in rows:
            t = common.median(times[name])
            precision = "bf16" if "bf16" in name else "fp32"
            child_args = [
                name,
                cfg.name,
                f"{cfg.size}:{cfg.tile}",
                "--device",
                args.device,
                "--tile-pad",
                str(args.tile_pad),
            ]
            mem = {} if args.no_memory else common.run_child(SCRIPT, child_args)
            entry["rows"][name] = {
                "seconds": times[name],
                "median_s": t,
                "mp_per_s": out_mp / t,
                "gflops": flops / t / 1e9,
                "utilisation": flops / t / 1e9 / peaks.get(precision, peak["gflops"]),
                "precision": precision,
                "max_abs_diff_vs_ours": max_diff[name],
                "memory": mem,
            }
        results["configs"][cfg.name] = entry
        report(cfg, entry)
    path = common.write_json(f"inference_{device.type}.json", results)
    print(f"\nload average at end: {common.os.getloadavg()[0]:.2f}; wrote {path}")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def report(cfg: Config, entry: dict[str, Any]) -> None:
    rows = entry["rows"]
    if "ours" not in rows:
        report_engines(cfg, entry)
        return
    ours = rows["ours"]
    geometry = f"{cfg.size}x{cfg.size} whole" if cfg.tile == 0 else f"{cfg.size}x{cfg.size}, tile {cfg.tile}"
    print(f"\n{cfg.name}: input {geometry} -> {entry['output_megapixels']:.2f} MP out")
    table = []
    for name, r in rows.items():
        mem = r["memory"].get("peak_delta_mib", float("nan"))
        table.append(
            [
                name,
                r["median_s"],
                r["mp_per_s"],
                r["median_s"] / ours["median_s"] if name != "ours" else 1.0,  # speed ratio ours/peer (>1: ours faster)
                mem,
                ours["memory"].get("peak_delta_mib", float("nan")) / mem,  # ours/peer (<=1: ours no bigger)
                r["utilisation"],
                f"{r['max_abs_diff_vs_ours']:.1e}",
            ]
        )
    common.print_table(
        ["impl", "median s", "MP/s", "speed ours/this", "peak MiB", "mem ours/this", "FLOP util", "max|diff|"], table
    )


def report_engines(cfg: Config, entry: dict[str, Any]) -> None:
    """The CPU table: every engine x precision against spandrel fp32."""
    rows = entry["rows"]
    ref = rows.get("spandrel", rows["torch fp32"])["median_s"]
    geometry = f"{cfg.size}x{cfg.size} whole" if cfg.tile == 0 else f"{cfg.size}x{cfg.size}, tile {cfg.tile}"
    print(f"\n{cfg.name}: input {geometry} -> {entry['output_megapixels']:.2f} MP out")
    table = [
        [
            name,
            r["median_s"],
            f"{ref / r['median_s']:.2f}x",
            r["gflops"],
            f"{100 * r['utilisation']:.0f}% {r['precision']}",
            r["memory"].get("peak_delta_mib", float("nan")),
            f"{r['max_abs_diff_vs_ours']:.1e}",
        ]
        for name, r in rows.items()
    ]
    common.print_table(
        ["engine", "median s", "x spandrel", "GFLOP/s", "of peak", "peak MiB", "max|diff| vs torch fp32"], table
    )


if __name__ == "__main__":
    main()
