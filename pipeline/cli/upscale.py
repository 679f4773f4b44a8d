"""Upscale files and folders on disk: what ``esrgan upscale`` does.

The rules a user can rely on (the README repeats them):

* Every input ``dir/name.ext`` is written to ``OUTPUT/name<suffix>.png``; ``suffix`` is a template
  whose only field is ``{scale}``, and it cannot contain a path separator, so nothing is written
  outside ``OUTPUT``.
* The whole run is planned before anything is written: two inputs that map to the same output
  name, an output that would replace an input, and (without ``overwrite``) an output that already
  exists all refuse the run with one line, exit status 2, nothing written.
* The suffix is literal text and ``{scale}`` (no conversion, no format spec); an output name
  longer than the file system allows (255 bytes on most) refuses the run the same way.
* Unreadable images, images that do not fit in memory and outputs that cannot be written (disk
  full, a folder in the way) are reported in one line each and skipped; the rest are written and
  the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import string
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from esrgan.devices import DeviceError, resolve_device
from esrgan.engines import (
    DEFAULT_TILE_PAD,
    Engine,
    EngineLoadError,
    EngineUnavailable,
    InsufficientMemoryError,
    available_memory,
    load_engine,
    plan_tile,
    precision_for,
    upscale_array,
)
from esrgan.imageio import ImageReadError, image_info, is_image_path, read_image, write_image
from esrgan.models import RRDBNet
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

#: Exit statuses of ``upscale_files`` (and ``esrgan upscale``).
EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UpscaleError(PipelineError, ValueError):
    """A bad ``esrgan upscale`` invocation (device, output names, suffix); nothing was written.

    The message is one line. Caught by the command line as a user error (exit status 2).
    """


def collect_inputs(inputs: Iterable[Path]) -> list[Path]:
    """Expand folders (their image files, sorted, not recursive) and keep files as given."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and is_image_path(p))
        else:
            files.append(item)
    return files


def load_model_for_inference(model_ref: str, device: str = "auto") -> RRDBNet:
    """Load a generator from a file (or a ``models:/`` registry URI) onto ``device``, ready for inference."""
    import torch

    from esrgan.models import load_generator

    try:  # before loading: a bad --device fails fast
        dev = resolve_device(device)
    except DeviceError as exc:
        raise UpscaleError(f"--device {str(exc).replace('; use cpu', '; use --device cpu')}") from None
    if model_ref.startswith(("models:/", "runs:/")):
        model = _load_from_mlflow(model_ref)
    else:
        model = load_generator(model_ref)
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


class ModelUriError(PipelineError):
    """A ``models:/`` or ``runs:/`` URI that cannot be loaded (unknown model, alias, version or run;
    the server refused); the message is one line naming the URI."""


#: At most this many characters of MLflow's message (a 404 page can be long) go into ours.
MAX_MLFLOW_MESSAGE = 300


def _load_from_mlflow(model_ref: str) -> RRDBNet:
    """The generator inside a ``models:/`` or ``runs:/`` URI, failing in seconds with one line.

    An HTTP tracking server (and registry) is probed first and MLflow's retries are kept short
    (:data:`pipeline.registry.tracking.FAIL_FAST_HTTP_ENV`): a dead server is reported in seconds, not after
    minutes of retries. Credentials in the tracking URI move out of it before MLflow sees it.

    Raises:
        TrackingUnavailable: the server does not answer, or is not an MLflow server.
        ModelUriError: unknown model, alias, version or run, or another answer MLflow refused.
    """
    import mlflow
    import requests
    from mlflow.exceptions import MlflowException

    from pipeline.errors import redact
    from pipeline.registry.packaging import load_registered_generator
    from pipeline.registry.tracking import FAIL_FAST_HTTP_ENV, adopt_uri_credentials, check_reachable

    for name, value in FAIL_FAST_HTTP_ENV.items():
        os.environ.setdefault(name, value)
    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    servers = [tracking_uri] + ([registry_uri] if model_ref.startswith("models:/") else [])
    for uri in dict.fromkeys(servers):
        check_reachable(uri)
    if (clean := adopt_uri_credentials(tracking_uri)) != tracking_uri:
        mlflow.set_tracking_uri(clean)
    if (clean := adopt_uri_credentials(registry_uri)) != registry_uri:
        mlflow.set_registry_uri(clean)
    where = redact(registry_uri if model_ref.startswith("models:/") else tracking_uri)
    try:
        return load_registered_generator(model_ref)
    except MlflowException as exc:
        lines = (exc.message or str(exc)).strip().splitlines() or [type(exc).__name__]
        problem = lines[0][:MAX_MLFLOW_MESSAGE]
        raise ModelUriError(f"{redact(model_ref)}: {redact(problem)} (tracking URI {where})") from None
    except requests.exceptions.RequestException as exc:  # the artifact download lost the server
        raise ModelUriError(
            f"{redact(model_ref)}: cannot download the model from {where} ({type(exc).__name__})"
        ) from None


