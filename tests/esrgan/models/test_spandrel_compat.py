"""Files we write are recognised by spandrel (chaiNNer, ComfyUI) as ESRGAN and give the same output.

spandrel builds every ESRGAN with dense-block growth 32, so ``save_generator`` writes narrower
growth (the demo profile's is 16) zero-padded to 32, with the true growth recorded where spandrel
does not look; our loader slices the file back to the original architecture.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from esrgan.models import CheckpointError, RRDBNet, load_generator, save_generator
from esrgan.models.checkpoints import GROWTH_KEY, GROWTH_METADATA, read_state_file

spandrel = pytest.importorskip("spandrel")

ROOT = Path(__file__).resolve().parents[3]
#: spandrel's output may differ from ours by the order of floating-point sums (padded convs sum
#: more, all-zero, terms), never by more than this.
TOLERANCE = 1e-5


def demo_architecture() -> dict[str, int]:
    """The demo profile's ``model`` section, as ``RRDBNet`` arguments."""
    model = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
    return {k: int(model[k]) for k in ("in_ch", "out_ch", "scale", "num_feat", "num_block", "num_grow")}


CASES = [
    *[pytest.param({"scale": s, "num_feat": 8, "num_block": 1, "num_grow": 16}, id=f"grow16-x{s}") for s in (1, 2, 4)],
    *[pytest.param({"scale": s, "num_feat": 8, "num_block": 1, "num_grow": 32}, id=f"grow32-x{s}") for s in (1, 2, 4)],
    pytest.param({"scale": 4, "num_feat": 8, "num_block": 1, "num_grow": 4}, id="grow4-x4"),
    pytest.param(demo_architecture(), id="demo-params.yaml"),
]


def make(config: dict[str, int], seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    model = RRDBNet(**config).eval()
    with torch.no_grad():  # non-zero biases too, so a mis-placed bias could not hide behind the zero init
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.01)
    return model


def outputs(*models: Any, size: tuple[int, int] = (16, 20)) -> list[torch.Tensor]:
    torch.manual_seed(123)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        return [m(x) for m in models]


def spandrel_model(path: Path, scale: int) -> Any:
    desc = spandrel.ModelLoader().load_from_file(path)
    assert desc.architecture.id == "ESRGAN"
    assert desc.scale == scale
    return desc.model.eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("config", CASES)
def test_spandrel_loads_our_files_with_equal_output(tmp_path: Path, config: dict[str, int], suffix: str) -> None:
    ours = make(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # growth <= 32: nothing to warn about any more
        path = save_generator(ours, tmp_path / f"ours{suffix}")
    theirs = spandrel_model(path, config["scale"])
    mine, spandrels = outputs(ours, theirs)
    if config["num_grow"] == 32:
        assert torch.equal(spandrels, mine)  # nothing padded: the very same arithmetic
    else:
        assert (spandrels - mine).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("config", CASES)
def test_we_read_a_padded_file_back_as_written(tmp_path: Path, config: dict[str, int], suffix: str) -> None:
    ours = make(config)
    back = load_generator(save_generator(ours, tmp_path / f"ours{suffix}"))
    assert back.config == ours.config
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in back.state_dict().items())
    mine, again = outputs(ours, back)
    assert torch.equal(again, mine)


@pytest.mark.parametrize("grow", [16, 32])
def test_the_growth_record_sits_where_spandrel_does_not_look(tmp_path: Path, grow: int) -> None:
    ours = make({"num_feat": 8, "num_block": 1, "num_grow": grow})
    pth = torch.load(save_generator(ours, tmp_path / "g.pth"), weights_only=True)
    st = save_generator(ours, tmp_path / "g.safetensors")
    from safetensors import safe_open

    with safe_open(str(st), framework="pt") as fh:
        metadata = fh.metadata()
        conv1 = fh.get_tensor("body.0.rdb1.conv1.weight")
    assert tuple(pth["params_ema"]["body.0.rdb1.conv1.weight"].shape) == tuple(conv1.shape) == (32, 8, 3, 3)
    assert tuple(pth["params_ema"]["body.0.rdb1.conv5.weight"].shape) == (8, 8 + 4 * 32, 3, 3)
    if grow < 32:
        assert list(pth) == ["params_ema", GROWTH_KEY] and pth[GROWTH_KEY] == grow
        assert metadata[GROWTH_METADATA] == str(grow) and metadata["arch"] == "ESRGAN"
    else:
        assert list(pth) == ["params_ema"] and GROWTH_METADATA not in metadata


def test_a_padded_file_without_the_record_loads_as_growth_32(tmp_path: Path) -> None:
    """A padded file re-saved by another tool (here: spandrel's own layout, and ``params_ema``
    alone) loses the record; read as growth 32 it is the same network, only slower."""
    config = demo_architecture()
    ours = make(config)
    path = save_generator(ours, tmp_path / "ours.pth")
    resaved = tmp_path / "chainner.pth"
    torch.save(spandrel_model(path, config["scale"]).state_dict(), resaved)
    bare = tmp_path / "bare.pth"
    torch.save({"params_ema": read_state_file(path)["params_ema"]}, bare)
    for other in (resaved, bare):
        wide = load_generator(other)
        assert wide.config == {**ours.config, "num_grow": 32}
        mine, theirs = outputs(ours, wide)
        assert (theirs - mine).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize(
    "key, where",
    [
        ("body.0.rdb1.conv2.weight", (0, 8 + 16)),  # input weight on conv1's first padded channel
        ("body.0.rdb2.conv5.weight", (3, 8 + 32 + 31)),  # input weight on conv2's last padded channel
        ("body.0.rdb3.conv4.bias", (20,)),  # bias of a padded output
        ("body.0.rdb1.conv1.weight", (31, 0)),  # filter of a padded output
    ],
)
def test_a_record_with_non_zero_padding_is_refused_in_one_line(
    tmp_path: Path, suffix: str, key: str, where: tuple[int, ...]
) -> None:
    path = save_generator(make({"num_feat": 8, "num_block": 1, "num_grow": 16}), tmp_path / f"g{suffix}")
    if suffix == ".pth":
        raw = torch.load(path, weights_only=True)
        raw["params_ema"][key][where] = 0.5
        torch.save(raw, path)
    else:
        from safetensors.torch import load_file, save_file

        state = load_file(str(path))
        state[key][where] = 0.5
        save_file(state, str(path), metadata={GROWTH_METADATA: "16"})
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert (
        "\n" not in message
        and message.startswith(str(path))
        and key in message
        and "non-zero values in the padding" in message
    )


