"""The promotion gate as a pure decision (no registry): the selection rule on two models measured on
the same images, forcing, the first version, and failing closed on figures that are missing, not a
number or not finite (issue 21)."""

from __future__ import annotations

from typing import Any

import pytest

from esrgan.metrics.registry import metric, selection_names
from pipeline.params import SelectionParams
from pipeline.steps.selection import at_least_as_good, decide, figure
from tests.pipeline.steps.gate_cases import BAD, RULE, TRUE_CHAMPION, WORSE, finite_json


def test_first_version_is_promoted() -> None:
    d = decide({"niqe": 9.0, "psnr_y": 20.0}, None, RULE)
    assert d.promote and d.label == "promoted" and "no champion yet" in d.reason
    assert d.tags()["decision.challenger.niqe"] == "9.0000"


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "why"),
    [
        ({"niqe": 5.0, "psnr_y": 25.0}, {"niqe": 5.5, "psnr_y": 25.0}, True, "5.0000 <= champion's 5.5000"),
        ({"niqe": 5.5, "psnr_y": 25.0}, {"niqe": 5.5, "psnr_y": 25.0}, True, "<="),  # ties keep the newer model
        ({"niqe": 6.0, "psnr_y": 26.0}, {"niqe": 5.5, "psnr_y": 25.0}, False, "6.0000 > champion's 5.5000"),
        # Better perceptual score bought with more than the allowed loss of fidelity: rejected.
        ({"niqe": 4.0, "psnr_y": 23.9}, {"niqe": 5.5, "psnr_y": 25.0}, False, "more than 1 dB below"),
        ({"niqe": 4.0, "psnr_y": 24.1}, {"niqe": 5.5, "psnr_y": 25.0}, True, "<="),
        ({"psnr_y": 25.0}, {"niqe": 5.5, "psnr_y": 25.0}, False, "challenger has no niqe"),
        # A champion without the figure is not beaten by default: the gate fails closed (issue 21).
        ({"niqe": 6.0, "psnr_y": 25.0}, {"psnr_y": 25.0}, False, "champion has no niqe"),
    ],
)
def test_rule_on_two_models(challenger: dict, champion: dict, promote: bool, why: str) -> None:
    ok, reason = at_least_as_good(challenger, champion, RULE)
    assert ok is promote and why in reason
    d = decide(challenger, champion, RULE, champion_version="3", compared_on="data=x")
    assert d.promote is promote and d.champion_version == "3" and "version 3" in d.reason
    tags = d.tags()
    assert tags["decision"] == ("promoted" if promote else "kept-champion")
    assert tags["decision.champion_version"] == "3" and tags["decision.compared_on"] == "data=x"
    assert all(tags[f"decision.champion.{k}"] == f"{v:.4f}" for k, v in champion.items())


def test_force_promotes_a_worse_model_and_says_so() -> None:
    d = decide({"niqe": 9.0}, {"niqe": 5.0}, RULE, champion_version="1", force=True)
    assert d.promote and d.reason == "forced by register.force_promote"


def test_unmeasurable_champion_is_kept() -> None:
    d = decide({"niqe": 4.0}, None, RULE, champion_version="2")
    assert not d.promote and "could not be measured" in d.reason


@pytest.mark.parametrize("name", [m for m in selection_names() if m != "psnr_y"])
def test_the_gate_compares_in_the_registry_direction(name: str) -> None:
    rule = SelectionParams(metric=name, psnr_margin_db=1.0)
    higher = {"psnr_y": 25.0, name: 0.75}
    lower = {"psnr_y": 25.0, name: 0.25}
    better, worse = (lower, higher) if metric(name).lower_is_better else (higher, lower)
    assert decide(better, worse, rule, champion_version="1").promote
    refused = decide(worse, better, rule, champion_version="1")
    direction = "lower is better" if metric(name).lower_is_better else "higher is better"
    assert not refused.promote and f"({direction})" in refused.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5.0, 5.0),
        ("5.25", 5.25),
        (3, 3.0),
        (None, None),
        ("nan", None),
        (float("nan"), None),
        ("inf", None),
        (float("-inf"), None),
        ("abc", None),
        ("", None),
        ("1e400", None),  # overflows to inf
        (True, None),
        ([1.0], None),
    ],
)
def test_figure_is_a_finite_float_or_unknown(value: Any, expected: float | None) -> None:
    assert figure(value) == expected


