"""A small, licence-clean HR dataset built offline from photographs shipped in pip packages.

It lets the whole pipeline (patches, training, evaluation) run anywhere without downloading
DIV2K. Images are located through the installed packages' files (never their network
fetchers), checked against pinned SHA-256 digests, decoded and re-encoded as plain 8-bit RGB
PNGs (no ICC profile, text chunks or timestamps) so the output bytes are reproducible.

The layout (``train/``, ``val/``, ``splits.json``, ``manifest.json``) is described in
:mod:`esrgan.data.layout`; :func:`import_dataset` brings any folder of images (DIV2K train HR,
your own photos) into the same layout.

:func:`build_holdout_set` writes nine further photographs from scikit-image, none of them in
the sample set: a flat folder to measure on photos that nothing was trained, validated or tuned
on (``esrgan data holdout DIR``, then ``esrgan evaluate --data DIR``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from esrgan.data.layout import (
    MANIFEST_FILE,
    SPLITS_FILE,
    TRAIN_DIR,
    VAL_DIR,
    list_images,
    pixels_sha256,
    sha256_file,
)
from esrgan.errors import EsrganError
from esrgan.fileio import atomic_write, write_bytes, write_json
from esrgan.imageio import IMAGE_SUFFIXES, ImageReadError, read_image

SAMPLE_DATASET_NAME = "esrgan-sample-hr"
SOURCES_FILE = "SOURCES.md"


class SampleSourceError(EsrganError, RuntimeError):
    """A shipped source image is missing or differs from the pinned checksum."""


class UnreadableImagesError(EsrganError, ValueError):
    """Images of an import that cannot be decoded; nothing was written.

    ``problems`` holds one line per file (at most :data:`MAX_LISTED_PROBLEMS`, then a count); the
    message is those lines joined.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


#: An import names at most this many unreadable files, then counts the rest.
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class SampleSource:
    """One photograph shipped inside an installed Python package."""

    name: str  #: output stem
    package: str  #: distribution name, for the version
    module: str  #: importable package holding the file
    path: str  #: file path inside ``module``
    sha256: str  #: pinned digest of the shipped file
    licence: str
    attribution: str
    split: str  #: "train", "val" or "holdout"


_SKIMAGE_NOTE = "scikit-image skimage.data docstring"
#: The sample set. Digests pinned from scikit-image 0.26.0, scikit-learn 1.9.1, matplotlib 3.11.2.
SAMPLE_SOURCES: tuple[SampleSource, ...] = (
    SampleSource(
        "astronaut",
        "scikit-image",
        "skimage",
        "data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "Public domain (NASA; 'No known copyright restrictions')",
        f"Eileen Collins, NASA Great Images database ({_SKIMAGE_NOTE})",
        TRAIN_DIR,
    ),
    SampleSource(
        "chelsea",
        "scikit-image",
        "skimage",
        "data/chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        "CC0",
        f"Chelsea the cat, photograph by Stefan van der Walt ({_SKIMAGE_NOTE})",
        TRAIN_DIR,
    ),
    SampleSource(
        "coffee",
        "scikit-image",
        "skimage",
        "data/coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        "CC0",
        f"Coffee cup, photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar ({_SKIMAGE_NOTE})",
        VAL_DIR,
    ),
    SampleSource(
        "rocket",
        "scikit-image",
        "skimage",
        "data/rocket.jpg",
        "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        "Public domain (released by SpaceX)",
        f"DSCOVR launch on Falcon 9, SpaceX Photos on Flickr ({_SKIMAGE_NOTE})",
        TRAIN_DIR,
    ),
    SampleSource(
        "motorcycle_left",
        "scikit-image",
        "skimage",
        "data/motorcycle_left.png",
        "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        "Not stated: Middlebury 2014 stereo benchmark image redistributed by scikit-image (cite Scharstein et al.)",
        "Motorcycle (left view), D. Scharstein et al., GCPR 2014 (skimage.data.stereo_motorcycle docstring)",
        TRAIN_DIR,
    ),
    SampleSource(
        "china",
        "scikit-learn",
        "sklearn.datasets",
        "images/china.jpg",
        "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
        "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)",
        "danielbuechele on Flickr, photo 6061409035 (sklearn/datasets/images/README.txt)",
        TRAIN_DIR,
    ),
    SampleSource(
        "flower",
        "scikit-learn",
        "sklearn.datasets",
        "images/flower.jpg",
        "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
        "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)",
        "vultilion on Flickr, photo 6056698931 (sklearn/datasets/images/README.txt)",
        VAL_DIR,
    ),
    SampleSource(
        "grace_hopper",
        "matplotlib",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        "Public domain (official U.S. Navy photograph; the matplotlib wheel states no licence)",
        "Commodore Grace M. Hopper, U.S. Navy (matplotlib mpl-data/sample_data)",
        TRAIN_DIR,
    ),
)


