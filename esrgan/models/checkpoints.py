"""Load and save RRDBNet generators in the layouts the ESRGAN ecosystem uses.

Recognised layouts (all converted to BasicSR key names, which ``RRDBNet`` uses):

* BasicSR / Real-ESRGAN: ``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1``...
  optionally wrapped as ``{"params_ema": ..., "params": ...}`` (``params_ema`` preferred);
* the official ESRGAN repository: ``RRDB_trunk.N.RDBK.convJ``, ``trunk_conv``, ``upconv1``,
  ``HRconv``...;
* the older sequential layout of the first community models: ``model.0``, ``model.1.sub.N...``;
* this project's training checkpoints (``{"generator_ema"|"generator": ..., ...}``).

Architecture hyper-parameters are inferred from the tensors, never read from the file's
metadata, with one exception: :func:`save_generator` writes dense blocks narrower than growth 32
zero-padded to 32 (spandrel, hence chaiNNer and ComfyUI, builds every ESRGAN with growth 32) and
records the true growth beside the tensors (:data:`GROWTH_KEY`, :data:`GROWTH_METADATA`); the
loader slices such a file back to its real width. Files are read with
``torch.load(weights_only=True)`` or safetensors, so nothing in them is executed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from esrgan.errors import EsrganError
from esrgan.fileio import write_bytes
from esrgan.models.rrdbnet import RRDBNet

StateDict = dict[str, torch.Tensor]

#: Wrapper keys that hold a generator state dict, in order of preference.
WRAPPER_KEYS = ("params_ema", "params", "generator_ema", "generator", "state_dict", "model")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
#: The dense-block growth spandrel (chaiNNer, ComfyUI) hard-codes for ESRGAN.
SPANDREL_GROWTH = 32
#: Top-level ``.pth`` key, beside ``params_ema``, holding the true growth of a zero-padded file
#: (spandrel unwraps ``params_ema`` and never looks at its siblings).
GROWTH_KEY = "esrgan_num_grow"
#: The same record in a ``.safetensors`` header's ``__metadata__`` (a string, as the format requires).
GROWTH_METADATA = "esrgan.num_grow"


class CheckpointError(EsrganError, ValueError):
    """A checkpoint that cannot be read as an RRDBNet generator; the message is one line."""


def read_state_file(path: str | os.PathLike[str]) -> Mapping[str, object]:
    """Read a ``.pth``/``.pt``/``.safetensors`` file without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            tensors: dict[str, object] = dict(load_file(str(path), device="cpu"))
            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
        if GROWTH_METADATA in metadata:  # the padded-growth record, at the top level as in a .pth
            record = metadata[GROWTH_METADATA]
            tensors[GROWTH_KEY] = int(record) if record.isdigit() else record
        return tensors
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise CheckpointError(f"{path}: empty file")
    zipped, pickled = head == b"PK\x03\x04", head[:1] == b"\x80"  # torch.save's zip archive, legacy pickle
    if not (zipped or pickled):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle, starts {head!r})")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # noise before our one line
            state: Mapping[str, object] = torch.load(path, map_location="cpu", weights_only=True)
            return state
    except pickle.UnpicklingError:
        # torch's message advises retrying with the unsafe loader; ours says what the file would have done.
        code = _pickle_imports(path, zipped)
        if code:
            raise CheckpointError(f"{path}: refused, loading it would run code ({', '.join(code[:3])})") from None
        raise CheckpointError(f"{path}: refused, the pickle holds objects other than tensors and plain data") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None


def _pickle_imports(path: Path, zipped: bool) -> list[str]:
    """The callables a pickle (legacy file, or ``data.pkl`` in torch's zip) would import, read with
    ``pickletools``, which executes nothing; torch's own names are left out."""
    import pickletools
    import zipfile

    found: list[str] = []
    strings: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            if zipped:
                archive = stack.enter_context(zipfile.ZipFile(path))
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                fh = stack.enter_context(archive.open(member))
            else:
                fh = stack.enter_context(open(path, "rb"))
            for op, arg, _ in pickletools.genops(fh):
                if isinstance(arg, str) and "UNICODE" in op.name:
                    strings = [*strings[-1:], arg]
                elif op.name == "GLOBAL" and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                    found.append(".".join(strings))
                if op.name == "STOP":
                    break
    except (ValueError, EOFError, StopIteration, OSError, zipfile.BadZipFile):
        pass  # the opcodes up to the damage are enough to name what it imports
    return [name for name in dict.fromkeys(found) if not name.startswith(("torch.", "collections.OrderedDict"))]


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message; never torch's advice to load with ``weights_only`` off."""
    text = str(exc).strip()
    line = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
    return type(exc).__name__ if "weights_only" in line else line


