"""Time and peak memory of the largest request the served model accepts.

    python bench/serving_limits.py                  # params.yaml's model and register limits
    python bench/serving_limits.py --arch paper     # the paper's x4 network (nf 64, 23 blocks)
    python bench/serving_limits.py --max-pixels 250000   # a smaller limit (quicker on a busy machine)

The request is what a client at the limit sends: one square image of ``max_input_pixels``
(random pixels, PNG, base64; the per-request limit defaults to the per-row one, so this is also
the largest total). It goes through the pyfunc's ``predict`` in this process, exactly as the
scoring server calls it (decode, header checks, tiled upscale at ``register.serve_tile`` through
``--engine``, default the server's own choice, PNG encode). The script first checks that one pixel more is refused with a 400. Weights are random
(seed 0): time and memory do not depend on their values. Peak memory is the resident-set
high-water mark above the resident set just before the request (``bench/common.py``).

Measured with PyTorch fp32, before the engines (2 shared CPU cores, load average 10-20 from other jobs, so
the time is an upper bound):
1 row 1000x1000 (1.00 MP in, 4000x4000 out), demo model x4 nf32 nb4 gc16, tile 256:
683 s, peak memory +692 MiB (1572 MiB resident). 250x250: 58.8 s, +298 MiB.

With the engines (2026-12-07, same machine, load 10.5-11.2; ``--engine auto`` picked OpenVINO bf16):
1000x1000 59.1 s, +819 MiB (1546 MiB resident). 250x250, one run after the other: OpenVINO bf16
4.1 s, +224 MiB; torch fp32 9.8 s, +306 MiB.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from esrgan.engines import load_engine, upscale_array
from esrgan.inference import upscale
from esrgan.models import RRDBNet
from pipeline.registry.pyfunc_model import BadRequest, ESRGANUpscaler

REPO = Path(__file__).resolve().parents[1]
PAPER = {"scale": 4, "num_feat": 64, "num_block": 23, "num_grow": 32}


def png_b64(height: int, width: int) -> str:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def main() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["params", "paper"], default="params")
    parser.add_argument("--max-pixels", type=int, default=int(params["register"]["max_input_pixels"]))
    parser.add_argument("--tile", type=int, default=int(params["register"].get("serve_tile", 256)))
    parser.add_argument("--engine", default="auto", help="auto (what the server picks), openvino, onnxruntime, torch")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16 (torch's auto: fp32)")
    args = parser.parse_args()

    arch = (
        PAPER
        if args.arch == "paper"
        else {k: params["model"][k] for k in ("scale", "num_feat", "num_block", "num_grow")}
    )
    torch.manual_seed(0)
    server = ESRGANUpscaler()
    net = RRDBNet(**arch).eval()
    if args.engine == "torch":  # as the server does (pipeline.registry.pyfunc_model.torch_upscaler)
        precision = "fp32" if args.precision == "auto" else args.precision
        server.upscale = lambda image, tile: upscale(net, image, tile=tile, precision=precision)  # type: ignore[arg-type]
        server.engine = f"torch {precision}"
    else:  # the served model's ONNX file, exported from the same weights in memory
        engine = load_engine(net, engine=args.engine, precision=args.precision)
        server.upscale = lambda image, tile: upscale_array(engine, image, tile=tile)
        server.engine = f"{engine.name} {engine.precision}"
    server.max_pixels = server.max_request_pixels = args.max_pixels
    server.tile = args.tile

    side = math.isqrt(args.max_pixels)
    width = args.max_pixels // side  # side x width <= the limit, as large as a rectangle allows
    try:
        server.predict(None, pd.DataFrame({"image": [png_b64(side, width), png_b64(1, 1)]}))  # type: ignore[arg-type]
        raise SystemExit("a request over the limit was accepted")
    except BadRequest as exc:
        assert exc.get_http_status_code() == 400

    request = pd.DataFrame({"image": [png_b64(side, width)]})
    server.predict(None, pd.DataFrame({"image": [png_b64(16, 16)]}))  # type: ignore[arg-type]  # warm-up
    start = time.perf_counter()
    peak = common.measure_peak(lambda: server.predict(None, request), torch.device("cpu"))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    out_w, out_h = width * arch["scale"], side * arch["scale"]
    print(
        f"largest accepted request: 1 row {width}x{side} ({side * width / 1e6:.2f} MP in, {out_w}x{out_h} out), "
        f"model x{arch['scale']} nf{arch['num_feat']} nb{arch['num_block']} gc{arch['num_grow']}, tile {args.tile}, "
        f"{server.engine}, "
        f"{torch.get_num_threads()} threads ({common.cpu_model()}): {seconds:.1f} s, "
        f"peak memory +{peak['peak_delta_mib']:.0f} MiB ({peak['peak_abs_mib']:.0f} MiB resident)"
    )


if __name__ == "__main__":
    main()
