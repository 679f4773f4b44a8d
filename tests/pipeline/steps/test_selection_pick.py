"""The sweep's pick (the alpha registered as the challenger): every branch of ``pick_alpha`` and
the rows ``summarise`` builds from the evaluation reports. Pure functions, no MLflow."""

from __future__ import annotations

from typing import Any

import pytest

from esrgan.metrics.registry import metric, selection_names
from pipeline.params import SelectionParams
from pipeline.steps.selection import SelectionError, pick_alpha, pick_reason, summarise


def row(alpha: float | None, **metrics: float | None) -> dict[str, Any]:
    return {"alpha": alpha, **metrics}


def best(metric: str = "niqe", margin: float = 1.0) -> SelectionParams:
    return SelectionParams(rule="best_perceptual_within_margin", metric=metric, psnr_margin_db=margin)


# Values chosen to be exact in binary floating point, so the margin boundary is exact too.
SWEEP = [
    row(0.0, psnr_y=30.0, niqe=6.0, ssim_y=0.875),
    row(0.5, psnr_y=29.5, niqe=4.5, ssim_y=0.75),
    row(1.0, psnr_y=27.0, niqe=3.0, ssim_y=0.5),
    row(None, psnr_y=26.0, niqe=2.0, ssim_y=0.25),  # bicubic: never a candidate
]


# ------------------------------------------------------------------- best_perceptual_within_margin


def test_min_metric_picks_the_lowest_value_within_the_margin() -> None:
    # alpha 1 has the lowest NIQE but is 3 dB below alpha 0: outside the 1 dB margin.
    assert pick_alpha(SWEEP, best("niqe", 1.0))["alpha"] == 0.5
    assert pick_alpha(SWEEP, best("niqe", 3.0))["alpha"] == 1.0


def test_max_metric_picks_the_highest_value() -> None:
    assert pick_alpha(SWEEP, best("ssim_y", 5.0))["alpha"] == 0.0
    assert pick_alpha(SWEEP, best("psnr_y", 5.0))["alpha"] == 0.0


def test_the_bicubic_row_is_never_chosen_even_with_the_best_score() -> None:
    assert pick_alpha(SWEEP, best("niqe", 100.0))["alpha"] == 1.0


def test_margin_boundary_is_inclusive() -> None:
    rows = [row(0.0, psnr_y=30.0, niqe=6.0), row(0.5, psnr_y=29.0, niqe=4.0)]
    assert pick_alpha(rows, best("niqe", 1.0))["alpha"] == 0.5  # exactly 1 dB below: eligible
    assert pick_alpha(rows, best("niqe", 0.5))["alpha"] == 0.0  # 1 dB > 0.5: not eligible


def test_zero_margin_keeps_alphas_at_least_as_faithful_as_alpha_0() -> None:
    rows = [row(0.0, psnr_y=30.0, niqe=6.0), row(0.5, psnr_y=30.0, niqe=5.0), row(1.0, psnr_y=29.75, niqe=1.0)]
    assert pick_alpha(rows, best("niqe", 0.0))["alpha"] == 0.5


@pytest.mark.parametrize("metric", ["niqe", "ssim_y"])
def test_ties_go_to_the_smaller_alpha(metric: str) -> None:
    # Documented in pick_alpha: on equal scores the alpha closer to the faithful model wins,
    # whichever direction the metric has; row order does not matter.
    rows = [
        row(1.0, psnr_y=30.0, niqe=3.0, ssim_y=0.5),
        row(0.5, psnr_y=30.0, niqe=3.0, ssim_y=0.5),
        row(0.0, psnr_y=30.0, niqe=3.0, ssim_y=0.5),
    ]
    assert pick_alpha(rows, best(metric, 1.0))["alpha"] == 0.0
    rows[2] = row(0.0, psnr_y=30.0, niqe=6.0, ssim_y=0.25)  # alpha 0 worse: 0.5 and 1 tie for best
    assert pick_alpha(rows, best(metric, 1.0))["alpha"] == 0.5


def test_rows_missing_the_metric_or_psnr_are_skipped() -> None:
    rows = [
        row(0.0, psnr_y=30.0, niqe=6.0),
        row(0.25, psnr_y=29.5, niqe=None),  # evaluated without NIQE
        row(0.5, psnr_y=None, niqe=1.0),  # no PSNR: cannot check the margin, so not eligible
        row(0.75, psnr_y=29.5),  # metric key absent altogether
        row(1.0, psnr_y=29.5, niqe=5.0),
    ]
    assert pick_alpha(rows, best("niqe", 1.0))["alpha"] == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_figures_are_no_values(bad: float) -> None:
    # A NaN compares false both ways: min() would keep or drop it depending on the order of the rows.
    rows = [
        row(0.0, psnr_y=30.0, niqe=6.0),
        row(0.25, psnr_y=29.5, niqe=bad),
        row(0.5, psnr_y=bad, niqe=1.0),
        row(1.0, psnr_y=29.5, niqe=5.0),
    ]
    assert pick_alpha(rows, best("niqe", 1.0))["alpha"] == 1.0
    assert pick_alpha([rows[1], rows[0], *rows[2:]], best("niqe", 1.0))["alpha"] == 1.0