def unwrap_state_dict(obj: Mapping[str, object], origin: str = "state dict") -> StateDict:
    """Return the tensor mapping inside known wrappers (``params_ema`` before ``params``...)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{origin}: expected a mapping of tensors, found {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            return unwrap_state_dict(inner, origin)
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{origin}: no tensors found (top-level keys: {_sample_keys(obj)})")
    # DataParallel / DDP / torch.compile prefixes.
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _sample_keys(obj: Mapping[str, object], n: int = 4) -> str:
    keys = list(obj.keys())
    return ", ".join(map(str, keys[:n])) + (", ..." if len(keys) > n else "")


_OFFICIAL = [
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv(\d)\.", r"conv_up\1."),
    (r"^HRconv\.", "conv_hr."),
]


def _from_official(state: StateDict) -> StateDict:
    out = {}
    for key, value in state.items():
        for pattern, repl in _OFFICIAL:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _from_sequential(state: StateDict) -> StateDict:
    """Convert the old ``model.N`` layout (``sequential()`` flattens nested blocks).

    model.0 = conv_first; model.1.sub.N.RDBk.convj.0 = dense blocks; model.1.sub.<nb> = conv_body;
    then per x2 step [upsample, conv, lrelu]; then conv_hr, lrelu, conv_last.
    """
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"^model\.(\d+)\.(weight|bias)$", k))})
    trunk = sorted({int(m.group(1)) for k in state if (m := re.match(r"^model\.1\.sub\.(\d+)\.(weight|bias)$", k))})
    if not indices or indices[0] != 0 or len(trunk) != 1 or len(indices) < 3:
        raise CheckpointError("sequential 'model.N' layout without the ESRGAN structure")
    *ups, hr, last = indices[1:]
    names = {0: "conv_first", hr: "conv_hr", last: "conv_last"}
    names.update({idx: f"conv_up{i + 1}" for i, idx in enumerate(ups)})
    out = {}
    for key, value in state.items():
        if m := re.match(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := re.match(r"^model\.1\.sub\.(\d+)\.(weight|bias)$", key):
            out[f"conv_body.{m.group(2)}"] = value
        elif m := re.match(r"^model\.(\d+)\.(weight|bias)$", key):
            out[f"{names[int(m.group(1))]}.{m.group(2)}"] = value
        else:
            raise CheckpointError(f"sequential 'model.N' layout with an unexpected key {key!r}")
    return out


def to_basicsr_layout(state: StateDict) -> StateDict:
    """Rename the keys of any recognised RRDBNet layout to BasicSR's."""
    if any(k.startswith("RRDB_trunk.") for k in state):
        return _from_official(state)
    if any(k.startswith("model.") for k in state):
        return _from_sequential(state)
    return dict(state)


def infer_config(state: StateDict) -> dict[str, int]:
    """Infer ``RRDBNet`` constructor arguments from a BasicSR-layout state dict."""
    required = ("conv_first.weight", "conv_body.weight", "conv_up1.weight", "conv_hr.weight", "conv_last.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"not an RRDBNet (ESRGAN) generator: missing {', '.join(missing)}; found {_describe(state)}"
        )
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"^body\.(\d+)\.", k))}
    if not blocks or blocks != set(range(len(blocks))):
        raise CheckpointError(f"not an RRDBNet (ESRGAN) generator: no contiguous RRDB trunk; found {_describe(state)}")
    if "body.0.rdb1.conv1.weight" not in state:
        raise CheckpointError(
            f"not an RRDBNet (ESRGAN) generator: trunk blocks are not RRDBs; found {_describe(state)}"
        )
    num_feat, first_in = state["conv_first.weight"].shape[:2]
    num_grow = state["body.0.rdb1.conv1.weight"].shape[0]
    out_ch = state["conv_last.weight"].shape[0]
    num_up = sum(f"conv_up{i}.weight" in state for i in (1, 2, 3))
    ratio, rem = divmod(first_in, out_ch)
    if rem or ratio not in (1, 4, 16) or (ratio > 1 and num_up != 2):
        raise CheckpointError(f"RRDBNet with {first_in} input and {out_ch} output channels is not supported")
    scale = {1: 2**num_up, 4: 2, 16: 1}[ratio]
    return {
        "in_ch": first_in // ratio,
        "out_ch": out_ch,
        "scale": scale,
        "num_feat": num_feat,
        "num_block": len(blocks),
        "num_grow": num_grow,
    }


