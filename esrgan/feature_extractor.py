"""Frozen VGG feature extractors for the perceptual loss, with weights chosen by name.

ESRGAN's perceptual loss compares VGG19 features at ``conv5_4`` *before* the ReLU (section 3.3
of the paper: pre-activation features are denser and keep brightness consistent). Backbones:

``vgg19-imagenet``
    torchvision's ImageNet VGG19 (``vgg19-dcbb9e9d.pth``), read from the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``, i.e. ``torch.hub.get_dir()/checkpoints``). It is downloaded
    only when ``allow_download=True`` (or ``ESRGAN_ALLOW_DOWNLOAD=1``); otherwise a missing file
    is a one-line :class:`BackboneUnavailableError` naming the file and where to put it. This is
    the paper's backbone.
``stlpips-vgg16``
    The VGG16 trunk shipped inside the pip package ``stlpips-pytorch`` (ST-LPIPS, Ghildyal & Liu,
    ECCV 2022, file ``weights/vST0.0/vgg_shift_tolerant.pth``): usable fully offline. Two caveats
    that matter for a perceptual loss:

    * **It is not an ImageNet VGG.** The ST-LPIPS authors' training command is
      ``train.py --from_scratch --train_trunk --net vgg --variant shift_tolerant`` (their README):
      the trunk was trained *from scratch* on BAPPS human similarity judgements (2AFC), not
      initialised from ImageNet. What we can verify offline: the architecture and every tensor
      shape, that its conv weights drive the package's own network to identical outputs under
      our layer mapping (tests), and that its input scaling layer equals ImageNet mean/std
      normalisation of [0, 1] inputs. The provenance itself we cannot verify without the
      ImageNet file.
    * **It is a shift-tolerant VGG16**: every 2x2 max-pool is replaced by a stride-1 max-pool
      followed by a 3x3 binomial blur with stride 2 and reflection padding 2 (anti-aliased
      pooling, :class:`BlurMaxPool`). We keep that architecture, since the weights were trained
      with it, and map its convolutions explicitly onto torchvision's ``vgg16().features``
      indices (:data:`STLPIPS_VGG16_CONV_MAP`), so layer names and indices are torchvision's.

    VGG16 has three convolutions in its last block, so the counterpart of VGG19's ``conv5_4``
    (last convolution, pre-activation) is ``conv5_3``; :func:`default_layer` gives it.
a file path
    A torchvision-layout VGG19 state dict (``features.N.weight`` keys, with or without the
    ``features.`` prefix), e.g. the same ImageNet file copied elsewhere.
``random``
    Randomly initialised VGG19 (seeded, deterministic). For tests only: meaningless as a loss.

Every extractor records what it loaded in ``extractor.backbone`` (:class:`BackboneInfo`:
name, architecture, file, sha256 prefix, pretraining) so that runs can log it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from esrgan.errors import EsrganError

#: torchvision's ImageNet VGG19 weights (``VGG19_Weights.IMAGENET1K_V1``).
VGG19_IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_IMAGENET_FILE = "vgg19-dcbb9e9d.pth"
#: Environment switch allowing ``vgg19-imagenet`` to be downloaded when the file is missing.
ALLOW_DOWNLOAD_ENV = "ESRGAN_ALLOW_DOWNLOAD"
#: ImageNet statistics; inputs in [0, 1] are normalised with them before the VGG.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_VGG_CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

#: ST-LPIPS package key prefix -> torchvision ``vgg16().features`` index, for the 13 convolutions.
#: The package splits its (longer, blur-pooled) ``features`` into slices but keeps the global
#: index in the key: ``net.slice2.6`` is its 7th module, conv2_1, torchvision's ``features[5]``.
STLPIPS_VGG16_CONV_MAP: dict[str, int] = {
    "net.slice1.0": 0,  # conv1_1
    "net.slice1.2": 2,  # conv1_2
    "net.slice2.6": 5,  # conv2_1
    "net.slice2.8": 7,  # conv2_2
    "net.slice3.12": 10,  # conv3_1
    "net.slice3.14": 12,  # conv3_2
    "net.slice3.16": 14,  # conv3_3
    "net.slice4.20": 17,  # conv4_1
    "net.slice4.22": 19,  # conv4_2
    "net.slice4.24": 21,  # conv4_3
    "net.slice5.28": 24,  # conv5_1
    "net.slice5.30": 26,  # conv5_2
    "net.slice5.32": 28,  # conv5_3
}
STLPIPS_VGG16_RELATIVE_PATH = "weights/vST0.0/vgg_shift_tolerant.pth"

BACKBONES = ("vgg19-imagenet", "stlpips-vgg16", "random")


class BackboneUnavailableError(EsrganError, RuntimeError):
    """The requested perceptual backbone's weights are not available; the message is one line."""


