"""Champion and challenger in the MLflow model registry: promotion, rollback, history and listing.

Users deploy ``models:/<name>@champion``. Every pipeline run registers its pick as a new version
with alias ``challenger``; the champion alias moves only when the gate
(:func:`pipeline.steps.selection.decide`) says so, or when a person runs ``esrgan registry
promote``. Every move of the champion alias goes through :func:`promote` or :func:`rollback`,
which keep the history of champions in the registered model's tag ``champion_history``
(versions, oldest first), so a rollback knows where to go back to, twice in a row too.

Works against any tracking URI (``MlflowClient``); registry failures become :class:`RegistryError`
with one line naming the model and the problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from esrgan.metrics.registry import headline_names
from pipeline.errors import PipelineError

CHALLENGER_ALIAS = "challenger"
HISTORY_TAG = "champion_history"
#: Version tag set on a champion that a rollback replaced (removed when it is promoted again).
ROLLBACK_TAG = "rolled_back"
#: Registered-model tag values are capped (5000 characters); far more versions than anyone rolls back through.
HISTORY_KEEP = 200
#: Version tags that ``esrgan registry list`` shows as columns, in order (the metric registry's headline figures).
LIST_METRICS = headline_names()


class RegistryError(PipelineError, ValueError):
    """A registry operation that cannot be done (unknown model or version, nothing to roll back to)."""


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