def _describe(state: Mapping[str, object]) -> str:
    return f"{len(state)} tensors, keys like {_sample_keys(state, 3)}"


def _names(keys: list[str], n: int = 8) -> str:
    """Key names in full (never cut), the first ``n`` of them."""
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _check_fit(model: RRDBNet, state: StateDict, strict: bool) -> None:
    """Missing, unexpected and mis-shaped tensors, each named in full, in one line."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing and strict:
        problems.append(f"missing {_names(missing)}")
    if unexpected and strict:
        problems.append(f"unexpected {_names(unexpected)}")
    if shapes:
        problems.append(f"wrong shape {_names(shapes, 3)}")
    if problems:
        c = model.config
        raise CheckpointError(
            f"tensors do not fit an RRDBNet (x{c['scale']}, {c['num_block']} blocks, {c['num_feat']} features): "
            + "; ".join(problems)
        )


def _check_finite(state: StateDict) -> None:
    """NaN or infinite weights make every output pixel NaN: refuse them at load, not mid-image."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"weights are not finite (NaN or infinity) in {_names(bad, 3)}")


def load_generator(source: str | os.PathLike[str] | Mapping[str, object], strict: bool = True) -> RRDBNet:
    """Build an ``RRDBNet`` from a checkpoint file or state dict of any supported layout.

    Args:
        source: path to ``.pth``/``.pt``/``.safetensors``, or an (optionally wrapped) state dict.
        strict: require every tensor to match the inferred architecture.

    Returns:
        The generator in eval mode, on the CPU, with float32 weights.

    Raises:
        CheckpointError: the file is unreadable, would execute code, or is not an RRDBNet.
    """
    origin = str(source) if isinstance(source, (str, os.PathLike)) else "state dict"
    obj = read_state_file(source) if isinstance(source, (str, os.PathLike)) else source
    try:
        state = to_basicsr_layout(unwrap_state_dict(obj, origin))
        config = infer_config(state)
        record = obj.get(GROWTH_KEY) if isinstance(obj, Mapping) else None
        if record is not None:
            state, config = unpad_growth(state, config, record)
        model = RRDBNet(**config)
        state = {k: v.float() for k, v in state.items()}
        _check_fit(model, state, strict)
        _check_finite(state)
        model.load_state_dict(state, strict=strict)
    except CheckpointError as exc:
        msg = str(exc)
        raise CheckpointError(msg if msg.startswith(origin) else f"{origin}: {msg}") from None
    except RuntimeError as exc:
        raise CheckpointError(f"{origin}: tensors do not fit an RRDBNet: {_first_line(exc)}") from None
    return model.eval()