@pytest.mark.parametrize("record", [32, 40, 0, "sixteen", True])
def test_a_nonsense_record_is_refused_in_one_line(tmp_path: Path, record: object) -> None:
    path = save_generator(make({"num_feat": 8, "num_block": 1, "num_grow": 16}), tmp_path / "g.pth")
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, GROWTH_KEY: record}, path)
    with pytest.raises(CheckpointError, match=f"^{path}: {GROWTH_KEY} .* is not a growth below") as info:
        load_generator(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_padded_files_are_byte_stable(tmp_path: Path, suffix: str) -> None:
    ours = make({"num_feat": 8, "num_block": 1, "num_grow": 16})
    first = save_generator(ours, tmp_path / f"first{suffix}").read_bytes()
    assert save_generator(ours, tmp_path / "b" / f"second{suffix}").read_bytes() == first
    resaved = save_generator(load_generator(tmp_path / f"first{suffix}"), tmp_path / f"resaved{suffix}")
    assert resaved.read_bytes() == first  # load + save is the identity on the bytes
    assert save_generator(make(ours.config, seed=1), tmp_path / f"other{suffix}").read_bytes() != first


def test_growth_wider_than_32_warns_that_spandrel_cannot_open_it(tmp_path: Path) -> None:
    ours = make({"num_feat": 8, "num_block": 1, "num_grow": 40})
    with pytest.warns(UserWarning, match="num_grow=40 .* cannot load this file"):
        path = save_generator(ours, tmp_path / "wide.pth")
    assert list(torch.load(path, weights_only=True)) == ["params_ema"]
    assert load_generator(path).config == ours.config


def test_interpolated_models_open_in_spandrel(tmp_path: Path) -> None:
    from esrgan.models.interpolation import interpolate_sweep

    config = demo_architecture()
    psnr = save_generator(make(config, seed=0), tmp_path / "psnr.pth")
    gan = save_generator(make(config, seed=1), tmp_path / "gan.pth")
    for path in interpolate_sweep(psnr, gan, [0.0, 0.8], tmp_path / "interpolated"):
        ours = load_generator(path)
        assert ours.config == config
        mine, theirs = outputs(ours, spandrel_model(path, config["scale"]))
        assert (theirs - mine).abs().max().item() <= TOLERANCE


def test_the_registered_generator_opens_in_spandrel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``log_generator_model`` re-saves the generator as the model's safetensors artifact."""
    import mlflow.pyfunc  # the module itself: ``mlflow.pyfunc`` after ``import mlflow`` is a lazy proxy

    from pipeline.registry.packaging import log_generator_model

    monkeypatch.chdir(tmp_path)  # nothing may reach a ./mlflow.db, even if the patch below missed

    config = demo_architecture()
    ours = make(config)
    seen: dict[str, torch.Tensor] = {}

    def fake_log_model(**kwargs: Any) -> None:  # the artifact lives in a temporary folder: check it here
        path = Path(kwargs["artifacts"]["generator"])
        assert kwargs["model_config"]["architecture"] == config
        seen["theirs"], seen["back"] = outputs(spandrel_model(path, config["scale"]), load_generator(path))

    monkeypatch.setattr(mlflow.pyfunc, "log_model", fake_log_model)
    log_generator_model(save_generator(ours, tmp_path / "champion.pth"), onnx=False)
    (mine,) = outputs(ours)
    assert torch.equal(seen["back"], mine)
    assert (seen["theirs"] - mine).abs().max().item() <= TOLERANCE


def test_the_trained_generator_opens_in_spandrel(tmp_path: Path) -> None:
    from esrgan.training import train_psnr
    from tests._training_helpers import make_pairs, tiny_config

    hr, lr = make_pairs(tmp_path / "train", 2, 64)
    cfg = tiny_config(pretrain_psnr={"iterations": 2, "val_every": 0, "checkpoint_every": 2, "log_every": 1})
    result = train_psnr(cfg, hr, lr, None, None, tmp_path / "run")
    ours = load_generator(result.final_generator_path)
    assert ours.config["num_grow"] == cfg["model"]["num_grow"] < 32
    mine, theirs = outputs(ours, spandrel_model(result.final_generator_path, 4))
    assert (theirs - mine).abs().max().item() <= TOLERANCE


def test_we_load_what_spandrel_exports(tmp_path: Path) -> None:
    """spandrel's own ESRGAN module stores the old sequential layout; we read it back exactly."""
    torch.manual_seed(0)
    ours = RRDBNet(num_feat=16, num_block=2, num_grow=32).eval()
    desc = spandrel.ModelLoader().load_from_state_dict(ours.state_dict())
    path = tmp_path / "spandrel.pth"
    torch.save(desc.model.state_dict(), path)
    assert any(k.startswith("model.1.sub.") for k in torch.load(path, weights_only=True))
    back = load_generator(path)
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))
