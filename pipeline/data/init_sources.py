"""Where training starts from: the ``init`` sources of ``params.yaml``, resolved to local files.

A source (``pretrain_psnr.init.generator``, ``finetune_gan.init.generator`` and
``finetune_gan.init.discriminator``) is one of:

- a local path (relative to the project root);
- ``s3://bucket/key`` (boto3, endpoint and credentials as in :mod:`pipeline.data.storage`);
- ``https://host/file.pth#sha256=<64 hex>`` (or ``http://``: the digest, which is required, is
  what makes the download trustworthy): downloaded once into the cache, checked on every use;
- ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``: a registered version (its generator), for
  continuing from the model the registry serves. An alias resolves to the version and run it
  points to *now*; that resolution is what is recorded.

:func:`resolve_stage_init` reads the stage's sources, checks them against ``params.yaml``'s
architecture (one line naming the file, the first mismatching tensor and both shapes) and writes
them re-saved in this project's layout into a folder, with ``source.json`` recording the lineage
(source, resolution, sha256). Equal weights give equal bytes, so DVC re-runs the stages after it
only when a source really changed. Every failure is one :class:`InitSourceError` line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from esrgan.data.layout import sha256_file
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.params import PipelineParams

#: Resolved files are cached here (``ESRGAN_CACHE`` overrides): an https source downloads once.
CACHE_ENV = "ESRGAN_CACHE"
SOURCE_FILE = "source.json"
GENERATOR_FILE = "generator.pth"
DISCRIMINATOR_FILE = "discriminator.pth"
#: Seconds to wait for an https or S3 server to accept the connection: unreachable is reported fast.
CONNECT_TIMEOUT_S = 10
_SHA_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
#: The sections that take sources, and which networks each one names.
STAGE_SOURCES = {"pretrain_psnr": ("generator",), "finetune_gan": ("generator", "discriminator")}


class InitSourceError(PipelineError, ValueError):
    """An init source that cannot be used (missing, unreachable, wrong digest, wrong weights)."""


@dataclass(frozen=True)
class ResolvedSource:
    """A source as written, what it pointed to when resolved, and the local file's digest."""

    source: str
    resolved: str
    path: Path
    sha256: str

    def lineage(self) -> dict[str, str]:
        """What the run records: no local cache path, which differs between machines."""
        return {"source": self.source, "resolved": self.resolved, "sha256": self.sha256}


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "esrgan" / "init")


def _redact(text: str) -> str:
    from pipeline.errors import redact

    return redact(text)


def _local(source: str, root: Path) -> ResolvedSource:
    path = Path(source).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise InitSourceError(f"{source}: no such file" if not path.exists() else f"{source}: not a file")
    return ResolvedSource(source, str(path.resolve()), path, sha256_file(path))


