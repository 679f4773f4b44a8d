"""Memory is planned, not hit: ``plan_tile`` and ``esrgan upscale`` under a real address-space limit."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrgan.inference import (
    FIXED_OVERHEAD,
    MEMORY_HEADROOM,
    MIN_TILE,
    InsufficientMemoryError,
    image_bytes_per_pixel,
    peak_bytes_per_pixel,
    plan_tile,
)
from esrgan.models import RRDBNet, save_generator

GiB = 1 << 30


@pytest.fixture(scope="module")
def paper_model() -> RRDBNet:
    return RRDBNet()  # nf 64, 23 blocks, growth 32: the default settings of the issue


def test_small_image_runs_whole(paper_model: RRDBNet) -> None:
    assert plan_tile(paper_model, 100, 120, available=8 * GiB) == 0


def test_4000x3000_on_a_24_gib_machine_is_tiled_within_memory(paper_model: RRDBNet) -> None:
    available = 20 * GiB  # what MemAvailable says on the 24 GiB machine the issue measured
    tile = plan_tile(paper_model, 3000, 4000, available=available)
    assert tile % 8 == 0 and MIN_TILE <= tile < 3000
    need = image_bytes_per_pixel(paper_model) * 3000 * 4000 + peak_bytes_per_pixel(paper_model) * (tile + 32) ** 2
    assert need + FIXED_OVERHEAD <= MEMORY_HEADROOM * available
    # The largest such tile: 8 more pixels would not fit.
    assert need + peak_bytes_per_pixel(paper_model) * ((tile + 40) ** 2 - (tile + 32) ** 2) + FIXED_OVERHEAD > (
        MEMORY_HEADROOM * available
    )


def test_1400x1000_in_5_gib_is_tiled(paper_model: RRDBNet) -> None:
    # Under `ulimit -v 5G` about 1.3 GiB is left once Python and torch are loaded.
    assert MIN_TILE <= plan_tile(paper_model, 1000, 1400, available=int(1.3 * GiB)) < 1000


def test_when_nothing_fits_one_line_says_which_size_would(paper_model: RRDBNet) -> None:
    with pytest.raises(InsufficientMemoryError) as err:
        plan_tile(paper_model, 15000, 20000, available=4 * GiB)
    message = str(err.value)
    assert "\n" not in message and message.startswith("20000x15000 does not fit in the 4.0 GiB of memory available")
    fits = float(re.search(r"images up to about ([\d.]+) megapixels fit", message).group(1))
    assert 0.5 < fits < 20
    side = int((fits * 1e6) ** 0.5)  # the size it names does fit
    assert plan_tile(paper_model, side, side, available=4 * GiB) >= MIN_TILE


def test_a_requested_tile_that_cannot_fit_names_one_that_does(paper_model: RRDBNet) -> None:
    with pytest.raises(InsufficientMemoryError) as err:
        plan_tile(paper_model, 1000, 1400, tile=0, available=2 * GiB)
    tile = int(re.search(r"--tile (\d+) fits", str(err.value)).group(1))
    assert "the whole image (--tile 0) needs about" in str(err.value)
    assert plan_tile(paper_model, 1000, 1400, tile=tile, available=2 * GiB) == tile


def test_estimate_covers_the_measured_peak() -> None:
    """The per-pixel estimate is above the real peak of a forward pass (measured in a fresh process)."""
    code = (
        "import re, torch\n"
        "from esrgan.models import RRDBNet\n"
        "from esrgan.inference import upscale_tensor, peak_bytes_per_pixel\n"
        "torch.set_num_threads(1)\n"
        "m = RRDBNet(num_feat=32, num_block=1, num_grow=16).eval()\n"
        "upscale_tensor(m, torch.rand(1, 3, 16, 16))\n"
        "rss = lambda k: int(re.search(k + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024\n"
        "base = rss('VmRSS')\n"
        "upscale_tensor(m, torch.rand(1, 3, 192, 160))\n"
        "print((rss('VmHWM') - base) / (192 * 160), peak_bytes_per_pixel(m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    measured, estimate = map(float, out.stdout.split())
    assert measured < estimate < 2 * measured


def _vm_size_after_start(model: Path, engine: str = "torch") -> int:
    """Virtual size of a process that has loaded what ``esrgan upscale --engine ENGINE`` loads, before any image."""
    code = (
        "import re, sys\n"
        "from pipeline.cli import build_parser\n"
        "from pipeline.cli.upscale import _warm_up, load_runner\n"
        "build_parser()\n"
        "_warm_up(load_runner(sys.argv[1], sys.argv[2], device='cpu'))\n"
        "print(int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(model), engine], capture_output=True, text=True, timeout=300, check=True
    )
    return int(out.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/prlimit").exists() and not Path("/bin/prlimit").exists(), reason="no prlimit")
def test_large_image_under_a_memory_limit_is_tiled_not_killed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "model.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(RRDBNet(num_feat=32, num_block=1, num_grow=16), model)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(image)
    limit = _vm_size_after_start(model) + 512 * 2**20  # half a GiB for the image; whole, it needs ~0.7
    limited = ["prlimit", f"--as={limit}", sys.executable]

    # The limit is real: the whole image in one forward pass dies in the allocator.
    raw = (
        "import sys, torch\nfrom pipeline.cli import build_parser\n"
        "from pipeline.cli.upscale import load_model_for_inference\nfrom esrgan.inference import upscale_tensor\n"
        "build_parser()\nupscale_tensor(load_model_for_inference(sys.argv[1], 'cpu'), torch.rand(1, 3, 300, 400))\n"
    )
    crashed = subprocess.run([*limited, "-c", raw, str(model)], capture_output=True, text=True, timeout=600)
    assert crashed.returncode != 0 and "allocate" in crashed.stderr

    # Planned: the default settings succeed in tiles.
    cli = [*limited, "-m", "pipeline.cli", "upscale", str(image), "-m", str(model), "--engine", "torch"]
    done = subprocess.run([*cli, "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "planned in" in done.stderr and "-pixel tiles to fit in memory" in done.stderr
    assert Image.open(tmp_path / "out" / "in_x4.png").size == (1600, 1200)

    # Asking for the whole image is refused in one line that names a tile that fits; nothing is written.
    refused = subprocess.run(
        [*cli, "-o", str(tmp_path / "o2"), "--tile", "0"], capture_output=True, text=True, timeout=600
    )
    errors = [line for line in refused.stderr.splitlines() if line.startswith("esrgan: error:")]
    assert refused.returncode == 1 and len(errors) == 1
    assert re.search(r"the whole image \(--tile 0\) needs about .* available; --tile \d+ fits", errors[0])
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())

    # Every engine plans with the same estimate (measured above its peak for each): the default
    # engine, given the same half GiB beyond what it loads, also succeeds in tiles.
    auto = ["prlimit", f"--as={_vm_size_after_start(model, 'auto') + 512 * 2**20}", sys.executable]
    auto_cli = [*auto, "-m", "pipeline.cli", "upscale", str(image), "-m", str(model)]
    done = subprocess.run([*auto_cli, "-o", str(tmp_path / "o3")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "-pixel tiles to fit in memory" in done.stderr
    assert Image.open(tmp_path / "o3" / "in_x4.png").size == (1600, 1200)