@dataclass(frozen=True)
class BackboneInfo:
    """Which weights a feature extractor uses (log this with the run)."""

    name: str
    arch: str
    file: str | None
    sha256: str | None  # first 16 hex digits of the file's sha256
    pretraining: str

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def layer_names(arch: str) -> list[str]:
    """Names of torchvision's ``features`` modules: ``conv1_1, relu1_1, ..., pool5``."""
    names, block, idx = [], 1, 1
    for v in _VGG_CFGS[arch]:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


def default_layer(arch: str) -> str:
    """The last convolution before the final pooling, pre-activation: ESRGAN's choice."""
    return {"vgg19": "conv5_4", "vgg16": "conv5_3"}[arch]


class BlurMaxPool(nn.Module):
    """Anti-aliased max-pooling of the shift-tolerant VGG: max-pool 2x2 stride 1, then a 3x3
    binomial ([1, 2, 1] outer product / 16) depthwise blur with stride 2 after reflection
    padding of 2 on every side (ST-LPIPS' ``Downsample(filt_size=3, pad_more=True)``)."""

    filt: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("filt", (a[:, None] * a[None, :] / 16.0)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, kernel_size=2, stride=1)
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.filt.to(x.dtype).expand(x.shape[1], 1, 3, 3), stride=2, groups=x.shape[1])


def make_vgg_features(arch: str, blur_pool: bool = False) -> nn.Sequential:
    """torchvision-compatible VGG ``features`` (same indices); ``blur_pool`` uses :class:`BlurMaxPool`."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG_CFGS[arch]:
        if v == "M":
            layers.append(BlurMaxPool() if blur_pool else nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_ch = int(v)
    return nn.Sequential(*layers)


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG truncated after the deepest requested layer; returns ``{layer: features}``.

    Inputs are RGB in [0, 1], normalised here with ImageNet mean/std. Parameters never require
    gradients and the network stays in eval mode even when a parent calls ``.train()``.
    Gradients still flow to the *input*, which is what a perceptual loss needs.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: nn.Sequential, arch: str, layers: Iterable[str], backbone: BackboneInfo) -> None:
        super().__init__()
        names = layer_names(arch)
        self.layers = list(dict.fromkeys(layers))
        unknown = [name for name in self.layers if name not in names]
        if not self.layers or unknown:
            raise ValueError(f"unknown {arch} layer(s) {unknown or '(none given)'}; choose from {', '.join(names)}")
        self.arch = arch
        self.backbone = backbone
        self._index = {name: names.index(name) for name in self.layers}
        self.features = features[: max(self._index.values()) + 1]
        # VGG's ReLUs are in-place; a pre-activation output must not be overwritten by the next one.
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        # Always eval: a frozen feature network must not switch behaviour with its parent.
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted = {idx: name for name, idx in self._index.items()}
        out: dict[str, torch.Tensor] = {}
        for idx, module in enumerate(self.features):
            x = module(x)
            if idx in wanted:
                out[wanted[idx]] = x
        return out


def _sha256_prefix(path: Path, n: int = 16) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:n]


def vgg19_imagenet_path() -> Path:
    """Where ``vgg19-imagenet`` is looked for: ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_IMAGENET_FILE


