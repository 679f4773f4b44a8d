"""Object storage (AWS S3 and S3-compatible stores: MinIO, SeaweedFS, Ceph) through boto3.

Every direct object-store access of the project goes through this module: :func:`download_prefix`
fetches a KFP run's dataset (:mod:`pipeline.data.sources`), :func:`download_object` the weights an
``init`` source names (:mod:`pipeline.data.init_sources`).
DVC (``dvc-s3``) and MLflow (its S3 artifact repository) bring their own clients, configured as
in docs/team-setup.md.

- Credentials come only from boto3's standard chain (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, shared files, instance or
  pod roles). No function takes a key, and none logs or returns one.
- The endpoint of a non-AWS store comes from ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL`` or
  ``MLFLOW_S3_ENDPOINT_URL`` (first set wins), so one environment serves boto3, DVC and MLflow.
- Failures raise :class:`StorageError`: one line naming the operation, the URI and the endpoint,
  never a secret.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # stubs only (the test extra): botocore generates the client class at run time
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
MAX_ATTEMPTS = 5
MiB = 1024 * 1024

# S3's own limits: 3-63 characters, lowercase letters, digits, dots and hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_MISSING_BUCKET_CODES = {"NoSuchBucket"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}


# --------------------------------------------------------------------------------------------- URIs


@dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``; ``key`` may be empty (the whole bucket) or a prefix."""

    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def prefix(self) -> str:
        """The key as a folder prefix: ``a/b`` -> ``a/b/`` so ``s3://x/a/b`` never matches ``a/bc``."""
        return self.key if not self.key or self.key.endswith("/") else f"{self.key}/"


_USERINFO = re.compile(r"^([A-Za-z][\w+.-]*://).*@")


def _without_userinfo(url: str) -> str:
    return _USERINFO.sub(r"\1", url)


def parse_s3_uri(uri: object) -> S3Uri:
    """Parse and validate ``s3://bucket[/key]``; raise ``ValueError`` saying what is wrong."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI (expected s3://bucket/key): {_without_userinfo(str(uri))!r}")
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if "@" in bucket or ":" in bucket:  # not echoed: it may hold a key
        raise ValueError("S3 URI must not carry credentials or a port (the endpoint comes from the environment)")
    if parts.query or parts.fragment:  # not echoed: a presigned query carries a signature
        raise ValueError(f"S3 URI must not have a query or fragment: s3://{bucket}/{key}")
    if not bucket:
        raise ValueError(f"S3 URI has no bucket: {uri!r}")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError(f"invalid S3 bucket name {bucket!r} (3-63 lowercase letters, digits, '.', '-')")
    if any(p in (".", "..") for p in key.split("/")):
        raise ValueError(f"S3 key must not contain '.' or '..' segments: {uri!r}")
    return S3Uri(bucket, key)


# ------------------------------------------------------------------------------------ the client


def endpoint_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured endpoint of a non-AWS store, or ``None`` for AWS's own endpoints."""
    environ = os.environ if environ is None else environ
    return next((environ[name] for name in ENDPOINT_ENV if environ.get(name)), None)