#: At most this many characters of a user's text are quoted back in an error message.
MAX_QUOTE = 60
#: Longest file name (bytes) when the file system does not say (``os.pathconf`` ``PC_NAME_MAX``).
DEFAULT_NAME_MAX = 255


def quote(text: str, limit: int = MAX_QUOTE) -> str:
    """``repr`` of user input, cut to ``limit`` characters with a note of the full length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]}


def _show(path: Path | str, limit: int | None = None) -> str:
    """A path for a one-line message: control characters escaped (a file name may hold a newline),
    and with ``limit``, only its start and end around ``...`` when longer."""
    text = str(path).translate(_CONTROL)
    if limit is None or len(text) <= limit:
        return text
    return f"{text[: limit // 2 - 2]}...{text[-(limit // 2 - 1) :]}"


def _short(path: Path | str) -> str:
    return _show(path, 100)


def check_suffix(suffix: str) -> None:
    """A suffix template is literal text with, optionally, the field ``{scale}`` written exactly so.

    No other field, no conversion (``!r``), no format spec (``:>9``), no path separator or control
    character: it must stay a short, plain file-name part. Messages quote at most
    :data:`MAX_QUOTE` characters of it.

    Raises:
        UpscaleError: any of the above, or unbalanced braces.
    """
    q = quote(suffix)
    if any(sep in suffix for sep in {"/", os.sep, os.altsep or "/", "\0"}):
        raise UpscaleError(f"--suffix {q}: must not contain a path separator (outputs stay in -o)")
    if any(ord(c) < 32 or ord(c) == 127 for c in suffix):
        raise UpscaleError(f"--suffix {q}: must not contain control characters")
    try:
        parts = list(string.Formatter().parse(suffix))
    except ValueError as exc:
        raise UpscaleError(
            f"--suffix {q}: not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field != "scale":
            raise UpscaleError(f"--suffix {q}: unknown field {{{field[:MAX_QUOTE]}}}; the only field is {{scale}}")
        if spec or conversion is not None:
            raise UpscaleError(f"--suffix {q}: bad format for {{scale}}; write it as {{scale}}, with no ! or :")


def name_max(folder: Path) -> int:
    """Longest file name (bytes) in ``folder`` (or its nearest existing parent) the file system allows."""
    for candidate in (folder, *folder.absolute().parents):
        if candidate.is_dir():
            try:
                limit = os.pathconf(candidate, "PC_NAME_MAX")
            except (OSError, ValueError, AttributeError):
                break
            return limit if limit > 0 else DEFAULT_NAME_MAX
    return DEFAULT_NAME_MAX


def _check_name(src: Path, name: str, limit: int) -> None:
    try:
        size = len(os.fsencode(name))
    except UnicodeError:
        raise UpscaleError(f"{_short(src)}: its output name cannot be encoded for this file system") from None
    if size > limit:
        raise UpscaleError(
            f"{_short(src)}: the output name would be {size} bytes, over the file system's limit of {limit}; "
            "rename the input or shorten --suffix"
        )


def plan_outputs(files: list[Path], output_dir: Path, suffix: str, scale: int, overwrite: bool) -> list[Path]:
    """Output path of every input, checked as a whole before anything is written.

    Raises:
        UpscaleError: an output name is longer than the file system allows, two inputs share an
            output, an output would replace an input, or (without ``overwrite``) outputs already
            exist; ``-o`` is not a folder.
    """
    check_suffix(suffix)
    if output_dir.exists() and not output_dir.is_dir():
        raise UpscaleError(f"-o {_show(output_dir)}: exists and is not a folder")
    outputs = [output_dir / f"{path.stem}{suffix.format(scale=scale)}.png" for path in files]
    limit = name_max(output_dir)
    for src, out in zip(files, outputs, strict=True):  # before any other check touches the name
        _check_name(src, out.name, limit)
    root = output_dir.resolve()
    seen: dict[str, Path] = {}
    inputs = {os.path.normcase(p.resolve()): p for p in files}
    for src, out in zip(files, outputs, strict=True):
        if out.name in ("", ".", "..") or out.resolve().parent != root:
            raise UpscaleError(f"{_show(src)}: output name {out.name!r} would leave {_show(output_dir)}")
        key = os.path.normcase(out.resolve())
        if key in seen and os.path.normcase(seen[key].resolve()) != os.path.normcase(src.resolve()):
            raise UpscaleError(
                f"{_show(seen[key])} and {_show(src)} would both be written to {_show(out)}; "
                "rename one or upscale them into different -o folders"
            )
        if key in inputs:
            raise UpscaleError(
                f"{_show(src)}: output {_show(out)} would overwrite the input {_show(inputs[key])}; choose another -o or --suffix"
            )
        seen[key] = src
    # The same input given twice (a file and its folder) is done once, not refused.
    unique = list(dict.fromkeys(zip(files, outputs, strict=True)))
    if not overwrite:
        existing = [out for _, out in unique if out.exists() or out.is_symlink()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise UpscaleError(
                f"{_show(existing[0])} already exists{more}; pass --overwrite to replace, or choose another -o"
            )
    return outputs


def _place(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a finished file into place; without ``overwrite`` a file created meanwhile is kept."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # fails if ``final`` exists, atomically, unlike a rename
    except FileExistsError:
        raise ImageReadError(f"{final}: appeared while upscaling; kept it (pass --overwrite to replace)") from None
    finally:
        tmp.unlink(missing_ok=True)


def _warm_up(model: RRDBNet | Engine) -> None:
    """One tiny forward pass before planning: it starts the thread pool, whose stacks and
    allocator arenas count against an address-space limit (``ulimit -v``) and must be in the plan."""
    if isinstance(model, Engine):
        model.upscale_nchw(np.zeros((1, model.in_ch, 8, 8), dtype=np.float32))
        return
    import torch

    from esrgan.inference import upscale_tensor

    upscale_tensor(model, torch.zeros(1, 3, 8, 8), precision="fp32")


def load_runner(model_ref: str, engine: str = "auto", precision: str = "auto", device: str = "auto") -> Engine:
    """The engine ``esrgan upscale`` runs: ``model_ref`` (a checkpoint, a ``models:/`` URI, or an
    exported ``.onnx`` file, which needs no torch) on ``engine`` in ``precision`` (see
    :func:`esrgan.engines.load_engine`). Engines that are not installed are skipped by ``auto``
    with one line under ``-v``.

    Raises:
        UpscaleError: the engine asked for cannot run here, or the ``.onnx`` file is not a model.
    """
    return _engine_for(_model_source(model_ref, device), engine, precision)


def _model_source(model_ref: str, device: str) -> Path | RRDBNet:
    """What engines are built from: the ``.onnx`` path as it is, else the loaded torch generator."""
    if model_ref.lower().endswith(".onnx") and not model_ref.startswith(("models:/", "runs:/")):
        if device not in ("auto", "cpu"):
            raise UpscaleError(f"--device {device}: an .onnx model runs on the CPU here; use --device cpu")
        return Path(model_ref)
    return load_model_for_inference(model_ref, device)


def _engine_for(source: Path | RRDBNet, engine: str, precision: str) -> Engine:
    try:
        return load_engine(source, engine, precision)
    except EngineUnavailable as exc:
        raise UpscaleError(f"--engine {engine}: {exc}") from None
    except EngineLoadError as exc:
        raise UpscaleError(str(exc)) from None


def upscale_files(
    inputs: Iterable[Path],
    model_ref: str,
    output_dir: Path,
    tile: int | None = None,
    tile_pad: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    suffix: str = "_x{scale}",
    overwrite: bool = False,
    engine: str = "auto",
) -> int:
    """Upscale every input image into ``output_dir`` as PNG, following the rules in the module docstring.

    Args:
        tile: tile edge in input pixels; ``None`` plans it per image from its size and the free
            memory (``esrgan.inference.plan_tile``), 0 forces the whole image at once.
        engine, precision: see :func:`load_runner`; the engine is compiled once for the whole run.

    Returns:
        ``EXIT_OK`` when every file succeeded, ``EXIT_SOME_FAILED`` when any was skipped.

    Raises:
        UpscaleError, CheckpointError, FileNotFoundError: the run cannot start; nothing was written.
    """
    check_suffix(suffix)  # before the (slow) model load
    files = collect_inputs(inputs)
    if not files:
        raise FileNotFoundError("no input images found")
    if tile is not None and tile < 0:
        raise UpscaleError(f"--tile {tile}: must be 0 (whole image) or a positive number of pixels")
    pad = DEFAULT_TILE_PAD if tile_pad is None else tile_pad
    if pad < 0:
        raise UpscaleError(f"--tile-pad {pad}: must not be negative")
    source = _model_source(model_ref, device)
    model = _engine_for(source, engine, precision)
    log.debug("engine: %s %s on %s", model.name, model.precision, model.device)
    by_precision = {model.precision: model}
    plan = list(dict.fromkeys(zip(files, plan_outputs(files, output_dir, suffix, model.scale, overwrite), strict=True)))
    _warm_up(model)
    log.debug("memory available for upscaling: %d MiB", available_memory(model.device) >> 20)
    failed = 0
    for index, (path, out_path) in enumerate(tqdm(plan, desc="upscale", unit="img", disable=None)):
        try:
            width, height, channels = image_info(path)
            use_tile = plan_tile(model, height, width, tile=tile, tile_pad=pad, channels=channels)
            if use_tile and tile is None:
                log.info("%s: %dx%d planned in %d-pixel tiles to fit in memory", path, width, height, use_tile)
            image = read_image(path)
            # auto keeps 16-bit images in fp32 on the CPU (bf16 holds 8 significant bits: the fidelity
            # bound is in 8-bit grey levels); compiled once, on the first such image.
            wanted = precision_for(image.dtype, precision, model.device) if precision == "auto" else model.precision
            if wanted not in by_precision:
                by_precision[wanted] = _engine_for(source, engine, wanted)
            result = upscale_array(by_precision[wanted], image, tile=use_tile, tile_pad=pad)
            del image
            # A short staging name, whatever the output's length (names near 255 bytes are allowed).
            partial = out_path.with_name(f".partial-{os.getpid()}-{index}.png")
            try:
                out_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = write_image(partial, result)
                del result
                _place(tmp, out_path, overwrite)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                print(
                    f"esrgan: error: {_show(path)}: cannot write {_short(out_path)} ({exc.strerror or exc})",
                    file=sys.stderr,
                )
                failed += 1
        except InsufficientMemoryError as exc:
            print(f"esrgan: error: {_show(f'{path}: {exc}')}", file=sys.stderr)
            failed += 1
        except (ImageReadError, FloatingPointError, ValueError) as exc:
            print(f"esrgan: error: {_show(str(exc) if str(path) in str(exc) else f'{path}: {exc}')}", file=sys.stderr)
            failed += 1
        except (MemoryError, RuntimeError) as exc:
            if not isinstance(exc, MemoryError) and "alloc" not in str(exc) and "out of memory" not in str(exc):
                raise
            print(
                f"esrgan: error: {_show(path)}: ran out of memory (the estimate was too low); retry with a smaller --tile",
                file=sys.stderr,
            )
            failed += 1
    log.info("upscaled %d of %d images into %s", len(plan) - failed, len(plan), output_dir)
    return EXIT_SOME_FAILED if failed else EXIT_OK


# --- the command line ----------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("upscale", help="upscale image files and folders with a generator")
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument(
        "--model", "-m", required=True, help="generator checkpoint (.pth/.safetensors), exported .onnx, or models:/ URI"
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile edge in input pixels; 0 = whole image; default: planned from image size and free memory",
    )
    p.add_argument("--tile-pad", type=int, default=None, help="context around each tile in input pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default auto)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "torch", "onnxruntime", "openvino"],
        help="inference engine; auto: the fastest installed one within the fidelity bound of torch fp32",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="auto: the fastest within the fidelity bound (bf16 where the CPU has it; torch alone: fp32 on CPU)",
    )
    p.add_argument("--suffix", default="_x{scale}", help="appended to each output file name (default _x{scale})")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.set_defaults(handler=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> int:
    return upscale_files(
        args.inputs,
        args.model,
        args.output,
        tile=args.tile,
        tile_pad=args.tile_pad,
        device=args.device,
        precision=args.precision,
        suffix=args.suffix,
        overwrite=args.overwrite,
        engine=args.engine,
    )
