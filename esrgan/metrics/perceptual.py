"""Learned perceptual distances: LPIPS (Zhang et al. 2018) and ST-LPIPS (Ghildyal and Liu 2022).

Lower is better; 0 for identical images. Inputs are RGB uint8 ``HxWx3`` images, scaled to
[-1, 1] as both packages expect, compared whole (no border crop).

Where the weights come from decides what works offline:

* ``lpips`` (pip ``lpips``) ships only its small linear layers; its AlexNet/VGG16 trunk is
  torchvision's ImageNet checkpoint, read from the torch hub cache
  (``torch.hub.get_dir()/checkpoints``). We never download it: a missing file raises
  :class:`MetricUnavailable` naming the file and where to put it.
* ``stlpips`` (pip ``stlpips-pytorch``) ships complete checkpoints, trunk included
  (``weights/vST0.0/{alex,vgg}_shift_tolerant.pth``), so it always works offline. Those
  trunks are anti-aliased AlexNet/VGG16 trained from scratch on BAPPS similarity judgements
  (the authors' training command uses ``--from_scratch --train_trunk``), not ImageNet weights.

Networks are loaded once per (metric, net, device) and cached; loading is serialised by a
lock, and inference does not mutate the modules, so the functions are thread-safe.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from esrgan.metrics._validation import check_pair

Net = Literal["alex", "vgg"]
NETS: tuple[str, ...] = ("alex", "vgg")


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing weights or package); the message is one line."""


_cache: dict[tuple[str, str, str], nn.Module] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple[str, str, str], build: Callable[[], nn.Module]) -> nn.Module:
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = build().eval().requires_grad_(False).to(key[2])
            _cache[key] = model
        return model


def clear_cache() -> None:
    """Forget every loaded network (e.g. after placing a weights file, or to free memory)."""
    with _cache_lock:
        _cache.clear()


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"net must be one of {NETS}, got {net!r}")


def _to_tensor(img: np.ndarray, device: str) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) float in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
    return (t / 127.5 - 1.0).unsqueeze(0).to(device)


def torchvision_weights_path(net: Net) -> tuple[Path, str]:
    """Where torchvision looks for the ImageNet trunk of ``net``, and the URL it comes from."""
    import torchvision.models as tvm

    weights = tvm.AlexNet_Weights.IMAGENET1K_V1 if net == "alex" else tvm.VGG16_Weights.IMAGENET1K_V1
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename, weights.url


