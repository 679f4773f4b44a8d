"""KFP parameters (params_json + knobs), submission arguments and the data sources of the first step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.data.sources import DataSource, DataSourceError, fetch_dataset
from pipeline.kfp.params import KNOBS, canonical_json, params_with_knobs, pipeline_key, split_knobs
from pipeline.kfp.run import build_arguments, compiled_defaults
from pipeline.params import ParamsError
from tests.e2e.project import tiny_params

REPO = Path(__file__).resolve().parents[3]


def split(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rest, knobs = split_knobs(doc)
    return canonical_json(rest), knobs


def test_split_then_resolve_gives_back_params_yaml() -> None:
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    params_json, knobs = split(doc)
    assert set(knobs) == set(KNOBS) and "alphas" not in json.loads(params_json)["interpolate"]
    assert params_with_knobs(params_json, knobs).model_dump() == params_with_knobs(json.dumps(doc), knobs).model_dump()


def test_knobs_override_and_conflicts_name_the_knob() -> None:
    params_json, knobs = split(tiny_params())
    params = params_with_knobs(params_json, {**knobs, "gan_iterations": 7, "alphas": [0.0, 0.3, 1.0]})
    assert params.finetune_gan.iterations == 7 and params.interpolate.alphas == [0.0, 0.3, 1.0]
    with pytest.raises(ParamsError, match="'psnr_iterations'"):
        params_with_knobs(json.dumps(tiny_params()), {**knobs, "psnr_iterations": 99})
    with pytest.raises(ParamsError, match="alphas must include the endpoints"):
        params_with_knobs(params_json, {**knobs, "alphas": [0.0, 0.5]})
    with pytest.raises(ParamsError, match="not valid JSON"):
        params_with_knobs("{", knobs)


def test_pipeline_key_follows_params_and_data() -> None:
    params_json, knobs = split(tiny_params())
    params = params_with_knobs(params_json, knobs)
    data = DataSource("dvc", "https://example.org/repo.git", "v1").as_dict()
    assert pipeline_key(params, data) == pipeline_key(params_with_knobs(params_json, knobs), dict(data))
    assert pipeline_key(params, data) != pipeline_key(params, {**data, "rev": "v2"})
    other = params_with_knobs(params_json, {**knobs, "gan_iterations": 3})
    assert pipeline_key(params, data) != pipeline_key(other, data)
    assert pipeline_key(params, data, "0.1.0") != pipeline_key(params, data, "0.2.0")


def test_submission_arguments_from_overrides() -> None:
    defaults = compiled_defaults(REPO / "pipeline.yaml")
    assert {"params_json", "data_source", "checkpoint_pvc", *KNOBS} <= set(defaults)
    # Pipeline parameters and knobbed dotted keys only: the compiled params_json is not resent.
    args = build_arguments(defaults, ["gan_iterations=5000", "data_rev=v2", "interpolate.alphas=[0.0,1.0]"])
    assert args == {"gan_iterations": 5000, "data_rev": "v2", "alphas": [0.0, 1.0]}
    # A dotted key edits the compiled params_json.
    args = build_arguments(defaults, ["evaluate.tile=128"], compiled_params_json=defaults["params_json"])
    assert json.loads(args["params_json"])["evaluate"]["tile"] == 128
    assert set(args) == {"params_json"}  # knobs keep their compiled defaults
    with pytest.raises(ParamsError, match="neither a pipeline parameter"):
        build_arguments(defaults, ["nonsense=1"])


def make_dataset(root: Path) -> Path:
    for split_name in ("train", "val"):
        (root / split_name).mkdir(parents=True)
        (root / split_name / f"{split_name}.png").write_bytes(b"not really a png")
    return root


def test_local_source_copies_and_checks_the_layout(tmp_path: Path) -> None:
    src = make_dataset(tmp_path / "src")
    out = fetch_dataset(DataSource("local", str(src)), tmp_path / "out")
    assert (out / "val" / "val.png").read_bytes() == b"not really a png"
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataSourceError, match="no train or val folder"):
        fetch_dataset(DataSource("local", str(tmp_path / "flat")), tmp_path / "out2")


def test_dvc_source_gets_the_tracked_folder_from_the_remote(tmp_path: Path) -> None:
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    make_dataset(repo / "data")
    dvc = str(Path(sys.executable).with_name("dvc"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (
        ["git", "init", "-q"],
        [dvc, "init", "-q"],
        [dvc, "remote", "add", "-d", "store", str(remote)],
        [dvc, "add", "-q", "data"],
        [dvc, "push", "-q"],
        ["git", "add", "-A"],
        [*git, "commit", "-qm", "data"],
        [*git, "tag", "v1"],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    out = fetch_dataset(DataSource("dvc", str(repo), rev="v1", path="data"), tmp_path / "fetched")
    assert sorted(p.name for p in out.rglob("*.png")) == ["train.png", "val.png"]


def test_print_restored_undoes_a_print_left_patched() -> None:
    """What kfp.local can leave behind after a ParallelFor (an indenting builtins.print) is undone."""
    import builtins

    from pipeline.kfp.run import print_restored

    original = builtins.print
    try:
        with print_restored():
            builtins.print = lambda *args, **kwargs: original("    ", *args, **kwargs)
        assert builtins.print is original
    finally:
        builtins.print = original
