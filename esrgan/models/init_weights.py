"""Initial weights for training: a generator or discriminator from someone else's file.

Fine-tuning starts from released weights (``RRDB_PSNR_x4.pth``, a BasicSR ``net_g_400000.pth``
with ``params`` and ``params_ema``, a chaiNNer export) or from this project's own. These loaders
read any layout :func:`esrgan.models.load_generator` reads, pick the weights by ``param_key``
(BasicSR's ``param_key_g``), and compare the file's architecture with the configured one tensor by
tensor, so a mismatch is one line naming the file, the first tensor that differs and both shapes.
Nothing in a file is executed (``weights_only`` / safetensors).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from esrgan.models.checkpoints import GROWTH_KEY, CheckpointError, load_generator, read_state_file, unwrap_state_dict
from esrgan.models.discriminator import VGGDiscriminator
from esrgan.models.rrdbnet import RRDBNet

__all__ = [
    "discriminator_bytes",
    "generator_architecture",
    "load_init_discriminator",
    "load_init_generator",
    "select_weights",
]


def _keys(obj: Mapping[str, object], n: int = 6) -> str:
    keys = [str(k)[:40] for k in obj]
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def select_weights(obj: Mapping[str, object], param_key: str, origin: str) -> Mapping[str, object]:
    """The mapping ``param_key`` names in a checkpoint (``auto``: the file as it is, whose
    ``params_ema`` is then preferred over ``params`` by the loaders).

    Raises:
        CheckpointError: ``param_key`` is not a key of the file holding weights.
    """
    if param_key == "auto":
        return obj
    inner = obj.get(param_key)
    if not isinstance(inner, Mapping) or not inner:
        raise CheckpointError(f"{origin}: param_key {param_key!r} is not in the file (its keys: {_keys(obj)})")
    if GROWTH_KEY in obj:  # the padded dense blocks' true growth travels with the chosen weights
        return {**inner, GROWTH_KEY: obj[GROWTH_KEY]}
    return inner


def _relabel(exc: CheckpointError, origin: str) -> CheckpointError:
    msg = str(exc).removeprefix("state dict: ")
    return CheckpointError(msg if msg.startswith(origin) else f"{origin}: {msg}")


def generator_architecture(path: str | os.PathLike[str], param_key: str = "auto") -> dict[str, int]:
    """The RRDBNet architecture of a generator file (``model: auto`` reads it from here)."""
    return load_init_generator(path, param_key).config


def load_init_generator(
    path: str | os.PathLike[str], param_key: str = "auto", expected: Mapping[str, int] | None = None
) -> RRDBNet:
    """Read a generator to start training from.

    Args:
        path: any layout :func:`load_generator` reads.
        param_key: see :func:`select_weights`.
        expected: the configured architecture (``RRDBNet`` arguments); a file of another one is
            refused naming the first tensor whose shape differs, with both shapes.

    Raises:
        CheckpointError: unreadable, not an RRDBNet (a SwinIR, a compact SRVGG, a discriminator),
            NaN weights, ``param_key`` missing, or another architecture than ``expected``.
    """
    origin = str(path)
    obj = select_weights(read_state_file(path), param_key, origin)
    try:
        model = load_generator(obj)
    except CheckpointError as exc:
        raise _relabel(exc, origin) from None
    if expected is not None and dict(expected) != model.config:
        files = f"the file is {_describe(model.config)}, params.yaml asks for {_describe(dict(expected))}"
        want = RRDBNet(**dict(expected)).to("meta").state_dict()
        mismatch = _first_mismatch(model.state_dict(), want, "params.yaml's model")
        raise CheckpointError(f"{origin}: {mismatch or 'another architecture'} ({files}; or set model: auto)")
    return model


def _first_mismatch(have: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor], what: str) -> str | None:
    """The first tensor that is missing, of another shape or extra, with both shapes; None if all fit."""
    for key, tensor in want.items():
        if key not in have:
            return f"has no {key} {tuple(tensor.shape)} that {what} needs"
        if have[key].shape != tensor.shape:
            return f"{key} is {tuple(have[key].shape)} in the file but {tuple(tensor.shape)} for {what}"
    extra = [k for k in have if k not in want]
    return f"has {extra[0]} that {what} lacks" if extra else None


def _describe(config: Mapping[str, int]) -> str:
    return (
        f"x{config['scale']}, num_feat {config['num_feat']}, num_block {config['num_block']}, "
        f"num_grow {config['num_grow']}, {config['in_ch']}->{config['out_ch']} channels"
    )


def _basicsr_names(stages: int) -> list[str]:
    """BasicSR ``VGGStyleDiscriminator``'s parameter modules, in the order of ours."""
    names = ["conv0_0", "conv0_1", "bn0_1"]
    for i in range(1, stages):
        names += [f"conv{i}_0", f"bn{i}_0", f"conv{i}_1", f"bn{i}_1"]
    return [*names, "linear1", "linear2"]


def _our_modules(model: VGGDiscriminator) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]


def _from_basicsr(state: Mapping[str, torch.Tensor], model: VGGDiscriminator) -> dict[str, torch.Tensor]:
    ours = _our_modules(model)
    stages = 1 + sum(
        1 for name in _basicsr_names(6) if re.fullmatch(r"conv[1-9]_0", name) and f"{name}.weight" in state
    )
    theirs = _basicsr_names(stages)
    if len(theirs) != len(ours):
        return dict(state)  # another depth: _check below names the first tensor that does not fit
    renamed = {}
    for mine, basicsr in zip(ours, theirs, strict=True):
        for key, value in state.items():
            if key.startswith(f"{basicsr}."):
                renamed[f"{mine}.{key[len(basicsr) + 1 :]}"] = value
    return renamed


def load_init_discriminator(path: str | os.PathLike[str], model: VGGDiscriminator, param_key: str = "auto") -> None:
    """Load a discriminator file into ``model`` (this project's layout or BasicSR's).

    Raises:
        CheckpointError: unreadable, ``param_key`` missing, a generator given as a discriminator,
            another input size or width (first mismatching tensor and both shapes), NaN weights.
    """
    origin = str(path)
    obj = select_weights(read_state_file(path), param_key, origin)
    try:
        state = unwrap_state_dict(obj, origin)
    except CheckpointError as exc:
        raise _relabel(exc, origin) from None
    if any(k.startswith("conv0_0.") for k in state):
        state = _from_basicsr(state, model)
    if "conv_first.weight" in state or any(k.startswith(("RRDB_trunk.", "body.")) for k in state):
        raise CheckpointError(f"{origin}: is a generator, not a discriminator (keys like {_keys(state, 3)})")
    want = model.state_dict()
    what = f"finetune_gan.discriminator (num_feat, patch_size {model.input_size})"
    mismatch = _first_mismatch(state, want, what)
    if mismatch is not None:
        raise CheckpointError(f"{origin}: {mismatch} (keys like {_keys(state, 3)})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{origin}: weights are not finite (NaN or infinity) in {bad[0]}")
    model.load_state_dict({k: v.to(want[k].dtype) for k, v in state.items()})


def discriminator_bytes(model: nn.Module) -> bytes:
    """A discriminator's ``.pth`` bytes, a function of the tensors alone (see ``generator_pth_bytes``)."""
    buf = io.BytesIO()
    state: dict[str, Any] = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"params": state}, buf)
    return buf.getvalue()
