"""The two decisions of the register step, as pure functions (no MLflow, no files).

Words, one meaning each:

* the **pick**: the alpha the sweep chooses under ``register.selection`` (:func:`pick_alpha`);
  the register step registers it as a new version with the alias ``challenger``;
* the **challenger** and the **champion**: the registry aliases. The challenger's version
  becomes ``@champion`` only when the **gate** (:func:`decide`) says so: it is at least as good
  as the current champion, measured on the same images, under the same rule.

Both apply one rule: the best ``register.selection.metric`` (lower or higher, as the metric
registry :mod:`esrgan.metrics.registry` says) with PSNR-Y at most ``psnr_margin_db`` below the
reference (alpha 0 for the pick, the champion for the gate).

Both fail closed: a figure that is missing, not a number or not finite (a tag deleted or set to
``nan`` or ``abc`` by hand) never counts (:func:`figure`), so it can never make an alpha or a
challenger look better.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from esrgan.metrics.registry import metric as metric_info
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.params import SelectionParams

__all__ = [
    "Decision",
    "SelectionError",
    "at_least_as_good",
    "decide",
    "figure",
    "pick_alpha",
    "pick_reason",
    "summarise",
    "usable_figures",
]


class SelectionError(PipelineError, ValueError):
    """No alpha satisfies the selection rule."""


def figure(value: Any) -> float | None:
    """``value`` as a finite float; ``None`` when it is missing, not a number (``'abc'``) or not
    finite (``nan``, ``inf``): such a figure is unknown, and an unknown figure never wins."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def usable_figures(raw: Mapping[str, Any], names: Iterable[str] | None = None) -> tuple[dict[str, float], list[str]]:
    """The usable figures among ``raw`` (all of it, or ``names``) and one phrase per figure that is
    missing, not a number or not finite (e.g. ``"stlpips_alex is 'nan', not a finite number"``)."""
    figures: dict[str, float] = {}
    problems: list[str] = []
    for name in list(raw) if names is None else names:
        value = raw.get(name)
        number = figure(value)
        if number is not None:
            figures[name] = number
        elif value is None:
            problems.append(f"{name} is missing")
        else:
            problems.append(f"{name} is {str(value)[:40]!r}, not a finite number")
    return figures, problems


# --- the pick ------------------------------------------------------------------------------------


