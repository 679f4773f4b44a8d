"""params.yaml: one validated schema shared by DVC, the CLI and KFP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.params import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[2]


def test_committed_profiles_validate() -> None:
    demo = load_params(ROOT / "params.yaml")
    paper = load_params(ROOT / "configs" / "params.paper.yaml")
    # The paper profile is the paper's RRDBNet (23 blocks, 64 features, growth 32, x4); the demo
    # is any smaller model of the same architecture (its size is tuned, so it is not pinned here).
    arch = ("num_feat", "num_block", "num_grow", "scale")
    assert tuple(getattr(paper.model, k) for k in arch) == (64, 23, 32, 4)
    assert demo.model.scale == paper.model.scale and 1 <= demo.model.num_block <= paper.model.num_block
    assert paper.train_config().finetune_gan.perceptual.backbone == "vgg19-imagenet"
    assert demo.registration.model_name == "esrgan-x4"


@pytest.mark.parametrize("profile", ["params.yaml", "configs/params.paper.yaml"])
def test_the_training_view_is_the_training_sections_of_the_same_file(profile: str) -> None:
    """One schema: the library reads a profile's training sections exactly as the pipeline does."""
    from esrgan.training import TrainConfig, load_config

    params = load_params(ROOT / profile)
    view = params.train_config()
    assert type(view) is TrainConfig and set(view.to_dict()) == {
        "model",
        "pretrain_psnr",
        "finetune_gan",
        "runtime",
        "logging",
    }
    assert view == load_config(ROOT / profile)
    assert view.to_dict() == {k: v for k, v in params.model_dump(mode="json").items() if k in view.to_dict()}


def base() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["interpolate"].update(alphas=[0.0, 0.5]), "endpoints"),
        (lambda p: p["interpolate"].update(alphas=[0, 0.5, 1.0]), "decimal"),
        (lambda p: p["interpolate"].update(alphas=[0.0, 1.0, 0.5]), "increasing"),
        (lambda p: p["extract_patches"].update(crop_size=481), "multiple of scale"),
        (lambda p: p["finetune_gan"]["data"].update(patch_size=96), "discriminator"),
        (lambda p: p["register"].update(unknown_key=1), "register.unknown_key"),
        (lambda p: p["model"].update(scale=3), "model.scale"),
    ],
)
def test_bad_params_name_the_key(mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    params = base()
    mutate(params)
    with pytest.raises(ParamsError) as err:
        parse_params(params, "params.yaml")
    assert message in str(err.value) and str(err.value).startswith("params.yaml: ")


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="no such file"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("a: [1, 2")
    with pytest.raises(ParamsError, match="cannot read YAML"):
        load_params(bad)