def save_generator(model: RRDBNet, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` atomically as ``.pth`` (BasicSR layout under ``params_ema``) or ``.safetensors``.

    Both are what spandrel (chaiNNer, ComfyUI) recognises as ESRGAN. spandrel builds every ESRGAN
    with growth 32, so narrower dense blocks are written zero-padded to 32 (:func:`pad_growth`,
    exact: the extra channels stay zero) with the true growth recorded beside the tensors, which
    :func:`load_generator` uses to read the file back as ``model``'s own architecture. Wider
    growth cannot be padded: such a file opens here only, and a warning says so.
    """
    path = Path(path)
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"{path}: unsupported generator format, use .pth or .safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    grow: int | None = None
    if model.num_grow < SPANDREL_GROWTH:
        grow, state = model.num_grow, pad_growth(state, model.num_feat, model.num_grow)
    elif model.num_grow > SPANDREL_GROWTH:
        warnings.warn(
            f"{path}: num_grow={model.num_grow} is wider than the growth 32 spandrel-based tools (chaiNNer, "
            "ComfyUI) build, so they cannot load this file; esrgan's own loader can",
            stacklevel=2,
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import save as save_bytes

        metadata = {"format": "pt", "arch": "ESRGAN"} | ({GROWTH_METADATA: str(grow)} if grow else {})
        return write_bytes(path, _canonical_safetensors(save_bytes(state, metadata=metadata)))
    return write_bytes(path, generator_pth_bytes(state, grow))


_DENSE_CONV = re.compile(r"^body\.\d+\.rdb\d\.conv([1-5])\.(weight|bias)$")


def _dense_index(conv: int, num_feat: int, grow: int, width: int) -> tuple[int, torch.Tensor]:
    """Where the real channels of dense conv ``conv`` sit in its growth-``width`` version: the number
    of real output filters, and the indices of its real input channels. The input is
    ``cat(x, x1, ..., x{conv-1})``: ``num_feat`` channels, then per earlier conv ``grow`` real ones
    each followed by its ``width - grow`` padding."""
    outputs = num_feat if conv == 5 else grow
    parts = [torch.arange(num_feat)] + [torch.arange(grow) + num_feat + j * width for j in range(conv - 1)]
    return outputs, torch.cat(parts)


def _map_dense(
    state: Mapping[str, torch.Tensor], change: Callable[[str, torch.Tensor, int, str], torch.Tensor]
) -> StateDict:
    """``state`` with ``change(key, tensor, conv, "weight"|"bias")`` applied to every dense-block conv."""
    out: StateDict = {}
    for key, value in state.items():
        m = _DENSE_CONV.match(key)
        out[key] = change(key, value, int(m.group(1)), m.group(2)) if m else value
    return out


def pad_growth(state: Mapping[str, torch.Tensor], num_feat: int, grow: int, width: int = SPANDREL_GROWTH) -> StateDict:
    """The same network with its dense blocks widened from growth ``grow`` to ``width`` by zeros.

    conv1..conv4 get zero filters (and zero bias) for the extra outputs, so those channels are
    LeakyReLU(0) = 0; conv2..conv5 get zero weights for every padded input channel. The output is
    the same up to the order of floating-point sums.
    """

    def widen(key: str, value: torch.Tensor, conv: int, kind: str) -> torch.Tensor:
        n_out, index = _dense_index(conv, num_feat, grow, width)
        wide_out = num_feat if conv == 5 else width
        if kind == "bias":
            padded = value.new_zeros(wide_out)
            padded[:n_out] = value
        else:
            padded = value.new_zeros(wide_out, num_feat + (conv - 1) * width, *value.shape[2:])
            padded[:n_out, index] = value
        return padded

    return _map_dense(state, widen)


def unpad_growth(state: StateDict, config: dict[str, int], record: object) -> tuple[StateDict, dict[str, int]]:
    """Undo :func:`pad_growth` for a file that records its true growth ``record``.

    Raises:
        CheckpointError: the record is not a growth below the file's, or a padded channel is not zero.
    """
    width = config["num_grow"]
    if isinstance(record, bool) or not isinstance(record, int) or not 1 <= record < width:
        raise CheckpointError(f"{GROWTH_KEY} {record!r} is not a growth below the file's {width}")

    def narrow(key: str, value: torch.Tensor, conv: int, kind: str) -> torch.Tensor:
        n_out, index = _dense_index(conv, config["num_feat"], record, width)
        real = value[:n_out].clone() if kind == "bias" else value[:n_out, index].clone()
        if not torch.equal(pad_growth({key: real}, config["num_feat"], record, width)[key], value):
            raise CheckpointError(
                f"{GROWTH_KEY} says growth {record} padded to {width}, but {key} has non-zero values "
                "in the padding (edited after it was written?)"
            )
        return real

    out = _map_dense(state, narrow)
    return out, {**config, "num_grow": record}


def _canonical_safetensors(raw: bytes) -> bytes:
    """Re-write the JSON header with sorted keys: safetensors orders ``__metadata__`` by a hash map,
    so equal tensors gave different bytes. Offsets are explicit, so key order is free."""
    size = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8-byte alignment with spaces
    return len(header).to_bytes(8, "little") + header + raw[8 + size :]


def generator_pth_bytes(state: Mapping[str, torch.Tensor], num_grow: int | None = None) -> bytes:
    """The ``.pth`` bytes of a generator state dict: a function of the tensors alone.

    ``torch.save`` to a *path* names the archive's top folder after the file, and atomic writes
    go through a randomly named temporary file, so the same weights gave different bytes each
    time (and DVC re-ran every later stage). A buffer always gets the folder name ``archive``,
    and the zip entries carry no timestamps, so equal weights give equal files. ``num_grow``, for
    a zero-padded state, is recorded as :data:`GROWTH_KEY` beside ``params_ema``.
    """
    buf = io.BytesIO()
    torch.save({"params_ema": dict(state)} | ({GROWTH_KEY: num_grow} if num_grow else {}), buf)
    return buf.getvalue()