def figure_tags_are_finite(tags: dict[str, str]) -> bool:
    figures = {k: v for k, v in tags.items() if k.startswith(("decision.champion.", "decision.challenger."))}
    return bool(figures) and all(figure(v) is not None for v in figures.values())


def champion_with(niqe: Any) -> dict[str, Any]:
    return {"psnr_y": 25.0} if niqe is None else {"psnr_y": 25.0, "niqe": niqe}


@pytest.mark.parametrize("niqe", BAD)
def test_unusable_champion_figure_never_promotes(niqe: Any) -> None:
    # Before: missing, nan and inf promoted any challenger; 'abc' raised ValueError.
    d = decide({"niqe": 3.0, "psnr_y": 30.0}, champion_with(niqe), RULE, champion_version="3")
    assert not d.promote and d.label == "kept-champion"
    assert "the champion has no niqe" in d.reason and "version 3" in d.reason and "\n" not in d.reason
    assert d.champion == {"psnr_y": 25.0}  # the unknown figure is left out, never kept as NaN
    assert "decision.champion.niqe" not in d.tags() and figure_tags_are_finite(d.tags())
    finite_json({"champion": d.champion, "challenger": d.challenger})


@pytest.mark.parametrize("psnr", [None, "nan", "abc", float("inf")])
def test_unusable_psnr_never_promotes(psnr: Any) -> None:
    # Before: a missing PSNR-Y skipped the margin check (a far blurrier challenger could win).
    champion = {"niqe": 9.0} if psnr is None else {"niqe": 9.0, "psnr_y": psnr}
    d = decide({"niqe": 3.0, "psnr_y": 10.0}, champion, RULE, champion_version="3")
    assert not d.promote and "the champion has no psnr_y" in d.reason


@pytest.mark.parametrize("niqe", [None, "nan", float("nan"), "abc"])
def test_unusable_challenger_figure_never_promotes(niqe: Any) -> None:
    d = decide(champion_with(niqe), TRUE_CHAMPION, RULE, champion_version="3")
    assert not d.promote and "the challenger has no niqe" in d.reason
    finite_json(d.challenger)


@pytest.mark.parametrize("niqe", BAD)
def test_force_promote_still_promotes_with_finite_figures_only(niqe: Any) -> None:
    d = decide(WORSE, champion_with(niqe), RULE, champion_version="3", force=True)
    assert d.promote and d.reason == "forced by register.force_promote"
    assert d.champion == {"psnr_y": 25.0} and "decision.champion.niqe" not in d.tags()


def test_unmeasured_champion_is_refused_in_one_line_unless_forced() -> None:
    why = "its recorded niqe is 'nan', not a finite number, and data/val is missing to re-evaluate it"
    kept = decide({"niqe": 1.0, "psnr_y": 40.0}, None, RULE, champion_version="3", unmeasured=why)
    assert not kept.promote and why in kept.reason and "force_promote" in kept.reason
    assert "\n" not in kept.reason
    forced = decide({"niqe": 1.0, "psnr_y": 40.0}, None, RULE, champion_version="3", force=True, unmeasured=why)
    assert forced.promote and forced.champion is None


@pytest.mark.parametrize("name", ["ssim_y", "niqe"])
def test_the_champion_measured_again_is_a_tie_at_the_recorded_precision(name: str) -> None:
    """The champion's figures come back from its version tags (4 decimals): the same model's exact
    figures, which round to those tags, must tie, whichever way the rounding went."""
    for exact in (0.50497, 0.50503, 5.00004, 4.99996):
        tags = {name: f"{exact:.4f}", "psnr_y": "25.0000"}
        ok, why = at_least_as_good({name: exact, "psnr_y": 25.00004}, tags, SelectionParams(metric=name))
        assert ok, why
    ok, _ = at_least_as_good(
        {name: 0.5049, "psnr_y": 25.0}, {name: "0.5050", "psnr_y": "25.0000"}, SelectionParams(metric=name)
    )
    assert ok is (name == "niqe")  # a real difference at the recorded precision still decides