def _https(source: str, cache: Path) -> ResolvedSource:
    shown = _redact(source)
    parts = urlsplit(source)
    match = _SHA_RE.fullmatch(parts.fragment)
    if not match:
        raise InitSourceError(f"{shown}: a download needs its digest: append #sha256=<64 hex digits>")
    want = match.group(1).lower()
    name = Path(parts.path).name or "weights.pth"
    target = cache / "sha256" / want / name
    if target.is_file() and sha256_file(target) == want:
        return ResolvedSource(shown, shown.split("#", 1)[0], target, want)
    url = source.split("#", 1)[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != want:
            raise InitSourceError(f"{shown}: sha256 is {digest.hexdigest()}, not the {want} the source names")
        os.replace(tmp, target)
    except urllib.error.HTTPError as exc:
        raise InitSourceError(f"{shown}: the server answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InitSourceError(f"{shown}: cannot download ({' '.join(str(reason).split())[:200]})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ResolvedSource(shown, shown.split("#", 1)[0], target, want)


def _s3(source: str, cache: Path) -> ResolvedSource:
    from pipeline.data import storage

    try:
        uri = storage.parse_s3_uri(source)
    except ValueError as exc:
        raise InitSourceError(f"{source}: {exc}") from None
    if not uri.key or uri.key.endswith("/"):
        raise InitSourceError(f"{source}: names a folder; give the object of the weights file")
    target = (
        cache
        / "s3"
        / hashlib.sha256(str(uri).encode()).hexdigest()[:16]
        / (uri.key.rsplit("/", 1)[-1] or "weights.pth")
    )
    try:
        storage.download_object(uri, target, storage.client(max_attempts=1, connect_timeout=CONNECT_TIMEOUT_S))
    except storage.StorageError as exc:
        raise InitSourceError(str(exc)) from None
    return ResolvedSource(source, str(uri), target, sha256_file(target))


def _registry(source: str, cache: Path) -> ResolvedSource:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> that version's generator file."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from pipeline.registry.tracking import check_reachable

    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", source)
    if not m:
        raise InitSourceError(f"{source}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, number = m.groups()
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except MlflowException as exc:
        first = ((exc.message or str(exc)).strip().splitlines() or ["not found"])[0]
        raise InitSourceError(f"{source}: {first[:200]}") from None
    target_dir = cache / "registry" / hashlib.sha256(uri.encode()).hexdigest()[:12] / name / str(version.version)
    target = target_dir / "generator.safetensors"
    if not target.is_file():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            try:
                local = Path(
                    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=tmp)
                )
            except (MlflowException, OSError) as exc:
                raise InitSourceError(
                    f"{source}: cannot download version {version.version} ({str(exc).splitlines()[0][:200]})"
                ) from None
            found = sorted(local.rglob("generator.safetensors")) or sorted(local.rglob("*.safetensors"))
            if not found:
                raise InitSourceError(f"{source}: version {version.version} holds no generator file")
            target_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(found[0]), target)
    resolved = f"models:/{name}/{version.version} (run {version.run_id})"
    return ResolvedSource(source, resolved, target, sha256_file(target))


def resolve_source(source: str, root: Path, cache: Path | None = None) -> ResolvedSource:
    """The local file a source names (fetched into the cache when remote).

    Raises:
        InitSourceError: one line naming the source (credentials redacted) and the problem.
    """
    cache = cache or cache_dir()
    if source.startswith("models:/"):
        cache.mkdir(parents=True, exist_ok=True)
        return _registry(source, cache)
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("", "file"):
        return _local(source.removeprefix("file://"), root)
    cache.mkdir(parents=True, exist_ok=True)
    if scheme in ("https", "http"):
        return _https(source, cache)
    if scheme == "s3":
        return _s3(source, cache)
    raise InitSourceError(
        f"{_redact(source)[:200]}: unsupported source; use a path, s3://, https://...#sha256=<hex> or models:/NAME@ALIAS"
    )


def auto_model(doc: Mapping[str, Any], root: Path) -> dict[str, int]:
    """``model: auto``: the architecture of the first ``init.generator`` of a params document
    (``pretrain_psnr``'s, else ``finetune_gan``'s), read from the file itself.

    Raises:
        InitSourceError: no generator source to read it from, or a source that cannot be used.
    """
    from esrgan.models import CheckpointError
    from esrgan.models.init_weights import generator_architecture

    for section in STAGE_SOURCES:
        init = doc.get(section, {}).get("init") if isinstance(doc.get(section), Mapping) else None
        source = init.get("generator") if isinstance(init, Mapping) else None
        if isinstance(source, str) and source:
            key = init.get("param_key", "auto") if isinstance(init, Mapping) else "auto"
            resolved = resolve_source(source, root)
            try:
                return generator_architecture(resolved.path, key if isinstance(key, str) else "auto")
            except CheckpointError as exc:
                raise InitSourceError(f"{section}.init.generator: {_redact(str(exc))}") from None
    raise InitSourceError(
        "needs pretrain_psnr.init.generator or finetune_gan.init.generator to read the architecture from"
    )


def sources_of(params: PipelineParams, section: str) -> dict[str, str]:
    """The sources a stage's ``init`` names (network -> source), in a fixed order."""
    init = getattr(params, section).init
    return {net: getattr(init, net) for net in STAGE_SOURCES[section] if getattr(init, net) is not None}


def resolve_stage_init(params: PipelineParams, section: str, out_dir: Path, root: Path) -> dict[str, Any]:
    """Resolve a stage's sources, check them, and write them into ``out_dir`` in this project's layout.

    ``out_dir`` gets ``generator.pth`` / ``discriminator.pth`` for the sources set and always
    ``source.json`` (``{"param_key": ..., "generator": {source, resolved, sha256} | null, ...}``).
    Files of sources no longer set are removed (the folder is claimed as esrgan's).

    Raises:
        InitSourceError: a source that cannot be fetched, or weights that do not fit ``params.yaml``.
    """
    import warnings

    from esrgan.fileio import write_bytes, write_json
    from esrgan.models import CheckpointError, VGGDiscriminator, save_generator
    from esrgan.models.init_weights import discriminator_bytes, load_init_discriminator, load_init_generator
    from esrgan.owned_folders import claim, prune

    stage = getattr(params, section)
    key = stage.init.param_key
    record: dict[str, Any] = {"param_key": key}
    weights: dict[str, bytes] = {}
    for net in STAGE_SOURCES[section]:
        source = getattr(stage.init, net)
        if source is None:
            record[net] = None
            continue
        resolved = resolve_source(source, root)
        try:
            if net == "generator":
                model = load_init_generator(resolved.path, key, expected=params.model.model_dump())
                with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # the growth note is for spandrel users
                    weights[GENERATOR_FILE] = save_generator(model, Path(tmp) / GENERATOR_FILE).read_bytes()
            else:
                gan = params.finetune_gan
                d = VGGDiscriminator(gan.data.patch_size, params.model.out_ch, gan.discriminator.num_feat)
                load_init_discriminator(resolved.path, d, key)
                weights[DISCRIMINATOR_FILE] = discriminator_bytes(d)
        except CheckpointError as exc:
            raise InitSourceError(f"{section}.init.{net}: {_redact(str(exc))}") from None
        record[net] = resolved.lineage()
    claim(out_dir, f"folder of {section}'s initial weights")
    for name, data in weights.items():
        write_bytes(out_dir / name, data)
    prune(out_dir, [n for n in (GENERATOR_FILE, DISCRIMINATOR_FILE) if n not in weights])
    write_json(out_dir / SOURCE_FILE, record)
    return record


@dataclass(frozen=True)
class StageInit:
    """A resolved ``init`` folder, as the training step reads it."""

    generator: Path | None
    discriminator: Path | None
    lineage: dict[str, Any]

    def tags(self, section: str) -> dict[str, str]:
        """MLflow tags/params naming where the stage started from."""
        out = {}
        for net in STAGE_SOURCES[section]:
            entry = self.lineage.get(net)
            if entry:
                out[f"{section}.init.{net}"] = f"{entry['resolved']} (sha256 {entry['sha256'][:16]})"
        return out


def read_stage_init(folder: Path) -> StageInit:
    """What :func:`resolve_stage_init` wrote into ``folder``."""
    try:
        lineage = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InitSourceError(
            f"{folder / SOURCE_FILE}: cannot read ({exc}); run the resolve_init stage first"
        ) from None
    if not isinstance(lineage, Mapping):
        raise InitSourceError(f"{folder / SOURCE_FILE}: not a record of initial weights")
    files = {net: folder / name for net, name in (("generator", GENERATOR_FILE), ("discriminator", DISCRIMINATOR_FILE))}
    return StageInit(
        generator=files["generator"] if lineage.get("generator") else None,
        discriminator=files["discriminator"] if lineage.get("discriminator") else None,
        lineage=dict(lineage),
    )


__all__ = [
    "InitSourceError",
    "ResolvedSource",
    "StageInit",
    "auto_model",
    "read_stage_init",
    "resolve_source",
    "resolve_stage_init",
    "sources_of",
]