def test_no_eligible_alpha_with_the_metric_is_an_error() -> None:
    rows = [row(0.0, psnr_y=30.0), row(1.0, psnr_y=25.0, niqe=3.0)]  # alpha 0 lacks NIQE, alpha 1 too far
    with pytest.raises(SelectionError, match=r"no alpha has a value for 'niqe' within 1\.0 dB of alpha 0"):
        pick_alpha(rows, best("niqe", 1.0))


@pytest.mark.parametrize(
    "rows",
    [
        [row(0.5, psnr_y=30.0, niqe=3.0), row(1.0, psnr_y=29.0, niqe=2.0)],  # no alpha 0 evaluated
        [row(0.0, psnr_y=None, niqe=3.0), row(1.0, psnr_y=29.0, niqe=2.0)],  # alpha 0 without PSNR
        [row(0.0, psnr_y=float("nan"), niqe=3.0), row(1.0, psnr_y=29.0, niqe=2.0)],  # PSNR not a number
        [row(0.0, niqe=3.0)],
    ],
)
def test_the_margin_needs_the_psnr_of_alpha_0(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(SelectionError, match="alpha 0"):
        pick_alpha(rows, best("niqe", 1.0))


def test_the_picked_row_is_a_copy() -> None:
    rows = [dict(r) for r in SWEEP]
    picked = pick_alpha(rows, best("niqe", 1.0))
    picked["niqe"] = -1.0
    assert rows[1]["niqe"] == 4.5


@pytest.mark.parametrize("name", [m for m in selection_names() if m != "psnr_y"])
def test_every_selection_metric_ranks_in_its_registry_direction(name: str) -> None:
    # alpha 0.5 has the larger value: the best when higher is better, the worst when lower is.
    rows = [row(0.0, psnr_y=30.0, **{name: 0.25}), row(0.5, psnr_y=30.0, **{name: 0.75})]
    expected = 0.0 if metric(name).lower_is_better else 0.5
    assert pick_alpha(rows, best(name, 1.0))["alpha"] == expected


def test_the_pick_reason_names_the_direction() -> None:
    assert "lowest `niqe`" in pick_reason(best("niqe"))
    assert "highest `ssim_y`" in pick_reason(best("ssim_y"))
    assert pick_reason(SelectionParams(rule="fixed", alpha=0.4)) == "rule `fixed`: alpha 0.4 is set in params.yaml"


# --------------------------------------------------------------------------------------------- fixed


def test_fixed_takes_that_alpha_regardless_of_margin_and_missing_metrics() -> None:
    rows = [row(0.0, psnr_y=30.0), row(1.0, psnr_y=10.0)]
    rule = SelectionParams(rule="fixed", alpha=1.0, metric="niqe", psnr_margin_db=0.0)
    assert pick_alpha(rows, rule) == {"alpha": 1.0, "psnr_y": 10.0}


def test_fixed_matches_alphas_up_to_float_rounding() -> None:
    rows = [row(0.0, psnr_y=30.0), row(0.1 + 0.2, psnr_y=29.0)]
    assert pick_alpha(rows, SelectionParams(rule="fixed", alpha=0.3))["psnr_y"] == 29.0


@pytest.mark.parametrize("alpha", [0.7, None])
def test_fixed_alpha_not_evaluated_is_an_error(alpha: float | None) -> None:
    with pytest.raises(SelectionError, match=f"register.selection.alpha {alpha} is not among the evaluated alphas"):
        pick_alpha(SWEEP, SelectionParams(rule="fixed", alpha=alpha))


def test_fixed_never_picks_the_bicubic_row() -> None:
    with pytest.raises(SelectionError):
        pick_alpha([row(None, psnr_y=26.0)], SelectionParams(rule="fixed", alpha=0.0))


# ------------------------------------------------------------------------------------------ summarise


def report(alpha: Any, model: dict[str, float], bicubic: dict[str, float]) -> dict[str, Any]:
    return {"alpha": alpha, "model": {"mean": model}, "bicubic": {"mean": bicubic}}


def test_summarise_sorts_by_alpha_and_appends_bicubic_last() -> None:
    rows = summarise(
        [
            report("1", {"psnr_y": 27.0}, {"psnr_y": 26.0}),
            report(0, {"psnr_y": 30.0}, {"psnr_y": 26.5}),
            report(0.5, {"psnr_y": 29.0, "niqe": 4.0}, {"psnr_y": 26.5}),
        ]
    )
    assert rows == [
        {"alpha": 0.0, "psnr_y": 30.0},
        {"alpha": 0.5, "psnr_y": 29.0, "niqe": 4.0},
        {"alpha": 1.0, "psnr_y": 27.0},
        {"alpha": None, "psnr_y": 26.0},  # the bicubic baseline of the first report given
    ]
    assert all(isinstance(r["alpha"], float) for r in rows[:-1])


def test_summarise_feeds_pick_alpha() -> None:
    rows = summarise(
        [
            report(a, {"psnr_y": p, "niqe": n}, {"psnr_y": 20.0, "niqe": 0.5})
            for a, p, n in ((1.0, 29.5, 3.0), (0.0, 30.0, 6.0))
        ]
    )
    assert pick_alpha(rows, best("niqe", 1.0))["alpha"] == 1.0


def test_summarise_of_no_report_says_so() -> None:
    with pytest.raises(ValueError, match="no evaluation reports"):
        summarise([])
