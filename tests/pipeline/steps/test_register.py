"""The register step around the gate (issue 21, case 5): a champion whose recorded figures are
missing, not a number or not finite is measured again on this run's images, or kept unless
``register.force_promote``; ``registered.json`` and the version's decision tags are written in
every outcome that registered a version, with no NaN in any JSON. No MLflow server: the register
step runs against an in-memory registry (``FakeRegistry``). The decisions themselves are tested
in ``test_selection_gate.py``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from pipeline.errors import PipelineError
from pipeline.params import RegisterParams
from pipeline.registry.aliases import RegistryError
from pipeline.steps import register as register_module
from pipeline.steps.register import EVAL_KEY_TAG, champion_figures, image_fingerprint, json_safe, register_step
from pipeline.steps.selection import decide, figure
from tests.pipeline.steps.gate_cases import BAD, RULE, TRUE_CHAMPION, WORSE, finite_json


def figure_tags_are_finite(tags: dict[str, str]) -> bool:
    figures = {k: v for k, v in tags.items() if k.startswith(("decision.champion.", "decision.challenger."))}
    return bool(figures) and all(figure(v) is not None for v in figures.values())


# ------------------------------------------------------------ the champion's figures: re-measure


KEY = "data=aaaa.dir;scale=4;max_images=None"


def registered_champion(**tags: Any) -> SimpleNamespace:
    return SimpleNamespace(name="esrgan-x4", version="3", tags={EVAL_KEY_TAG: KEY, **tags})


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path, tuple[str, ...]]]:
    """``measure_champion`` replaced: records its calls, returns ``TRUE_CHAMPION``."""
    calls: list[tuple[str, Path, tuple[str, ...]]] = []

    def measure(ctx: Any, uri: str, val_dir: Path, metrics: Any) -> dict[str, float]:
        calls.append((uri, val_dir, tuple(metrics)))
        return dict(TRUE_CHAMPION)

    monkeypatch.setattr(register_module, "measure_champion", measure)
    return calls


@pytest.mark.parametrize("niqe", BAD)
def test_unusable_recorded_figure_is_measured_again(niqe: Any, measured: list, tmp_path: Path) -> None:
    tags = {"psnr_y": "25.0000"} if niqe is None else {"psnr_y": "25.0000", "niqe": str(niqe)}
    figures, how = champion_figures(None, None, registered_champion(**tags), KEY, tmp_path, ["psnr_y", "niqe"])
    assert measured == [("models:/esrgan-x4/3", tmp_path, ("psnr_y", "niqe"))]
    assert figures == TRUE_CHAMPION and "re-evaluated" in how and "niqe" in how
    d = decide(WORSE, figures, RULE, champion_version="3", compared_on=how)
    assert not d.promote and "challenger niqe 6.0000 > champion's 5.0000" in d.reason


def test_usable_recorded_figures_are_taken_as_they_are(measured: list, tmp_path: Path) -> None:
    champion = registered_champion(psnr_y="25.5000", niqe="4.2500")
    figures, how = champion_figures(None, None, champion, KEY, tmp_path, ["psnr_y", "niqe"])
    assert figures == {"psnr_y": 25.5, "niqe": 4.25} and "recorded figures" in how and not measured


def test_unusable_figure_and_no_images_to_measure_on_keeps_the_champion(measured: list, tmp_path: Path) -> None:
    champion = registered_champion(psnr_y="25.0000", niqe="nan")
    figures, how = champion_figures(None, None, champion, KEY, tmp_path / "missing", ["psnr_y", "niqe"])
    assert figures is None and not measured and "'nan'" in how and "missing" in how
    d = decide({"niqe": 1.0, "psnr_y": 40.0}, figures, RULE, champion_version="3", unmeasured=how)
    assert not d.promote and "could not be measured" in d.reason and "'nan'" in d.reason


def test_a_failed_measurement_keeps_the_champion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(*args: Any) -> dict[str, float]:
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(register_module, "measure_champion", broken)
    figures, how = champion_figures(None, None, registered_champion(), KEY, tmp_path, ["psnr_y", "niqe"])
    assert figures is None and how == "re-evaluating models:/esrgan-x4/3 failed: out of memory"


def test_a_measurement_that_gives_nan_keeps_the_champion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(register_module, "measure_champion", lambda *a: {"psnr_y": 25.0, "niqe": math.nan})
    figures, how = champion_figures(None, None, registered_champion(), KEY, tmp_path, ["psnr_y", "niqe"])
    d = decide({"niqe": 1.0, "psnr_y": 40.0}, figures, RULE, champion_version="3", compared_on=how)
    assert not d.promote and "the champion has no niqe" in d.reason


def test_json_safe_turns_every_non_finite_float_into_null() -> None:
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2.0, "nan"), "e": None}
    assert finite_json(json_safe(data)) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.0, "nan"], "e": None}


# --------------------------------------------------------------- the register step, end to end


class FakeRegistry:
    """The part of ``MlflowClient`` the register step and :func:`pipeline.registry.aliases.promote` use."""

    def __init__(self, champion_tags: dict[str, str]) -> None:
        self.aliases: dict[str, str] = {"champion": "3"}
        self.model_tags: dict[str, str] = {"champion_history": "3"}
        self.tags: dict[str, dict[str, str]] = {"3": dict(champion_tags)}
        self.fail_on_tag: str | None = None

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        if alias not in self.aliases:
            raise MlflowException(f"no alias {alias}", error_code=RESOURCE_DOES_NOT_EXIST)
        return self.get_model_version(name, self.aliases[alias])

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(name=name, version=version, tags=dict(self.tags[version]))

    def get_registered_model(self, name: str) -> Any:
        return SimpleNamespace(name=name, tags=dict(self.model_tags), aliases=dict(self.aliases))

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        if key == self.fail_on_tag:
            raise MlflowException(f"the registry refused tag {key}")
        self.tags.setdefault(version, {})[key] = value

    def delete_model_version_tag(self, name: str, version: str, key: str) -> None:
        self.tags[version].pop(key, None)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self.model_tags[key] = value

    def __getattr__(self, name: str) -> Any:  # descriptions, parent-run metrics and tags: not checked here
        return lambda *args, **kwargs: None


@pytest.fixture
def step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, measured: list) -> Any:
    """``register_step`` against a :class:`FakeRegistry` (champion: version 3), MLflow's tracking
    calls stubbed; the new version is 4. Returns ``run(champion_tags, force=False)``."""
    monkeypatch.setattr(register_module, "provenance_tags", lambda *a, **k: {"data.dvc.md5": "aaaa.dir"})
    monkeypatch.setattr(register_module, "parent_run_id", lambda tracking: "parent")
    monkeypatch.setattr(register_module, "finish_parent", lambda tracking: "parent")
    monkeypatch.setattr(register_module, "sweep_images", lambda *a: {})
    monkeypatch.setattr(
        register_module, "log_generator_model", lambda *a, **k: SimpleNamespace(registered_model_version=4)
    )
    stub = SimpleNamespace(get_tracking_uri=lambda: "sqlite:///mlflow.db")
    for call in ("log_metrics", "log_params", "set_tags", "log_artifact", "log_image", "log_dict"):
        setattr(stub, call, lambda *a, **k: None)
    monkeypatch.setattr(register_module, "mlflow", stub)

    @contextmanager
    def stage_run(*args: Any, **kwargs: Any) -> Iterator[Any]:
        yield SimpleNamespace(info=SimpleNamespace(run_id="register-run"))

    monkeypatch.setattr(register_module, "stage_run", stage_run)
    reports = []
    for alpha, niqe in ((0.0, 6.5), (1.0, WORSE["niqe"])):
        mean = {"psnr_y": WORSE["psnr_y"], "niqe": niqe}
        reports.append(tmp_path / f"alpha_{alpha}.json")
        reports[-1].write_text(json.dumps({"alpha": alpha, "model": {"mean": mean}, "bicubic": {"mean": mean}}))
    (tmp_path / "data" / "val").mkdir(parents=True)

    def run(champion_tags: dict[str, str], force: bool = False, registry: FakeRegistry | None = None) -> Any:
        registry = registry or FakeRegistry({EVAL_KEY_TAG: KEY, **champion_tags})
        monkeypatch.setattr(register_module, "MlflowClient", lambda: registry)
        params = SimpleNamespace(
            registration=RegisterParams(selection=RULE, force_promote=force),
            data=SimpleNamespace(path="data"),
            model=SimpleNamespace(scale=4),
            evaluate=SimpleNamespace(max_images=None, tile=0),
            logging=SimpleNamespace(num_samples=1),
            section=lambda name: {},
        )
        ctx = SimpleNamespace(
            root=tmp_path, params=params, tracking=SimpleNamespace(params_file=None, experiment_id="0")
        )
        out = tmp_path / "out"
        models = {0.0: tmp_path / "a0.pth", 1.0: tmp_path / "a1.pth"}
        files = (out / "summary.json", out / "pd.csv", out / "pd.png", out / "registered.json")
        return registry, out / "registered.json", lambda: register_step(ctx, reports, models, *files)

    return run


@pytest.mark.parametrize("niqe", [None, "nan", "abc", "inf"])
def test_register_step_measures_the_champion_and_keeps_it(step: Any, measured: list, niqe: str | None) -> None:
    # The reported cases: the tag deleted (a worse challenger promoted), 'nan' (promoted, then a
    # ValueError before registered.json), 'abc' (registered with no decision, then a traceback).
    registry, registered_file, register = step({"psnr_y": "25.0000", **({} if niqe is None else {"niqe": niqe})})
    rec = register()
    assert len(measured) == 1 and registry.aliases == {"champion": "3", "challenger": "4"}
    assert rec["decision"] == "kept-champion" and rec["champion_version"] == "3" and not rec["forced"]
    assert "challenger niqe 6.0000 > champion's 5.0000" in rec["reason"]
    assert "re-evaluated" in rec["comparison"]["compared_on"] and rec["comparison"]["champion"] == TRUE_CHAMPION
    assert json.loads(registered_file.read_text(encoding="utf-8")) == rec  # strict JSON: no NaN
    tags = registry.tags["4"]
    assert tags["decision"] == "kept-champion" and tags["decision.champion.niqe"] == "5.0000"
    assert figure_tags_are_finite(tags) and all(figure(tags[k]) is not None for k in ("psnr_y", "niqe"))


def test_register_step_forced_over_an_unmeasurable_champion(step: Any, tmp_path: Path) -> None:
    (tmp_path / "data" / "val").rmdir()
    registry, registered_file, register = step({"psnr_y": "25.0000", "niqe": "nan"}, force=True)
    rec = register()
    assert rec["decision"] == "promoted" and rec["forced"] and registry.aliases["champion"] == "4"
    assert rec["comparison"]["champion"] is None and json.loads(registered_file.read_text()) == rec
    assert registry.tags["4"]["decision"] == "promoted" and registry.model_tags["champion_history"] == "3,4"


def test_register_step_refuses_an_unmeasurable_champion_in_one_line(step: Any, tmp_path: Path) -> None:
    (tmp_path / "data" / "val").rmdir()
    registry, registered_file, register = step({"psnr_y": "25.0000", "niqe": "abc"})
    rec = register()
    assert rec["decision"] == "kept-champion" and registry.aliases["champion"] == "3"
    assert "could not be measured" in rec["reason"] and "'abc'" in rec["reason"] and "\n" not in rec["reason"]
    assert registry.tags["4"]["decision"] == "kept-champion" and json.loads(registered_file.read_text()) == rec


def test_a_gate_that_fails_after_registering_still_records_a_decision(step: Any) -> None:
    registry, registered_file, register = step({"psnr_y": "25.0000", "niqe": "5.0000"}, force=True)
    registry.fail_on_tag = "promoted_at"  # promote(): the alias moved, then the registry failed
    with pytest.raises(RegistryError) as caught:
        register()
    assert isinstance(caught.value, PipelineError) and len(caught.value.problems) == 1
    assert "version 4 was registered but the gate failed" in str(caught.value)
    rec = json.loads(registered_file.read_text())
    assert rec["version"] == "4" and "error" in rec and registry.tags["4"]["decision.error"]
    # The alias did move: the record says so rather than pretend the champion stayed.
    assert registry.aliases["champion"] == "4" and rec["decision"] == "promoted" and rec["champion_version"] == "4"


def test_a_gate_that_fails_before_deciding_records_kept_champion(step: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, registered_file, register = step({"psnr_y": "25.0000", "niqe": "5.0000"})
    monkeypatch.setattr(register_module, "decide", lambda *a, **k: (_ for _ in ()).throw(KeyError("boom")))
    with pytest.raises(RegistryError, match="gate failed"):
        register()
    rec = json.loads(registered_file.read_text())
    assert rec["decision"] == "kept-champion" and rec["champion_version"] == "3" and registry.aliases["champion"] == "3"
    assert registry.tags["4"]["decision"] == "kept-champion" and "gate failed" in registry.tags["4"]["decision.reason"]


def test_image_fingerprint_identifies_the_validation_images() -> None:
    def report(*rows: tuple[str, float]) -> dict:
        return {"per_image": [{"name": n, "hr_shape": [64, 64], "bicubic": {"psnr_y": v}} for n, v in rows]}

    same = image_fingerprint(report(("a.png", 25.0), ("b.png", 27.5)))
    assert same == image_fingerprint(report(("b.png", 27.5), ("a.png", 25.0))) and same.endswith("(2 images)")
    assert same != image_fingerprint(report(("a.png", 25.0), ("b.png", 27.4)))  # same names, other content
    assert same != image_fingerprint(report(("a.png", 25.0)))
    assert image_fingerprint({}) is None


def test_the_plot_data_columns_are_the_registry_plotted_metrics(tmp_path: Path) -> None:
    from esrgan.metrics.registry import plot_names
    from pipeline.steps.register import PLOT_COLUMNS, write_plot_data

    assert ("alpha", *plot_names()) == PLOT_COLUMNS
    rows = [
        {"alpha": 0.0, "psnr_y": 30.5, "niqe": 6.25, "chroma_error": 1.0, "lpips_vgg": 0.5},
        {"alpha": 1.0, "psnr_y": 28.0, "ssim_y": None, "stlpips_alex": 0.125},
        {"alpha": None, "psnr_y": 26.0},  # bicubic: not on the curve
    ]
    # The bytes dvc plots show reads, as before the registry: chroma_error and lpips_vgg are not columns.
    assert write_plot_data(rows, tmp_path / "plot.csv").read_bytes() == (
        b"alpha,psnr_y,ssim_y,psnr_rgb,niqe,lpips_alex,stlpips_alex,stlpips_vgg\r\n"
        b"0.0,30.5,,,6.25,,,\r\n"
        b"1.0,28.0,,,,,0.125,\r\n"
    )