def summarise(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per alpha (sorted), plus the bicubic baseline as ``alpha = None``."""
    if not reports:
        raise ValueError("no evaluation reports to summarise (the sweep evaluated no alpha)")
    rows = [{"alpha": float(r["alpha"]), **r["model"]["mean"]} for r in reports]
    rows.sort(key=lambda r: r["alpha"])
    rows.append({"alpha": None, **reports[0]["bicubic"]["mean"]})
    return rows


def pick_alpha(rows: Sequence[Mapping[str, Any]], rule: SelectionParams) -> dict[str, Any]:
    """The sweep's pick: the selection rule applied to the per-alpha rows; returns the picked row (a copy)."""
    alphas = [r for r in rows if r["alpha"] is not None]
    if rule.rule == "fixed":
        picked = [r for r in alphas if rule.alpha is not None and math.isclose(r["alpha"], rule.alpha)]
        if not picked:
            raise SelectionError(f"register.selection.alpha {rule.alpha} is not among the evaluated alphas")
        return dict(picked[0])
    psnr_model = next((r for r in alphas if r["alpha"] == 0.0), None)
    # figure(): a NaN (or a non-number) is no value; compared, it would win or lose at random.
    base = None if psnr_model is None else figure(psnr_model.get("psnr_y"))
    if base is None:
        raise SelectionError("the PSNR model (alpha 0) has no psnr_y: cannot apply the margin")
    floor = base - rule.psnr_margin_db
    eligible = [r for r in alphas if (psnr := figure(r.get("psnr_y"))) is not None and psnr >= floor]
    scored = [(score, r) for r in eligible if (score := figure(r.get(rule.metric))) is not None]
    if not scored:
        raise SelectionError(f"no alpha has a value for {rule.metric!r} within {rule.psnr_margin_db} dB of alpha 0")
    # Best score in the metric's own direction; ties go to the smaller alpha (closer to the faithful model).
    sign = 1.0 if metric_info(rule.metric).lower_is_better else -1.0
    return dict(min(scored, key=lambda pair: (sign * pair[0], pair[1]["alpha"]))[1])


def pick_reason(rule: SelectionParams) -> str:
    """Why the rule picked the alpha it did, in one phrase (for the version's description)."""
    if rule.rule == "fixed":
        return f"rule `fixed`: alpha {rule.alpha:g} is set in params.yaml"
    best = "lowest" if metric_info(rule.metric).lower_is_better else "highest"
    return (
        f"rule `{rule.rule}`: {best} `{rule.metric}` among the alphas whose PSNR-Y is within "
        f"{rule.psnr_margin_db:g} dB of the PSNR model (alpha 0)"
    )


# --- the gate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Whether the challenger becomes champion, why, and the figures both were judged on."""

    promote: bool
    reason: str
    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    compared_on: str = ""
    extra_tags: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The ``decision`` tag: ``promoted`` or ``kept-champion``."""
        return "promoted" if self.promote else "kept-champion"

    def tags(self) -> dict[str, str]:
        """Version tags recording this decision (figures of both models, rounded for reading)."""
        tags = {"decision": self.label, "decision.reason": self.reason[:4900], "decision.compared_on": self.compared_on}
        if self.champion_version is not None:
            tags["decision.champion_version"] = self.champion_version
        for who, figures in (("challenger", self.challenger), ("champion", self.champion or {})):
            for key, value in figures.items():
                tags[f"decision.{who}.{key}"] = f"{value:.4f}"
        return {**tags, **self.extra_tags}


#: Decimals of the figures the registry records as version tags; the gate compares at this precision.
RECORDED_DECIMALS = 4


def recorded(value: float | None) -> float | None:
    """``value`` as a version tag records it (``None`` stays ``None``)."""
    return None if value is None else round(value, RECORDED_DECIMALS)


def at_least_as_good(
    challenger: Mapping[str, Any], champion: Mapping[str, Any], rule: SelectionParams
) -> tuple[bool, str]:
    """The selection rule applied to two models measured on the same images.

    The challenger wins when its ``rule.metric`` is at least as good (in the metric's direction,
    from the metric registry) and its PSNR-Y is at most ``rule.psnr_margin_db`` below the
    champion's: the same trade-off that picks an alpha within a run (perceptual quality, bounded
    loss of fidelity). Fails closed: when either figure of either model is missing, not a number
    or not finite, the rule cannot be applied and the challenger does not win.
    """
    metric = rule.metric
    # At the precision the registry records (its tags): a rerun of the champion itself is a tie.
    new, old = recorded(figure(challenger.get(metric))), recorded(figure(champion.get(metric)))
    new_psnr, old_psnr = recorded(figure(challenger.get("psnr_y"))), recorded(figure(champion.get("psnr_y")))
    if new is None or old is None or new_psnr is None or old_psnr is None:
        who, name = next(
            (who, name)
            for who, name, value in (
                ("challenger", metric, new),
                ("champion", metric, old),
                ("challenger", "psnr_y", new_psnr),
                ("champion", "psnr_y", old_psnr),
            )
            if value is None
        )
        return False, (
            f"the {who} has no {name} on these images (missing, not a number or not finite): the rule cannot be applied"
        )
    if new_psnr < old_psnr - rule.psnr_margin_db:
        return False, (
            f"challenger psnr_y {new_psnr:.4f} is more than {rule.psnr_margin_db:g} dB below the champion's {old_psnr:.4f}"
        )
    lower = metric_info(metric).lower_is_better
    better = "lower is better" if lower else "higher is better"
    if (new <= old) if lower else (new >= old):
        return True, f"challenger {metric} {new:.4f} {'<=' if lower else '>='} champion's {old:.4f} ({better})"
    return False, f"challenger {metric} {new:.4f} {'>' if lower else '<'} champion's {old:.4f} ({better})"


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    rule: SelectionParams,
    *,
    champion_version: str | None = None,
    force: bool = False,
    compared_on: str = "",
    unmeasured: str = "",
) -> Decision:
    """The gate: promote or keep. No champion yet, forced, or the rule on figures from the same images.

    ``champion`` is ``None`` when the champion could not be measured on these images (``unmeasured``
    says why): the champion stays unless ``force``. Figures that are missing, not a number or not
    finite are left out of both models' figures (they are unknown), so the rule refuses on them
    and the decision's figures are always finite (fit for tags and JSON).
    """
    figures, _ = usable_figures(challenger)
    old = None if champion is None else usable_figures(champion)[0]
    if champion_version is None:
        return Decision(True, "first version: there is no champion yet", figures, None, None, compared_on)
    if force:
        return Decision(True, "forced by register.force_promote", figures, old, champion_version, compared_on)
    if old is None:
        return Decision(
            False,
            f"the champion (version {champion_version}) could not be measured on these images"
            f"{f' ({unmeasured})' if unmeasured else ''}: promotion refused (register.force_promote overrides)",
            figures,
            None,
            champion_version,
            compared_on,
        )
    ok, why = at_least_as_good(figures, old, rule)
    return Decision(ok, f"{why}; vs champion version {champion_version}", figures, old, champion_version, compared_on)
