"""``init`` sources: each kind resolves to a file re-saved in this project's layout with its lineage,
and each bad input is one ``esrgan: error:`` line, fast, with nothing written or deleted."""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from esrgan.models import RRDBNet, save_generator
from esrgan.models.discriminator import VGGDiscriminator
from esrgan.models.init_weights import discriminator_bytes
from pipeline.cli import main
from pipeline.data.init_sources import InitSourceError, read_stage_init, resolve_source, resolve_stage_init
from pipeline.params import parse_params
from tests.loopback import serving

warnings.filterwarnings("ignore", message=".*num_grow.*")
ROOT = Path(__file__).resolve().parents[3]
DEMO = yaml.safe_load((ROOT / "params.yaml").read_text())


def demo_generator(seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(**DEMO["model"])


def params_with(**init: dict[str, Any]) -> Any:
    doc = copy.deepcopy(DEMO)
    for section, values in init.items():
        doc[section]["init"] = {**doc[section]["init"], **values}
    return parse_params(doc, "params.yaml")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving ``tmp_path/www``."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Quiet) as url:
        yield url, www


def test_a_local_file_resolves_to_itself_with_its_digest(tmp_path: Path) -> None:
    path = save_generator(demo_generator(), tmp_path / "g.pth")
    resolved = resolve_source("g.pth", tmp_path)
    assert resolved.path == path and resolved.resolved == str(path.resolve())
    assert resolved.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_download_is_checked_and_cached(
    tmp_path: Path, served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, www = served
    monkeypatch.setenv("ESRGAN_CACHE", str(tmp_path / "cache"))
    data = save_generator(demo_generator(), www / "RRDB_PSNR_x4.pth").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    first = resolve_source(f"{url}/RRDB_PSNR_x4.pth#sha256={digest}", tmp_path)
    assert first.path.read_bytes() == data and first.sha256 == digest
    (www / "RRDB_PSNR_x4.pth").unlink()  # downloaded once: the cache serves the second use
    assert resolve_source(f"{url}/RRDB_PSNR_x4.pth#sha256={digest}", tmp_path).path == first.path
    with pytest.raises(InitSourceError, match="a download needs its digest"):
        resolve_source(f"{url}/RRDB_PSNR_x4.pth", tmp_path)
    (www / "other.pth").write_bytes(b"not the weights")
    with pytest.raises(InitSourceError, match=f"sha256 is .*, not the {'0' * 64} the source names"):
        resolve_source(f"{url}/other.pth#sha256={'0' * 64}", tmp_path)
    with pytest.raises(InitSourceError, match="the server answered HTTP 404"):
        resolve_source(f"{url}/missing.pth#sha256={'1' * 64}", tmp_path)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()) == ["RRDB_PSNR_x4.pth"]


def _resolve_cli(
    tmp_path: Path, init: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, list[str], float]:
    doc = copy.deepcopy(DEMO)
    for section, values in init.items():
        doc[section]["init"] = {**doc[section]["init"], **values}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", *env)}
    os.environ.update({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **env})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    start = time.monotonic()
    try:
        code = main(["stage", "resolve_init", "--out", "outputs/init"])
    finally:
        os.chdir(cwd)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("esrgan:")], time.monotonic() - start


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "pretrain_psnr.init.generator: no such file|nowhere.pth: no such file"),
        ("wrong-sha256", "sha256 is"),
        ("no-sha256", "a download needs its digest"),
        ("unreachable-url", "cannot download"),
        ("unreachable-registry", "unreachable|cannot reach"),
        ("unreachable-s3", "cannot reach the S3 endpoint|download s3://"),
        ("pickle", "refused, loading it would run code"),
        ("nan", "not finite"),
        ("truncated", "truncated|not a readable|cannot read|corrupt"),
        ("architecture", r"conv_first.weight is \(64, 3, 3, 3\) in the file but \(32, 3, 3, 3\)"),
        ("swinir", "not an RRDBNet"),
        ("discriminator-as-generator", "not an RRDBNet"),
        ("param-key", "param_key 'params' is not in the file"),
        ("scheme", "unsupported source"),
    ],
)
def test_a_bad_source_is_one_line_and_writes_nothing(
    tmp_path: Path, served: tuple[str, Path], capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    url, www = served
    env: dict[str, str] = {"ESRGAN_CACHE": str(tmp_path / "cache")}
    weights = tmp_path / "w.pth"
    source = str(weights)
    init: dict[str, Any] = {}
    if case == "missing":
        source = "nowhere.pth"
    elif case == "wrong-sha256":
        (www / "w.pth").write_bytes(b"x")
        source = f"{url}/w.pth#sha256={'a' * 64}"
    elif case == "no-sha256":
        source = f"{url}/w.pth"
    elif case == "unreachable-url":
        source = f"http://127.0.0.1:9/w.pth#sha256={'a' * 64}"
    elif case == "unreachable-registry":
        source = "models:/esrgan-x4@champion"
        env["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    elif case == "unreachable-s3":
        source = "s3://bucket/weights/w.pth"
        env.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="secret-value")
    elif case == "pickle":
        import pickle

        weights.write_bytes(pickle.dumps(os.system))
    elif case == "nan":
        model = demo_generator()
        with torch.no_grad():
            model.conv_first.weight[0, 0, 0, 0] = float("nan")
        torch.save(model.state_dict(), weights)
    elif case == "truncated":
        weights.write_bytes(save_generator(demo_generator(), tmp_path / "full.pth").read_bytes()[:2000])
    elif case == "architecture":
        torch.manual_seed(0)
        save_generator(RRDBNet(num_feat=64, num_block=1, num_grow=32), weights)
    elif case == "swinir":
        torch.save(
            {"params": {"conv_first.weight": torch.zeros(60, 3, 3, 3), "layers.0.attn.table": torch.zeros(9, 6)}},
            weights,
        )
    elif case == "discriminator-as-generator":
        torch.save(VGGDiscriminator(128, 3, 8).state_dict(), weights)
    elif case == "param-key":
        torch.save({"params_ema": demo_generator().state_dict()}, weights)
        init["param_key"] = "params"
    elif case == "scheme":
        source = "ftp://host/w.pth"
    code, lines, seconds = _resolve_cli(tmp_path, {"pretrain_psnr": {"generator": source, **init}}, capsys, **env)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("esrgan: error: ")
    import re

    assert re.search(message, lines[0]), lines[0]
    assert "secret-value" not in lines[0]
    assert seconds < 30  # a coarse guard: unreachable servers are reported in seconds, not minutes
    assert not (tmp_path / "outputs").exists()


def test_resolution_rewrites_equal_bytes_and_records_the_lineage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "net_g.pth"
    torch.save({"params": demo_generator(3).state_dict(), "params_ema": demo_generator(4).state_dict()}, source)
    d_source = tmp_path / "net_d.pth"
    d_source.write_bytes(
        discriminator_bytes(VGGDiscriminator(128, 3, DEMO["finetune_gan"]["discriminator"]["num_feat"]))
    )
    init = {"finetune_gan": {"generator": str(source), "discriminator": str(d_source), "param_key": "params"}}
    code, lines, _ = _resolve_cli(tmp_path, init, capsys)
    assert code == 0, lines
    folder = tmp_path / "outputs" / "init"
    stage = read_stage_init(folder / "finetune_gan")
    assert stage.generator is not None and stage.discriminator is not None
    record = json.loads((folder / "finetune_gan" / "source.json").read_text())
    assert record["generator"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["param_key"] == "params"
    expected = save_generator(demo_generator(3), tmp_path / "expected.pth").read_bytes()  # params, not params_ema
    assert stage.generator.read_bytes() == expected
    assert read_stage_init(folder / "pretrain_psnr").generator is None
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert _resolve_cli(tmp_path, init, capsys)[0] == 0
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    # A source removed from params.yaml takes its file with it.
    assert _resolve_cli(tmp_path, {"finetune_gan": {"discriminator": None}}, capsys)[0] == 0
    assert not (folder / "finetune_gan" / "discriminator.pth").exists()


def test_stage_init_tags_name_the_resolution(tmp_path: Path) -> None:
    path = save_generator(demo_generator(), tmp_path / "g.pth")
    params = params_with(pretrain_psnr={"generator": str(path)})
    record = resolve_stage_init(params, "pretrain_psnr", tmp_path / "out", tmp_path)
    tags = read_stage_init(tmp_path / "out").tags("pretrain_psnr")
    assert tags == {"pretrain_psnr.init.generator": f"{path.resolve()} (sha256 {record['generator']['sha256'][:16]})"}


def test_model_auto_reads_the_architecture_from_the_init_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.params import ParamsError

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_generator(RRDBNet(num_feat=16, num_block=2, num_grow=32), tmp_path / "released.pth")
    doc = copy.deepcopy(DEMO)
    doc["model"] = "auto"
    doc["pretrain_psnr"]["init"]["generator"] = "released.pth"
    params = parse_params(doc, "params.yaml")
    assert params.model.model_dump() == {
        "scale": 4,
        "in_ch": 3,
        "out_ch": 3,
        "num_feat": 16,
        "num_block": 2,
        "num_grow": 32,
    }
    doc["pretrain_psnr"]["init"]["generator"] = None
    with pytest.raises(
        ParamsError,
        match=r"params\.yaml: model: auto: needs pretrain_psnr\.init\.generator or finetune_gan\.init\.generator",
    ):
        parse_params(doc, "params.yaml")
    torch.manual_seed(0)
    save_generator(RRDBNet(scale=2, num_feat=16, num_block=1, num_grow=32), tmp_path / "x2.pth")
    doc["finetune_gan"]["init"]["generator"] = "x2.pth"
    with pytest.raises(ParamsError, match=r"extract_patches.scale \(4\) differs from model.scale \(2\)"):
        parse_params(doc, "params.yaml")
