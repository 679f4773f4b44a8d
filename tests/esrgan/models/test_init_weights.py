"""Starting training from someone else's weights: param_key, layouts, one-line refusals, and the
PSNR stage's ``iterations: 0`` (the init weights become the PSNR model as they are)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
import torch

from esrgan.models import RRDBNet, load_generator, save_generator
from esrgan.models.checkpoints import CheckpointError
from esrgan.models.discriminator import VGGDiscriminator
from esrgan.models.init_weights import (
    _basicsr_names,
    _our_modules,
    discriminator_bytes,
    load_init_discriminator,
    load_init_generator,
)
from esrgan.training import parse_config, train
from tests._training_helpers import make_pairs, tiny_config

warnings.filterwarnings("ignore", message=".*num_grow.*")
TINY_G = {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow": 4, "in_ch": 3, "out_ch": 3}


def tiny(seed: int) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_feat=8, num_block=1, num_grow=4)


def test_param_key_picks_the_weights_basicsr_style(tmp_path: Path) -> None:
    ema, raw = tiny(1), tiny(2)
    path = tmp_path / "net_g_400000.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, path)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_init_generator(path)(x), ema(x))  # auto prefers params_ema
        assert torch.equal(load_init_generator(path, "params")(x), raw(x))
    with pytest.raises(
        CheckpointError,
        match=r"net_g_400000.pth: param_key 'params_g' is not in the file \(its keys: params, params_ema\)",
    ):
        load_init_generator(path, "params_g")


def test_another_architecture_names_the_first_tensor_and_both_shapes(tmp_path: Path) -> None:
    path = save_generator(tiny(0), tmp_path / "g.pth")
    wanted = {**TINY_G, "num_feat": 16}
    with pytest.raises(CheckpointError) as info:
        load_init_generator(path, expected=wanted)
    message = str(info.value)
    assert message.startswith(f"{path}: conv_first.weight is (8, 3, 3, 3) in the file but (16, 3, 3, 3)")
    assert "\n" not in message
    assert load_init_generator(path, expected=TINY_G).config == TINY_G


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("discriminator", "not an RRDBNet"),
        ("swinir", "not an RRDBNet"),
        ("nan", "not finite"),
        ("truncated", "g.pth"),
        ("pickle", "g.pth"),
        ("empty", "empty file"),
    ],
)
def test_files_that_cannot_start_a_generator_are_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "g.pth"
    if content == "discriminator":
        torch.save(VGGDiscriminator(128, 3, 4).state_dict(), path)
    elif content == "swinir":
        torch.save(
            {
                "params": {
                    "conv_first.weight": torch.zeros(60, 3, 3, 3),
                    "layers.0.residual_group.blocks.0.attn.relative_position_bias_table": torch.zeros(225, 6),
                }
            },
            path,
        )
    elif content == "nan":
        model = tiny(0)
        with torch.no_grad():
            model.conv_last.weight[0, 0, 0, 0] = float("nan")
        torch.save(model.state_dict(), path)
    elif content == "truncated":
        save_generator(tiny(0), path)
        path.write_bytes(path.read_bytes()[:500])
    elif content == "pickle":
        path.write_bytes(pickle.dumps(print))  # would import and call code if unpickled freely
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=message) as info:
        load_init_generator(path, expected=TINY_G)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def basicsr_state(model: VGGDiscriminator) -> dict[str, torch.Tensor]:
    """``model``'s weights under BasicSR VGGStyleDiscriminator's names (conv0_0, bn0_1, linear1...)."""
    names = dict(zip(_our_modules(model), _basicsr_names(6 if model.input_size == 256 else 5), strict=True))
    return {f"{names[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("size", [128, 256])
def test_a_basicsr_discriminator_loads_with_equal_output(tmp_path: Path, size: int) -> None:
    torch.manual_seed(size)
    source = VGGDiscriminator(size, 3, 4).eval()
    for module in source.modules():  # non-trivial running statistics, so a BN mix-up would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path / "net_d_400000.pth"
    torch.save({"params": basicsr_state(source)}, path)
    target = VGGDiscriminator(size, 3, 4).eval()
    load_init_discriminator(path, target)
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
    ours = tmp_path / "ours.pth"
    ours.write_bytes(discriminator_bytes(source))
    again = VGGDiscriminator(size, 3, 4).eval()
    load_init_discriminator(ours, again)
    with torch.no_grad():
        assert torch.equal(again(x), source(x))


def test_wrong_discriminators_are_one_line(tmp_path: Path) -> None:
    generator = save_generator(tiny(0), tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match=r"g\.pth: is a generator, not a discriminator"):
        load_init_discriminator(generator, VGGDiscriminator(128, 3, 4))
    wide = tmp_path / "wide.pth"
    wide.write_bytes(discriminator_bytes(VGGDiscriminator(128, 3, 8)))
    with pytest.raises(
        CheckpointError, match=r"wide.pth: features.0.weight is \(8, 3, 3, 3\) in the file but \(4, 3, 3, 3\)"
    ):
        load_init_discriminator(wide, VGGDiscriminator(128, 3, 4))
    with pytest.raises(CheckpointError, match="param_key 'params_ema' is not in the file"):
        load_init_discriminator(wide, VGGDiscriminator(128, 3, 8), "params_ema")


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("patches")
    make_pairs(root / "train", 4, 64)
    make_pairs(root / "val", 1, 64, seed=1)
    return root


def test_zero_psnr_iterations_make_the_init_weights_the_model(tmp_path: Path, patches: Path) -> None:
    released = tmp_path / "RRDB_PSNR_x4.pth"
    torch.save({"params": tiny(7).state_dict()}, released)  # a foreign layout, re-saved as ours
    cfg = tiny_config(pretrain_psnr={"iterations": 0, "init": {"generator": str(released), "param_key": "params"}})
    result = train(
        "psnr",
        cfg,
        patches / "train" / "hr",
        patches / "train" / "lr",
        patches / "val" / "hr",
        patches / "val" / "lr",
        tmp_path / "run",
    )
    assert result.iterations == 0 and result.checkpoint_path is None
    assert "psnr_y" in result.metrics  # measured once on the validation images
    expected = save_generator(tiny(7), tmp_path / "expected.pth").read_bytes()
    assert result.generator_path.read_bytes() == expected  # byte-stable: same weights, same file
    with pytest.raises(ValueError, match=r"iterations 0 means 'the PSNR model is init\.generator'"):
        parse_config(tiny_config(pretrain_psnr={"iterations": 0}))


def test_psnr_training_continues_from_the_init_weights(tmp_path: Path, patches: Path) -> None:
    init = save_generator(tiny(7), tmp_path / "init.pth")
    cfg = tiny_config(pretrain_psnr={"iterations": 1, "val_every": 0, "checkpoint_every": 1})
    cfg["pretrain_psnr"]["optimizer"] = {"lr": 1e-12}  # one update too small to move the weights visibly
    result = train(
        "psnr",
        cfg,
        patches / "train" / "hr",
        patches / "train" / "lr",
        None,
        None,
        tmp_path / "run",
        init_generator=init,
    )
    trained, start = load_generator(result.generator_path), tiny(7)
    for (name, a), b in zip(trained.state_dict().items(), start.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_an_explicit_param_key_keeps_the_true_growth_of_our_own_files(tmp_path: Path) -> None:
    path = save_generator(tiny(3), tmp_path / "ours.pth")  # growth 4, padded to 32 for spandrel
    assert load_init_generator(path, "params_ema", expected=TINY_G).config == TINY_G