def display_endpoint(url: str | None) -> str:
    """The endpoint for messages: any ``user:password@`` stripped, AWS's default named as such."""
    if not url:
        return "the default AWS S3 endpoint"
    parts = urlsplit(_without_userinfo(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def client(endpoint: str | None = None, max_attempts: int = MAX_ATTEMPTS, connect_timeout: float = 10) -> S3Client:
    """A boto3 S3 client: standard retries (``max_attempts`` tries in all), timeouts, path-style
    addressing for custom endpoints (``endpoint`` defaults to :func:`endpoint_url`).

    Credentials are resolved by boto3's default chain when a request is signed, never here.
    """
    import boto3
    from botocore.config import Config

    endpoint = endpoint or endpoint_url()
    config = Config(
        # Backoff on throttling, 5xx and connection errors. ``total_max_attempts`` counts the first
        # try too (botocore's ``max_attempts`` counts retries only).
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=120,
        # Self-hosted stores rarely have wildcard DNS for virtual-hosted buckets.
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def transfer_config(threshold_mib: int = 64, chunk_mib: int = 16, concurrency: int = 4) -> TransferConfig:
    """Multipart transfers above ``threshold_mib`` in ``chunk_mib`` parts (S3's minimum is 5 MiB)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=threshold_mib * MiB,
        multipart_chunksize=max(chunk_mib, 5) * MiB,
        max_concurrency=concurrency,
        use_threads=concurrency > 1,
    )


# ------------------------------------------------------------------------------------------ errors


class StorageError(RuntimeError):
    """A failed object-store operation, described in one line without secrets.

    ``kind`` is one of ``credentials``, ``access``, ``no-bucket``, ``not-found``, ``unreachable``,
    ``no-credentials`` or ``other``.
    """

    def __init__(self, message: str, kind: str, bucket: str | None = None, endpoint: str | None = None) -> None:
        super().__init__(redact(" ".join(message.split())))
        self.kind = kind
        self.bucket = bucket
        self.endpoint = endpoint


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with the values of the secret AWS variables replaced (belt and braces)."""
    environ = os.environ if environ is None else environ
    for name in SECRET_ENV:
        value = environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def explain(exc: BaseException, action: str, uri: S3Uri | str, endpoint: str | None) -> StorageError:
    """Turn a boto3/botocore exception (possibly wrapped, e.g. ``S3UploadFailedError``) into a ``StorageError``."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    bucket = uri.bucket if isinstance(uri, S3Uri) else urlsplit(str(uri)).netloc or None
    where = f"{action} {uri} at {display_endpoint(endpoint)}"
    for cause in _causes(exc):
        if isinstance(cause, ClientError):
            error = cause.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _CREDENTIAL_CODES:
                return StorageError(
                    f"{where}: credentials rejected ({code}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
                    "credentials",
                    bucket,
                    endpoint,
                )
            if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
                return StorageError(
                    f"{where}: access denied ({code or 'HTTP 403'}); wrong credentials or no permission on bucket {bucket!r}",
                    "access",
                    bucket,
                    endpoint,
                )
            if code in _MISSING_BUCKET_CODES:
                return StorageError(f"{where}: bucket {bucket!r} does not exist", "no-bucket", bucket, endpoint)
            if code in _MISSING_KEY_CODES or status == 404:
                return StorageError(f"{where}: not found ({code or 'HTTP 404'})", "not-found", bucket, endpoint)
            return StorageError(f"{where}: {code or status}: {error.get('Message', '')}", "other", bucket, endpoint)
        if isinstance(cause, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)):
            return StorageError(
                f"{where}: cannot reach the S3 endpoint ({type(cause).__name__}); check AWS_ENDPOINT_URL / "
                "MLFLOW_S3_ENDPOINT_URL and the network",
                "unreachable",
                bucket,
                endpoint,
            )
        if isinstance(cause, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(
                f"{where}: no usable AWS credentials ({type(cause).__name__}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance/pod role",
                "no-credentials",
                bucket,
                endpoint,
            )
    return StorageError(f"{where}: {type(exc).__name__}: {exc}", "other", bucket, endpoint)


def _endpoint_of(s3: S3Client) -> str | None:
    url = str(getattr(s3.meta, "endpoint_url", "") or "")
    return None if url.endswith(".amazonaws.com") else url or None


# -------------------------------------------------------------------------------------- operations


def list_keys(uri: str | S3Uri, s3: S3Client | None = None) -> list[str]:
    """All object keys under the prefix ``uri`` (as a folder), sorted."""
    target = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
    s3 = s3 or client()
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=target.prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    except Exception as exc:
        raise explain(exc, "list", target, _endpoint_of(s3)) from exc
    return sorted(keys)


def _relative(key: str, prefix: str, target: S3Uri) -> PurePosixPath | None:
    """The local relative path for ``key``; ``None`` for folder markers; error for unsafe keys."""
    rel = key[len(prefix) :]
    if not rel or rel.endswith("/"):
        return None
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise StorageError(f"download {target}: refusing unsafe object key {key!r}", "other", target.bucket)
    return path


def download_prefix(
    uri: str | S3Uri,
    local: str | Path,
    s3: S3Client | None = None,
    transfer: TransferConfig | None = None,
    *,
    workers: int = 8,
) -> Path:
    """Download everything under ``uri`` into the folder ``local``, atomically.

    Objects are fetched into a temporary sibling folder and swapped in only when all arrived, so
    on any failure (credentials, network, missing prefix) an existing ``local`` is left exactly
    as it was, and each file is written once (the rename moves it). An empty prefix is an error,
    not an empty folder. ``workers`` objects are fetched at a time: a dataset is thousands of
    few-MB photos, where one request at a time waits on latency, not bandwidth.
    """
    target = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
    dest = Path(local).absolute()
    s3 = s3 or client()
    keys = list_keys(target, s3)
    if not keys:
        raise StorageError(
            f"download {target} at {display_endpoint(_endpoint_of(s3))}: no objects under this prefix",
            "not-found",
            target.bucket,
            _endpoint_of(s3),
        )
    transfer = transfer or transfer_config()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A sibling folder: same filesystem, so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.download-", dir=dest.parent))
    try:
        files: list[tuple[str, Path]] = []
        for key in keys:  # every key is checked before the first byte is fetched
            rel = _relative(key, target.prefix, target)
            if rel is not None:
                files.append((key, staging.joinpath(*rel.parts)))
        for _, file in files:
            file.parent.mkdir(parents=True, exist_ok=True)

        def fetch(item: tuple[str, Path]) -> None:
            key, file = item
            try:
                s3.download_file(target.bucket, key, str(file), Config=transfer)
            except Exception as exc:
                raise explain(exc, "download", S3Uri(target.bucket, key), _endpoint_of(s3)) from exc

        if workers <= 1 or len(files) <= 1:
            for item in files:
                fetch(item)
        else:
            # boto3 clients are thread-safe. The first failure is raised once the requests in
            # flight end; the ones not started are cancelled.
            with ThreadPoolExecutor(min(workers, len(files))) as pool:
                futures = [pool.submit(fetch, item) for item in files]
                try:
                    for future in as_completed(futures):
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        _swap_in(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded %d objects from %s to %s", len(keys), target, dest)
    return dest


def download_object(uri: str | S3Uri, local: str | Path, s3: S3Client | None = None) -> Path:
    """Download one object to the file ``local``, atomically (an existing ``local`` stays whole
    until the new copy has arrived)."""
    from esrgan.fileio import atomic_write

    target = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri)
    s3 = s3 or client()

    def fetch(tmp: str) -> None:
        try:
            s3.download_file(target.bucket, target.key, tmp)
        except Exception as exc:
            raise explain(exc, "download", target, _endpoint_of(s3)) from exc

    return atomic_write(local, fetch)


def _swap_in(staging: Path, dest: Path) -> None:
    """Replace ``dest`` by ``staging``; if the final rename fails the old ``dest`` is put back."""
    aside = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}") if dest.exists() else None
    if aside is not None:
        dest.rename(aside)
    try:
        staging.rename(dest)
    except BaseException:
        if aside is not None:
            aside.rename(dest)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
