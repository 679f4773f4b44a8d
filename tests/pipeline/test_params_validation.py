"""The whole params.yaml is validated at once: cross-section contradictions are refused and every
problem is listed on its own line, before any stage reads, writes or deletes anything."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from esrgan.metrics.registry import metric, names, selection_names
from pipeline.errors import EXIT_USER_ERROR
from pipeline.kfp.params import params_with_knobs
from pipeline.params import FIDELITY_METRICS, METRIC_DIRECTION, ParamsError, PipelineParams, parse_params
from pipeline.steps.selection import pick_alpha

ROOT = Path(__file__).resolve().parents[2]


def base() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ParamsError) as info:
        parse_params(doc, "params.yaml")
    return info.value.problems


def with_changes(**changes: Any) -> dict[str, Any]:
    doc = base()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return doc


def test_every_model_of_the_schema_rejects_unknown_keys() -> None:
    def walk(model: type[BaseModel], seen: set[type]) -> None:
        if model in seen:
            return
        seen.add(model)
        assert model.model_config.get("extra") == "forbid", model.__name__
        for field in model.model_fields.values():
            for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    walk(candidate, seen)

    walk(PipelineParams, set())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"extract_patches__scale": 3}, "params.yaml: extract_patches.scale (3) differs from model.scale (4)"),
        (
            {"register__selection__rule": "fixed", "register__selection__alpha": 0.3},
            "params.yaml: register.selection.alpha (0.3) is not among interpolate.alphas",
        ),
        ({"register__selection__rule": "fixed"}, "params.yaml: register.selection.alpha: rule 'fixed' needs an alpha"),
        (
            {"register__selection__alpha": 0.2},
            "params.yaml: register.selection.alpha (0.2) is set but only rule 'fixed'",
        ),
        ({"register__selection__metric": "psnr"}, "params.yaml: register.selection.metric: Input should be 'niqe'"),
        ({"evaluate__perceptual": False}, "params.yaml: register.selection.metric (stlpips_alex) is not computed"),
        ({"interpolate__alphas": [0.0, 0.5, 1.5, 1.0]}, "params.yaml: interpolate.alphas: alphas must lie in [0, 1]"),
        ({"interpolate__alphas": [0.0, 0.5, 0.5, 1.0]}, "params.yaml: interpolate.alphas: alphas must be increasing"),
        ({"trianing": {"lr": 1}}, "params.yaml: trianing: unknown key"),
        ({"evaluate__tiel": 3}, "params.yaml: evaluate.tiel: unknown key"),
        ({"evaluate__skip_metrics": ["psnr"]}, "params.yaml: evaluate.skip_metrics.0: Input should be 'psnr_y'"),
        (
            {"evaluate__skip_metrics": ["niqe", "psnr_y"]},
            "params.yaml: evaluate.skip_metrics lists psnr_y, which every evaluation needs",
        ),
        (
            {"evaluate__skip_metrics": ["stlpips_alex"]},
            "params.yaml: evaluate.skip_metrics lists stlpips_alex, which every evaluation needs: it is register.sel",
        ),
    ],
)
def test_each_contradiction_is_one_line(changes: dict[str, Any], expected: str) -> None:
    found = problems(with_changes(**changes))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_all_problems_are_listed_together() -> None:
    doc = with_changes(
        extract_patches__scale=3,
        interpolate__alphas=[0.0, 1.5],
        bogus=1,
        register__selection__rule="fixed",
        register__selection__alpha=0.7,
    )
    found = problems(doc)
    assert len(found) == 4, found
    assert any("bogus: unknown key" in p for p in found)
    assert any("extract_patches.scale" in p for p in found)
    assert any("interpolate.alphas" in p for p in found)
    assert any("register.selection.alpha (0.7)" in p for p in found)


def test_a_fixed_swept_alpha_and_fidelity_metrics_are_accepted() -> None:
    doc = with_changes(register__selection__rule="fixed", register__selection__alpha=0.4)
    assert parse_params(doc).registration.selection.alpha == 0.4
    doc = with_changes(evaluate__perceptual=False, register__selection__metric="psnr_y")
    assert parse_params(doc).registration.selection.metric == "psnr_y"


def test_kfp_resolve_params_runs_the_same_checks() -> None:
    import json

    doc = with_changes(extract_patches__scale=2)
    with pytest.raises(ParamsError) as info:
        params_with_knobs(json.dumps(doc), {})
    assert "extract_patches.scale (2) differs from model.scale (4)" in str(info.value)


def test_selection_follows_the_metric_direction() -> None:
    rows = [
        {"alpha": 0.0, "psnr_y": 30.0, "niqe": 6.0},
        {"alpha": 0.5, "psnr_y": 29.5, "niqe": 5.0},
        {"alpha": 1.0, "psnr_y": 29.2, "niqe": 4.0},
        {"alpha": None, "psnr_y": 28.0, "niqe": 7.0},
    ]
    rule = PipelineParams.model_validate(base()).registration.selection.model_copy(update={"psnr_margin_db": 1.0})
    assert pick_alpha(rows, rule.model_copy(update={"metric": "niqe"}))["alpha"] == 1.0
    # Higher PSNR is better: the old rule took the minimum, i.e. the *worst* alpha within the margin.
    assert pick_alpha(rows, rule.model_copy(update={"metric": "psnr_y"}))["alpha"] == 0.0
    assert set(METRIC_DIRECTION) >= {"niqe", "psnr_y", "ssim_y", "lpips_alex"}


def test_the_metric_lists_derive_from_the_registry() -> None:
    assert list(METRIC_DIRECTION) == list(selection_names())
    assert all((d == "min") == metric(m).lower_is_better for m, d in METRIC_DIRECTION.items())
    assert names("fidelity") == FIDELITY_METRICS
    fields = PipelineParams.model_json_schema()["$defs"]
    assert tuple(fields["SelectionParams"]["properties"]["metric"]["enum"]) == selection_names()
    assert tuple(fields["EvaluateParams"]["properties"]["skip_metrics"]["items"]["enum"]) == names()


def test_a_stage_command_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    doc = copy.deepcopy(with_changes(extract_patches__scale=3, bogus=1))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipeline.cli import main; sys.exit(main())",
            "stage",
            "interpolate",
            "--psnr",
            "a.pth",
            "--gan",
            "b.pth",
            "--alpha",
            "0.5",
            "--out",
            "out.pth",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == EXIT_USER_ERROR
    lines = done.stderr.strip().splitlines()
    origin = tmp_path / "params.yaml"
    assert lines == [
        f"esrgan: error: {origin}: bogus: unknown key (not a parameter here; check the spelling)",
        f"esrgan: error: {origin}: extract_patches.scale (3) differs from model.scale (4): "
        "the patches must be cut for the scale the generator is trained for",
    ]
    assert "Traceback" not in done.stderr and not (tmp_path / "out.pth").exists()
