"""Champion and challenger in the MLflow model registry: the gate, promotion, rollback and listing.

Users deploy ``models:/<name>@champion``. Every pipeline run registers its pick as a new version
with alias ``challenger``; the champion alias moves only when :func:`decide` says so (or a person
runs ``esrgan registry promote``). Every move of the champion alias goes through :func:`promote`
or :func:`rollback`, which keep the history of champions in the registered model's tag
``champion_history`` (versions, oldest first), so a rollback knows where to go back to, twice in
a row too.

The gate fails closed: a figure that is missing, not a number or not finite (a tag deleted or
set to ``nan`` or ``abc`` by hand) never counts, so it can never make a challenger look better
(:func:`figure`). The register step measures such a champion again on this run's images; when
that is impossible, or a figure is still unusable, the champion stays unless ``force_promote``.

Works against any tracking URI (``MlflowClient``); registry failures become :class:`RegistryError`
with one line naming the model and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

if TYPE_CHECKING:  # registry commands should not pay for importing torch (pipeline.params does)
    from pipeline.params import SelectionParams

CHALLENGER_ALIAS = "challenger"
HISTORY_TAG = "champion_history"
#: Version tag set on a champion that a rollback replaced (removed when it is promoted again).
ROLLBACK_TAG = "rolled_back"
#: Registered-model tag values are capped (5000 characters); far more versions than anyone rolls back through.
HISTORY_KEEP = 200
#: Version tags that ``esrgan registry list`` shows as columns, in order.
LIST_METRICS = ("psnr_y", "ssim_y", "niqe")


class RegistryError(PipelineError, ValueError):
    """A registry operation that cannot be done (unknown model or version, nothing to roll back to)."""


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


def at_least_as_good(
    challenger: Mapping[str, Any], champion: Mapping[str, Any], rule: SelectionParams
) -> tuple[bool, str]:
    """The selection rule applied to two models measured on the same images.

    The challenger wins when its ``rule.metric`` is at least as good (in the metric's direction,
    ``METRIC_DIRECTION``) and its PSNR-Y is at most ``rule.psnr_margin_db`` below the champion's:
    the same trade-off that picks an alpha within a run (perceptual quality, bounded loss of fidelity).
    Fails closed: when either figure of either model is missing, not a number or not finite, the
    rule cannot be applied and the challenger does not win.
    """
    metric = rule.metric
    new, old = figure(challenger.get(metric)), figure(champion.get(metric))
    new_psnr, old_psnr = figure(challenger.get("psnr_y")), figure(champion.get("psnr_y"))
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
    from pipeline.params import METRIC_DIRECTION

    lower = METRIC_DIRECTION[metric] == "min"
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
    """Promote or keep: no champion yet, forced, or the rule on figures from the same images.

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


# --- registry operations -----------------------------------------------------------------------


@contextmanager
def registry_errors(name: str) -> Iterator[None]:
    """Turn MLflow's registry exceptions into a one-line :class:`RegistryError` naming the model."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        first = (exc.message or str(exc)).strip().splitlines()[0]
        raise RegistryError(f"registered model {name!r}: {first}") from None


def client(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` for ``tracking_uri`` (default: ``MLFLOW_TRACKING_URI`` or MLflow's default)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_version(mlflow_client: Any, name: str, alias: str) -> str | None:
    """The version an alias points at, or ``None`` when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def history(mlflow_client: Any, name: str) -> list[str]:
    """Champion versions, oldest first (the last one is the current champion)."""
    with registry_errors(name):
        tags = mlflow_client.get_registered_model(name).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_history(mlflow_client: Any, name: str, versions: list[str]) -> None:
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, ",".join(versions[-HISTORY_KEEP:]))


def promote(mlflow_client: Any, name: str, version: str, alias: str = "champion", reason: str = "") -> list[str]:
    """Point ``alias`` at ``version`` and append it to the champion history; returns the history."""
    with registry_errors(name):
        mlflow_client.get_model_version(name, version)  # fails clearly for an unknown version
        past = history(mlflow_client, name)
        current = alias_version(mlflow_client, name, alias)
        if current is not None and (not past or past[-1] != current):
            past.append(current)  # the alias was moved by hand: keep it reachable by rollback
        mlflow_client.set_registered_model_alias(name, alias, version)
        if not past or past[-1] != version:
            past.append(version)
        _set_history(mlflow_client, name, past)
        mlflow_client.set_model_version_tag(name, version, "promoted_at", _now())
        if ROLLBACK_TAG in (mlflow_client.get_model_version(name, version).tags or {}):
            mlflow_client.delete_model_version_tag(name, version, ROLLBACK_TAG)
        if reason:
            mlflow_client.set_model_version_tag(name, version, "promotion.reason", reason[:4900])
    return past


def rollback(mlflow_client: Any, name: str, alias: str = "champion") -> tuple[str, str]:
    """Move ``alias`` back to the previous champion; returns ``(from_version, to_version)``."""
    with registry_errors(name):
        past = history(mlflow_client, name)
        current = alias_version(mlflow_client, name, alias)
        if current is None:
            raise RegistryError(f"registered model {name!r}: no @{alias} to roll back")
        if not past or past[-1] != current:
            past.append(current)
        if len(past) < 2:
            raise RegistryError(
                f"registered model {name!r}: version {current} is the first champion, nothing to roll back to"
            )
        past.pop()
        target = past[-1]
        mlflow_client.set_registered_model_alias(name, alias, target)
        _set_history(mlflow_client, name, past)
        # The gate's own ``decision`` tag stays: it records why the version was promoted at the time.
        mlflow_client.set_model_version_tag(name, current, ROLLBACK_TAG, f"to version {target} at {_now()}")
        mlflow_client.set_model_version_tag(name, target, "restored_at", _now())
    return current, target


def list_versions(mlflow_client: Any, name: str) -> list[dict[str, Any]]:
    """One row per version (newest first): aliases, alpha, key metrics, data hash, commit, decision."""
    with registry_errors(name):
        model = mlflow_client.get_registered_model(name)
        versions = mlflow_client.search_model_versions(f"name = '{name}'", max_results=1000)
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = mv.tags or {}
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "alpha": tags.get("alpha", ""),
                **{m: tags.get(m, "") for m in LIST_METRICS},
                "data": tags.get("data.dvc.md5", "")[:12],
                "commit": tags.get("git.commit", "")[:8],
                "decision": tags.get("decision", "") + (" (rolled back)" if ROLLBACK_TAG in tags else ""),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime(
                    "%Y-%m-%d %H:%M"
                ),
            }
        )
    return rows


def format_table(name: str, rows: list[dict[str, Any]], champion_history: list[str]) -> str:
    """``esrgan registry list``: a fixed-width table plus the champion history line."""
    columns = ["version", "aliases", "alpha", *LIST_METRICS, "data", "commit", "decision", "created"]
    cells = [[",".join(r[c]) if c == "aliases" else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = [f"registered model {name}: {len(rows)} version(s)"]
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.append(f"champion history (oldest first): {' -> '.join(champion_history) or '(none)'}")
    return "\n".join(lines)
