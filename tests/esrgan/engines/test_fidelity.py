"""The fidelity bound that ``auto`` promises: every engine x precision it can pick on this machine
stays within >= 50 dB PSNR and at most 2 grey levels of torch fp32 on the shipped sample photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from esrgan import RRDBNet, upscale
from esrgan.data.sample import SAMPLE_SOURCES, locate_source
from esrgan.engines import EngineUnavailable, auto_order, load_engine, upscale_array
from esrgan.imageio import read_image

MIN_PSNR_DB, MAX_LEVELS = 50.0, 2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def pickable(model: torch.nn.Module) -> list[tuple[str, str, object]]:
    """The (engine, precision) pairs auto may choose here, built; uninstalled ones left out."""
    built = []
    for name, precision in auto_order("cpu"):
        try:
            built.append((name, precision, load_engine(model, name, precision)))
        except EngineUnavailable:
            continue
    return built


def check(model: torch.nn.Module, photos: list[np.ndarray], tile: int = 0) -> dict[str, tuple[float, int]]:
    found = {}
    for name, precision, engine in pickable(model):
        worst_db, worst_levels = float("inf"), 0
        for photo in photos:
            ref = upscale(model, photo, tile=tile, precision="fp32")
            got = upscale_array(engine, photo, tile=tile)  # type: ignore[arg-type]
            worst_db = min(worst_db, psnr(got, ref))
            worst_levels = max(worst_levels, int(np.abs(got.astype(int) - ref.astype(int)).max()))
        found[f"{name} {precision}"] = (worst_db, worst_levels)
    assert found, "no engine at all"
    print({pair: f"{db:.1f} dB, {levels} levels" for pair, (db, levels) in found.items()})  # shown with -s
    for pair, (db, levels) in found.items():
        assert db >= MIN_PSNR_DB and levels <= MAX_LEVELS, f"{pair}: {db:.1f} dB, {levels} levels"
    return found


def test_auto_pairs_stay_within_the_bound_on_sample_photo_crops() -> None:
    """Fast: a small model with the default initialisation on crops of two shipped photos."""
    torch.manual_seed(0)
    model = RRDBNet(num_feat=32, num_block=2, num_grow=16).eval()
    torch.nn.init.constant_(model.conv_last.bias, 0.45)  # mid-grey output: nothing hides in the clamp
    photos = [read_image(locate_source(s))[:32, :48] for s in SAMPLE_SOURCES[:2]]
    found = check(model, photos)
    assert next(iter(found)) == "{} {}".format(*auto_order("cpu")[0]) or len(found) < len(auto_order("cpu"))


@pytest.mark.slow
def test_auto_pairs_stay_within_the_bound_with_the_demo_champion(demo_training) -> None:
    """The trained demo generator on the sample set's validation photos, whole and tiled."""
    from esrgan.models import load_generator

    model = load_generator(demo_training.gan_model).eval()
    photos = [read_image(p) for p in sorted(Path(demo_training.data, "val").iterdir())][:2]
    photos = [p[:192, :192] for p in photos]
    check(model, photos)
    check(model, photos, tile=64)