def stlpips_vgg16_path() -> Path:
    """The VGG16 weights file inside the installed ``stlpips-pytorch`` package (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailableError(
            "stlpips-vgg16: the pip package 'stlpips-pytorch' is not installed (pip install stlpips-pytorch)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / STLPIPS_VGG16_RELATIVE_PATH


def _download_allowed(allow_download: bool | None) -> bool:
    if allow_download is not None:
        return allow_download
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def _load_torchvision_layout(path: Path, origin: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, or needs code execution
        raise BackboneUnavailableError(f"{origin}: cannot read {path} as a state dict ({type(exc).__name__})") from None
    if not isinstance(state, Mapping):
        raise BackboneUnavailableError(f"{origin}: {path} does not hold a state dict")
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    return feats or {k: v for k, v in state.items() if k.split(".")[0].isdigit()}


def _load_features(features: nn.Sequential, state: Mapping[str, torch.Tensor], origin: str) -> None:
    try:
        features.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise BackboneUnavailableError(f"{origin}: not a torchvision-layout VGG19 ({first})") from None


def load_stlpips_vgg16_state(path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """Read the ST-LPIPS VGG16 file and rename its conv tensors to torchvision ``features`` indices."""
    path = Path(path) if path is not None else stlpips_vgg16_path()
    if not path.is_file():
        raise BackboneUnavailableError(f"stlpips-vgg16: weights file {path} is missing (reinstall stlpips-pytorch)")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = {}
    for prefix, idx in STLPIPS_VGG16_CONV_MAP.items():
        for kind in ("weight", "bias"):
            state[f"{idx}.{kind}"] = raw[f"{prefix}.{kind}"]
    return state


def build_feature_extractor(
    backbone: str = "vgg19-imagenet",
    layers: Iterable[str] | None = None,
    allow_download: bool | None = None,
) -> VGGFeatureExtractor:
    """Build a frozen :class:`VGGFeatureExtractor`.

    Args:
        backbone: ``vgg19-imagenet``, ``stlpips-vgg16``, ``random`` or a path to a torchvision
            VGG19 state dict (see the module docstring).
        layers: layer names such as ``conv5_4`` (default: the last conv, pre-activation:
            ``conv5_4`` for VGG19, ``conv5_3`` for VGG16).
        allow_download: may ``vgg19-imagenet`` be downloaded when missing? ``None`` reads
            ``ESRGAN_ALLOW_DOWNLOAD`` (default: no, so nothing here ever blocks on the network).

    Raises:
        BackboneUnavailableError: weights missing or unreadable (one-line message).
        ValueError: unknown layer name.
    """
    # Building layers draws from the global RNG (default init); keep the caller's stream intact.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if backbone == "stlpips-vgg16":
            arch, path = "vgg16", stlpips_vgg16_path()
            features = make_vgg_features(arch, blur_pool=True)
            features.load_state_dict(load_stlpips_vgg16_state(path))
            pretraining = "ST-LPIPS: trained from scratch on BAPPS 2AFC similarity judgements (not ImageNet)"
        elif backbone == "random":
            arch, path = "vgg19", None
            features = make_vgg_features(arch)
            pretraining = "none (random init, seed 0; tests only)"
        else:
            arch = "vgg19"
            features = make_vgg_features(arch)
            if backbone == "vgg19-imagenet":
                path = vgg19_imagenet_path()
                if not path.is_file():
                    if not _download_allowed(allow_download):
                        raise BackboneUnavailableError(
                            f"vgg19-imagenet: weights file {path} not found; download {VGG19_IMAGENET_URL} "
                            f"to that path (or set TORCH_HOME), set {ALLOW_DOWNLOAD_ENV}=1 / allow_download to "
                            "fetch it, or use the offline backbone 'stlpips-vgg16'"
                        )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch.hub.download_url_to_file(VGG19_IMAGENET_URL, str(path), hash_prefix="dcbb9e9d")
                pretraining = "ImageNet-1k classification (torchvision IMAGENET1K_V1)"
            else:
                path = Path(backbone).expanduser()
                if not path.is_file():
                    raise BackboneUnavailableError(
                        f"perceptual backbone {backbone!r} is neither one of {', '.join(BACKBONES)} nor an existing file"
                    )
                pretraining = "unknown (local file)"
            _load_features(features, _load_torchvision_layout(path, backbone), backbone)
    info = BackboneInfo(
        name=backbone,
        arch=arch + ("-blurpool" if backbone == "stlpips-vgg16" else ""),
        file=str(path) if path is not None else None,
        sha256=_sha256_prefix(path) if path is not None else None,
        pretraining=pretraining,
    )
    return VGGFeatureExtractor(features, arch, layers or [default_layer(arch)], info)