HOLDOUT = "holdout"
_CC0_TEXTURE = "CC0 (CC0Textures, per the skimage.data docstring)"
#: Photos kept out of training, validation and every tuning decision (scikit-image 0.26.0 pins).
#: Five are greyscale (written as RGB with equal channels): the chroma error then measures the
#: colour a generator invents.
HOLDOUT_SOURCES: tuple[SampleSource, ...] = tuple(
    SampleSource(name, "scikit-image", "skimage", f"data/{file}", digest, licence, f"{what} ({_SKIMAGE_NOTE})", HOLDOUT)
    for name, file, digest, licence, what in (
        (
            "brick",
            "brick.png",
            "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
            _CC0_TEXTURE,
            "Brick wall, greyscale",
        ),
        (
            "camera",
            "camera.png",
            "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
            "CC0",
            "Cameraman, photograph by Lav Varshney, greyscale",
        ),
        (
            "grass",
            "grass.png",
            "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
            "CC0 (DeviantArt linolafett, per the skimage.data docstring)",
            "Grass, greyscale",
        ),
        (
            "gravel",
            "gravel.png",
            "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
            _CC0_TEXTURE,
            "Gravel, greyscale",
        ),
        (
            "hubble",
            "hubble_deep_field.jpg",
            "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
            "Public domain (NASA)",
            "Hubble eXtreme Deep Field, HubbleSite",
        ),
        (
            "ihc",
            "ihc.png",
            "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
            "No known copyright restrictions",
            "Immunohistochemistry of colonic glands, CMMI",
        ),
        (
            "moon",
            "moon.png",
            "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577",
            "Not stated in the skimage.data docstring",
            "Surface of the moon, greyscale",
        ),
        (
            "motorcycle_right",
            "motorcycle_right.png",
            "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
            "Not stated: Middlebury 2014 stereo benchmark image redistributed by scikit-image (cite Scharstein et al.)",
            "Motorcycle (right view), D. Scharstein et al., GCPR 2014",
        ),
        (
            "retina",
            "retina.jpg",
            "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
            "CC0 (Mikael Haggstrom, Wikimedia Commons)",
            "Fundus photograph of a normal left eye",
        ),
    )
)