def _build_lpips(net: Net) -> nn.Module:
    path, url = torchvision_weights_path(net)
    if not path.is_file():
        raise MetricUnavailable(
            f"lpips_{net}: torchvision {'AlexNet' if net == 'alex' else 'VGG16'} ImageNet weights not found at "
            f"{path} (download {url} there, or point TORCH_HOME at a folder holding hub/checkpoints/{path.name})"
        )
    try:
        import lpips as lpips_pkg
    except ImportError as exc:
        raise MetricUnavailable(f"lpips_{net}: package 'lpips' is not importable ({exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice for `pretrained=`
        # pnet_rand=True builds the trunk without touching the network; we load it ourselves.
        model = lpips_pkg.LPIPS(net=net, pnet_rand=True, verbose=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        # lpips splits torchvision's `features.N` into `sliceK.N`, keeping N.
        trunk = {k: state[f"features.{k.split('.', 1)[1]}"] for k in model.net.state_dict()}
        model.net.load_state_dict(trunk, strict=True)
    except (KeyError, RuntimeError, OSError) as exc:
        raise MetricUnavailable(f"lpips_{net}: {path} is not a usable torchvision checkpoint ({exc})") from None
    return cast(nn.Module, model)  # lpips.LPIPS, an nn.Module; the package has no type information


def _stlpips_weights_path(net: Net) -> Path:
    import stlpips_pytorch

    return Path(stlpips_pytorch.__file__).parent / "weights" / "vST0.0" / f"{net}_shift_tolerant.pth"


def _build_stlpips(net: Net) -> nn.Module:
    try:
        from stlpips_pytorch import stlpips as stlpips_pkg
    except ImportError as exc:  # it imports IPython and torchsummary without declaring them
        raise MetricUnavailable(f"stlpips_{net}: package 'stlpips-pytorch' is not importable ({exc})") from None
    path = _stlpips_weights_path(net)
    if not path.is_file():
        raise MetricUnavailable(f"stlpips_{net}: weights missing from the stlpips-pytorch install: {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # pretrained=False: build only; the package itself loads with strict=False, which
        # would hide a mismatched file, so we load and check the keys here.
        model: nn.Module = stlpips_pkg.LPIPS(net=net, variant="shift_tolerant", pretrained=False, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=False)
    # `lins.i` are aliases of `lin{i}` (the same modules registered twice); only those may be absent.
    missing = [k for k in result.missing_keys if not (k.startswith("lins.") and f"lin{k[5:]}" in state)]
    if missing or result.unexpected_keys:
        raise MetricUnavailable(
            f"stlpips_{net}: {path} does not match the network (missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )
    return model


def _distance(kind: str, build: Callable[[Net], nn.Module], sr: Any, hr: Any, net: Net, device: str) -> float:
    _check_net(net)
    sr_arr, hr_arr = check_pair(sr, hr)
    model = _cached((kind, net, str(device)), lambda: build(net))
    with torch.inference_mode():
        d = model(_to_tensor(sr_arr, device), _to_tensor(hr_arr, device))
    return float(d.reshape(-1)[0])


def lpips(sr: np.ndarray, hr: np.ndarray, net: Net = "alex", device: str = "cpu") -> float:
    """LPIPS v0.1 distance between two RGB uint8 images of the same shape.

    Raises:
        MetricUnavailable: torchvision's ImageNet trunk for ``net`` is not in the torch hub
            cache (it is never downloaded here), or the ``lpips`` package is missing.
    """
    return _distance("lpips", _build_lpips, sr, hr, net, device)


def stlpips(sr: np.ndarray, hr: np.ndarray, net: Net = "alex", device: str = "cpu") -> float:
    """Shift-tolerant LPIPS distance between two RGB uint8 images; works offline.

    Raises:
        MetricUnavailable: ``stlpips-pytorch`` (or IPython/torchsummary, which it imports)
            is not installed, or its bundled weights are missing or do not match.
    """
    return _distance("stlpips", _build_stlpips, sr, hr, net, device)


PERCEPTUAL_METRICS: dict[str, Callable[..., float]] = {
    "lpips_alex": lambda sr, hr, device: lpips(sr, hr, "alex", device),
    "lpips_vgg": lambda sr, hr, device: lpips(sr, hr, "vgg", device),
    "stlpips_alex": lambda sr, hr, device: stlpips(sr, hr, "alex", device),
    "stlpips_vgg": lambda sr, hr, device: stlpips(sr, hr, "vgg", device),
}


def perceptual_metrics(
    sr: np.ndarray, hr: np.ndarray, names: Sequence[str] = tuple(PERCEPTUAL_METRICS), device: str = "cpu"
) -> dict[str, Any]:
    """Every requested perceptual distance, with ``None`` and a reason for the unavailable ones.

    Returns:
        e.g. ``{"lpips_alex": None, "stlpips_alex": 0.12, ...,
        "unavailable": {"lpips_alex": "lpips_alex: torchvision AlexNet ImageNet weights not found at ..."}}``.
    """
    unknown = [n for n in names if n not in PERCEPTUAL_METRICS]
    if unknown:
        raise ValueError(f"unknown perceptual metrics {unknown}; choose from {list(PERCEPTUAL_METRICS)}")
    check_pair(sr, hr)
    out: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        try:
            out[name] = PERCEPTUAL_METRICS[name](sr, hr, device)
        except MetricUnavailable as exc:
            out[name] = None
            unavailable[name] = str(exc)
    out["unavailable"] = unavailable
    return out
