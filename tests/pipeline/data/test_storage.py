"""pipeline.data.storage without a server: URIs, client settings, error messages, atomic downloads."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from pipeline.data import storage
from pipeline.data.storage import S3Uri, StorageError, parse_s3_uri

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ENDPOINT = "http://127.0.0.1:9000"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*storage.ENDPOINT_ENV, *storage.SECRET_ENV, "AWS_ACCESS_KEY_ID", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


# -------------------------------------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    ("uri", "bucket", "key", "prefix"),
    [
        ("s3://bucket", "bucket", "", ""),
        ("s3://bucket/", "bucket", "", ""),
        ("s3://my.bucket-1/data/hr", "my.bucket-1", "data/hr", "data/hr/"),
        ("s3://bucket/data/hr/", "bucket", "data/hr/", "data/hr/"),
    ],
)
def test_parse_s3_uri(uri: str, bucket: str, key: str, prefix: str) -> None:
    parsed = parse_s3_uri(uri)
    assert (parsed.bucket, parsed.key, parsed.prefix) == (bucket, key, prefix)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("/local/path", "not an S3 URI"),
        ("gs://bucket/x", "not an S3 URI"),
        ("s3:///key", "no bucket"),
        ("s3://Bucket/x", "invalid S3 bucket name"),
        ("s3://ab/x", "invalid S3 bucket name"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3://bucket/x?versionId=1", "query"),
        ("s3://AKIA:secret@bucket/x", "must not carry credentials"),
        ("s3://AKIA:sec/ret@bucket/x", "must not carry credentials"),  # AWS secrets may hold "/"
        ("https://AKIA:sec/ret@host/x", "not an S3 URI"),
    ],
)
def test_parse_s3_uri_rejects_with_a_reason(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as err:
        parse_s3_uri(uri)
    assert "secret" not in str(err.value)


def test_uri_str() -> None:
    assert str(parse_s3_uri("s3://bucket/runs/a")) == "s3://bucket/runs/a"
    assert str(S3Uri("bucket")) == "s3://bucket/"


# ------------------------------------------------------------------------------------------ client


def test_endpoint_precedence_specific_first() -> None:
    env = {"MLFLOW_S3_ENDPOINT_URL": "http://mlflow:1", "AWS_ENDPOINT_URL": "http://aws:2"}
    assert storage.endpoint_url(env) == "http://aws:2"
    assert storage.endpoint_url({**env, "AWS_ENDPOINT_URL_S3": "http://s3:3"}) == "http://s3:3"
    assert storage.endpoint_url({"MLFLOW_S3_ENDPOINT_URL": "http://mlflow:1"}) == "http://mlflow:1"
    assert storage.endpoint_url({}) is None


def test_client_has_standard_retries_and_path_style_for_custom_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", ENDPOINT)
    s3 = storage.client(max_attempts=7)
    assert s3.meta.endpoint_url == ENDPOINT
    assert s3.meta.config.retries == {"mode": "standard", "total_max_attempts": 7}
    assert s3.meta.config.s3 == {"addressing_style": "path"}


def test_transfer_config_is_multipart_with_s3_minimum_part_size() -> None:
    config = storage.transfer_config(threshold_mib=8, chunk_mib=1, concurrency=2)
    assert config.multipart_threshold == 8 * storage.MiB
    assert config.multipart_chunksize == 5 * storage.MiB  # S3 rejects smaller parts


def test_unreachable_endpoint_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    s3 = storage.client(f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout=2)
    with pytest.raises(StorageError) as err:
        storage.list_keys("s3://bucket/data", s3)
    assert err.value.kind == "unreachable"
    assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value) and SECRET not in str(err.value)


# ------------------------------------------------------------------------------------------ errors


def client_error(code: str, status: int, message: str = "") -> ClientError:
    body: dict[str, Any] = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(body, "ListObjectsV2")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (client_error("SignatureDoesNotMatch", 403), "credentials", "credentials rejected (SignatureDoesNotMatch)"),
        (client_error("InvalidAccessKeyId", 403), "credentials", "credentials rejected (InvalidAccessKeyId)"),
        (client_error("AccessDenied", 403), "access", "access denied (AccessDenied)"),
        (client_error("403", 403, "Forbidden"), "access", "access denied (403)"),  # HEAD: no body, no code
        (client_error("NoSuchBucket", 404), "no-bucket", "bucket 'data' does not exist"),
        (client_error("404", 404), "not-found", "not found"),
        (client_error("SlowDown", 503, "Please\nreduce"), "other", "SlowDown: Please reduce"),
        (EndpointConnectionError(endpoint_url=ENDPOINT), "unreachable", "cannot reach the S3 endpoint"),
        (NoCredentialsError(), "no-credentials", "no usable AWS credentials"),
    ],
)
def test_explain_names_bucket_and_endpoint_in_one_line(exc: Exception, kind: str, words: str) -> None:
    error = storage.explain(exc, "download", parse_s3_uri("s3://data/hr"), ENDPOINT)
    text = str(error)
    assert error.kind == kind and words in text
    assert "s3://data/hr" in text and ENDPOINT in text and "\n" not in text
    assert error.bucket == "data" and error.endpoint == ENDPOINT


def test_explain_unwraps_boto3_transfer_errors() -> None:
    try:
        try:
            raise client_error("SignatureDoesNotMatch", 403)
        except ClientError as inner:  # boto3 raises its own error inside ``except``, as here
            raise S3UploadFailedError(f"Failed to upload f to data/x: {inner}")  # noqa: B904
    except S3UploadFailedError as outer:
        error = storage.explain(outer, "upload to", "s3://data/x", None)
    assert error.kind == "credentials" and "the default AWS S3 endpoint" in str(error)


def test_messages_never_carry_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    error = storage.explain(client_error("Weird", 400, f"echoed {SECRET}"), "list", "s3://data/x", ENDPOINT)
    assert SECRET not in str(error) and "***" in str(error)
    shown = storage.display_endpoint(f"https://AKID:{SECRET}@minio.example:9000/")
    assert shown == "https://minio.example:9000/" and SECRET not in shown
    assert storage.display_endpoint(None) == "the default AWS S3 endpoint"


# ---------------------------------------------------------------------------- atomic download


class FakeS3:
    """Just enough of a boto3 client for ``download_prefix``: listing and per-object download."""

    def __init__(self, objects: dict[str, bytes], fail_on: str | None = None) -> None:
        self.objects, self.fail_on = objects, fail_on
        self.meta = type("Meta", (), {"endpoint_url": ENDPOINT})()

    def get_paginator(self, name: str) -> Any:
        objects = self.objects

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                return [{"Contents": [{"Key": k} for k in sorted(objects) if k.startswith(Prefix)]}]

        return Paginator()

    def download_file(self, bucket: str, key: str, filename: str, Config: Any = None) -> None:
        if key == self.fail_on:
            raise EndpointConnectionError(endpoint_url=ENDPOINT)
        Path(filename).write_bytes(self.objects[key])


def make_local(tmp_path: Path) -> Path:
    local = tmp_path / "data"
    local.mkdir()
    (local / "keep.txt").write_text("mine")
    return local


def test_download_replaces_folder_only_when_complete(tmp_path: Path) -> None:
    local = make_local(tmp_path)
    fake = FakeS3({"hr/a.png": b"a", "hr/sub/b.png": b"b", "hr/sub/": b"", "hrx/no.png": b"x"})
    assert storage.download_prefix("s3://data/hr", local, fake) == local.absolute()
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*.png")) == ["a.png", "sub/b.png"]
    assert not (local / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize(
    ("objects", "fail_on", "kind"),
    [
        ({"hr/a.png": b"a", "hr/b.png": b"b"}, "hr/b.png", "unreachable"),  # fails half way
        ({"hr/../../etc/x": b"a"}, None, "other"),  # unsafe key
        ({"other/a.png": b"a"}, None, "not-found"),  # empty prefix
    ],
)
def test_failed_download_leaves_local_folder_untouched(
    tmp_path: Path, objects: dict[str, bytes], fail_on: str | None, kind: str
) -> None:
    local = make_local(tmp_path)
    with pytest.raises(StorageError) as err:
        storage.download_prefix("s3://data/hr", local, FakeS3(objects, fail_on))
    assert err.value.kind == kind and "\n" not in str(err.value)
    assert [p.name for p in local.iterdir()] == ["keep.txt"] and (local / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging folder left