def locate_source(source: SampleSource) -> Path:
    """The shipped file of ``source`` in the installed package, verified against its pinned digest."""
    try:
        path = Path(str(resources.files(source.module).joinpath(source.path)))
    except ModuleNotFoundError:
        raise SampleSourceError(f"{source.name}: package {source.package} is not installed") from None
    if not path.is_file():
        raise SampleSourceError(f"{source.name}: {path} is not shipped by {source.package} {_version(source.package)}")
    digest = sha256_file(path)
    if digest != source.sha256:
        raise SampleSourceError(
            f"{source.name}: {path} has SHA-256 {digest}, expected {source.sha256} "
            f"({source.package} {_version(source.package)} changed it; re-pin SAMPLE_SOURCES deliberately)"
        )
    return path


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode ``HxWx3`` uint8 as a PNG holding only pixels (fixed zlib level, no metadata chunks)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def build_sample_dataset(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the sample HR set (6 train, 2 val images) into ``out_dir``; returns the manifest.

    Raises:
        SampleSourceError: a source image is missing or its checksum differs from the pin.
    """
    out = Path(out_dir)
    entries = [_write_source(source, out / source.split) for source in SAMPLE_SOURCES]
    manifest = {
        "name": SAMPLE_DATASET_NAME,
        "description": "Photographs shipped in scikit-image, scikit-learn and matplotlib, as 8-bit RGB PNG.",
        "images": entries,
    }
    _write_split_files(out, entries, manifest)
    write_bytes(out / SOURCES_FILE, _sources_markdown(entries).encode())
    return manifest


def _write_source(source: SampleSource, folder: Path) -> dict[str, Any]:
    """Write ``source`` as ``folder/<name>.png`` (8-bit RGB); returns its manifest entry."""
    path = locate_source(source)
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    data = encode_png(rgb)
    write_bytes(folder / f"{source.name}.png", data)
    return {
        "name": f"{source.name}.png",
        "split": source.split,
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "sha256": hashlib.sha256(data).hexdigest(),
        "pixels_sha256": pixels_sha256(rgb),
        "licence": source.licence,
        "attribution": source.attribution,
        "source": {
            "package": source.package,
            "version": _version(source.package),
            "path": f"{source.module.replace('.', '/')}/{source.path}",
            "sha256": source.sha256,
        },
    }


def build_holdout_set(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Write the held-out photos (:data:`HOLDOUT_SOURCES`) into ``out_dir`` as 8-bit RGB PNGs.

    Only images go into the folder, so it can be evaluated as it is; the returned entries (one
    per photo, as in the sample set's manifest) carry the licences and attributions. None of
    these photos is in the sample set: figures on them are figures on photos nothing was tuned on.

    Raises:
        SampleSourceError: a source image is missing or its checksum differs from the pin.
    """
    out = Path(out_dir)
    return [_write_source(source, out) for source in HOLDOUT_SOURCES]


def _sources_markdown(entries: list[dict[str, Any]]) -> str:
    lines = [
        f"# {SAMPLE_DATASET_NAME}: sources and licences",
        "",
        "| file | split | size | licence | attribution | source |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        src = e["source"]
        lines.append(
            f"| {e['split']}/{e['name']} | {e['split']} | {e['width']}x{e['height']} | {e['licence']} "
            f"| {e['attribution']} | {src['package']} {src['version']}: `{src['path']}` |"
        )
    return "\n".join(lines) + "\n"


def _write_split_files(out: Path, entries: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    splits = {split: sorted(e["name"] for e in entries if e["split"] == split) for split in (TRAIN_DIR, VAL_DIR)}
    write_json(out / SPLITS_FILE, splits)
    write_json(out / MANIFEST_FILE, manifest)


def import_dataset(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    val_names: list[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Copy a folder of images into the train/val layout; returns the manifest.

    Every image is decoded once before anything is written: an empty, truncated or unreadable
    file refuses the whole import (a dataset silently missing images, or failing later in patch
    extraction, is worse than a refusal naming them). Files are then copied byte for byte
    (format unchanged). The split is, in order of precedence: ``src_dir``'s own
    ``train/`` and ``val/`` subfolders when it has them; ``val_names`` (file names or stems);
    otherwise ``round(n * val_fraction)`` images picked by a seeded permutation of the sorted
    names, so the same folder and seed always give the same split. Non-image files are listed
    under ``"ignored"``. ``src_dir`` is only read.

    Raises:
        UnreadableImagesError: images that cannot be decoded, one line each; nothing was written.
        ValueError: an empty source, unknown ``val_names``, a ``val_fraction`` outside [0, 1) or
            one that leaves no training image, a destination inside the source, or a destination
            that already holds images this import would not write.
    """
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder")
    if out == src or src in out.parents:
        raise ValueError(f"{out}: the destination must not be the source folder or inside it")

    if (src / TRAIN_DIR).is_dir() and (src / VAL_DIR).is_dir():
        plan = [(p, TRAIN_DIR) for p in list_images(src / TRAIN_DIR)] + [
            (p, VAL_DIR) for p in list_images(src / VAL_DIR)
        ]
        ignored = []
    else:
        images = list_images(src)
        ignored = sorted(
            p.name for p in src.iterdir() if p.is_file() and not p.name.startswith(".") and p not in images
        )
        val = _pick_validation(images, val_fraction, val_names, seed)
        plan = [(p, VAL_DIR if p.name in val else TRAIN_DIR) for p in images]
    if not plan:
        raise ValueError(f"{src}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    names = [p.name for p, _ in plan]
    if len(set(names)) != len(names):
        raise ValueError(f"{src}: the same file name appears in train/ and val/")

    for split in (TRAIN_DIR, VAL_DIR):
        planned = {p.name for p, s in plan if s == split}
        stray = [p.name for p in list_images(out / split)] if (out / split).is_dir() else []
        stray = sorted(set(stray) - planned)
        if stray:
            raise ValueError(
                f"{out / split}: holds {len(stray)} image(s) not in this import (e.g. {stray[0]}); use an empty folder"
            )

    sizes, problems = {}, []
    for path, _ in plan:  # decode everything first: a bad file refuses the import before any write
        try:
            shape = read_image(path).shape
        except ImageReadError as exc:
            problems.append(str(exc).splitlines()[0])
            continue
        sizes[path] = (int(shape[1]), int(shape[0]))
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        if len(problems) > len(listed):
            listed.append(f"... and {len(problems) - len(listed)} more unreadable images in {src}")
        raise UnreadableImagesError(listed)

    entries = []
    for path, split in plan:
        atomic_write(out / split / path.name, functools.partial(shutil.copyfile, path))
        width, height = sizes[path]
        entries.append(
            {
                "name": path.name,
                "split": split,
                "width": width,
                "height": height,
                "sha256": sha256_file(out / split / path.name),
                "source": {"path": str(path)},
            }
        )
    manifest = {"name": src.name, "description": f"Imported from {src}", "images": entries, "ignored": ignored}
    _write_split_files(out, entries, manifest)
    return manifest


def _pick_validation(images: list[Path], val_fraction: float, val_names: list[str] | None, seed: int) -> set[str]:
    if val_names is not None:
        by_key = {p.name: p.name for p in images} | {p.stem: p.name for p in images}
        unknown = [n for n in val_names if n not in by_key]
        if unknown:
            raise ValueError(f"val_names not found among the images: {', '.join(unknown)}")
        return {by_key[n] for n in val_names}
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    count = round(len(images) * val_fraction)
    if images and count >= len(images):
        raise ValueError(
            f"val_fraction {val_fraction} puts all {len(images)} images in val/ and none in train/; use a smaller one"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    return {images[i].name for i in order[:count]}
