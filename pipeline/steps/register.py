"""Step 6: compare every alpha, draw the perception-distortion plot, register the sweep's pick as
the ``@challenger`` version and promote it to ``@champion`` only when it is at least as good as
the current champion measured on the same images. The two decisions are in
:mod:`pipeline.steps.selection`; the alias operations in :mod:`pipeline.registry.aliases`.

Under DVC this step also owns the sweep's file names: the ``alpha_<a>.pth`` generators and
``alpha_<a>.json`` reports of ``interpolate.alphas`` (:func:`sweep_files`)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from esrgan.fileio import atomic_write, write_json
from esrgan.metrics.registry import metric as metric_info
from esrgan.metrics.registry import plot_names
from esrgan.models.interpolation import alpha_filename
from esrgan.owned_folders import is_owned, prune
from pipeline.params import SelectionParams
from pipeline.registry.aliases import CHALLENGER_ALIAS, HISTORY_TAG, RegistryError, alias_version, promote
from pipeline.registry.packaging import ONNX_FILE, log_generator_model
from pipeline.registry.tracking import finish_parent, parent_run_id, provenance_tags, stage_run
from pipeline.steps.context import StepContext
from pipeline.steps.selection import (
    RECORDED_DECIMALS,
    Decision,
    SelectionError,
    decide,
    pick_alpha,
    pick_reason,
    summarise,
    usable_figures,
)

log = logging.getLogger(__name__)

#: The perception-distortion plot data's columns (the metric registry's plotted metrics).
PLOT_COLUMNS = ("alpha", *plot_names())
#: The perceptual metrics drawn against PSNR-Y, one panel each when the sweep has them.
PLOT_PERCEPTUAL = tuple(m for m in plot_names() if metric_info(m).kind == "perceptual")


def prune_stale_alphas(folder: Path, alphas: Sequence[float], suffix: str) -> list[Path]:
    """Delete ``alpha_<a><suffix>`` files of alphas no longer in the sweep from ``folder``.

    After ``interpolate.alphas`` changes, DVC forgets the removed alphas' stages but leaves their
    files beside the current ones, and a reader cannot tell which are current. Only a folder
    esrgan created (:mod:`esrgan.owned_folders`) is pruned; elsewhere the stale files are named
    in a warning and kept.
    """
    pattern = re.compile(rf"alpha_(.+){re.escape(suffix)}")
    stale = []
    for path in sorted(folder.glob(f"alpha_*{suffix}")) if folder.is_dir() else []:
        match = pattern.fullmatch(path.name)
        try:
            alpha = float(match.group(1)) if match else None
        except ValueError:
            alpha = None
        if alpha is not None and not any(math.isclose(alpha, a, abs_tol=1e-9) for a in alphas):
            stale.append(path.name)
    if stale and not is_owned(folder):
        log.warning(
            "%s: %s not in interpolate.alphas; kept (the folder has no esrgan marker)", folder, ", ".join(stale)
        )
        return []
    removed = prune(folder, stale)
    for path in removed:
        log.info("removed %s: its alpha is no longer in interpolate.alphas", path)
    return removed


def sweep_files(ctx: StepContext, reports_dir: Path, models_dir: Path) -> tuple[list[Path], dict[float, Path]]:
    """The sweep's files under DVC: the ``alpha_<a>.json`` reports and ``alpha_<a>.pth`` generators
    of ``interpolate.alphas`` (named by :func:`esrgan.models.interpolation.alpha_filename`, as
    ``dvc.yaml`` names them), after pruning the files of alphas no longer swept."""
    alphas = ctx.params.interpolate.alphas
    prune_stale_alphas(models_dir, alphas, ".pth")
    prune_stale_alphas(reports_dir, alphas, ".json")
    reports = [reports_dir / alpha_filename(a, ".json") for a in alphas]
    return reports, {a: models_dir / alpha_filename(a) for a in alphas}


def write_plot_data(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """CSV for ``dvc plots show``: one row per alpha (bicubic excluded: it is not on the curve)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PLOT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        if r["alpha"] is not None:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in PLOT_COLUMNS})
    return atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def draw_plot(rows: Sequence[Mapping[str, Any]], picked_alpha: float, path: Path) -> Path:
    """PSNR-Y against each available perceptual metric, one point per alpha, the pick starred,
    bicubic marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perceptual = [m for m in PLOT_PERCEPTUAL if any(r.get(m) is not None for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(perceptual)), figsize=(5 * max(1, len(perceptual)), 4), squeeze=False)
    for ax, metric in zip(axes[0], perceptual, strict=False):
        pts = [r for r in rows if r["alpha"] is not None and r.get(metric) is not None and r.get("psnr_y") is not None]
        ax.plot([r["psnr_y"] for r in pts], [r[metric] for r in pts], "o-", color="tab:blue", label="interpolated")
        for r in pts:
            ax.annotate(f"{r['alpha']:g}", (r["psnr_y"], r[metric]), textcoords="offset points", xytext=(4, 4))
        best = [r for r in pts if math.isclose(r["alpha"], picked_alpha)]
        if best:
            # The pick (registered as the challenger): "champion" in the label is kept for byte-identical plots.
            ax.plot(
                best[0]["psnr_y"],
                best[0][metric],
                "*",
                ms=16,
                color="tab:red",
                label=f"champion (alpha {picked_alpha:g})",
            )
        bic = next((r for r in rows if r["alpha"] is None), None)
        if bic and bic.get(metric) is not None and bic.get("psnr_y") is not None:
            ax.plot(bic["psnr_y"], bic[metric], "s", color="tab:gray", label="bicubic")
        ax.set_xlabel("PSNR-Y (dB, higher = less distortion)")
        ax.set_ylabel(f"{metric} (lower = better perceptual quality)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Perception-distortion trade-off of network interpolation")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


EVAL_KEY_TAG = "eval.key"
#: Tags the training stages set on the pipeline's parent run: where each network started from.
INIT_TAG = re.compile(r"(pretrain_psnr|finetune_gan)\.init\.(generator|discriminator)")


def _init_lineage(client: MlflowClient, run_id: str) -> dict[str, str]:
    """The ``<stage>.init.<network>`` tags of the pipeline's parent run (none: trained from scratch)."""
    run = client.get_run(run_id)
    tags = getattr(getattr(run, "data", None), "tags", None) or {}
    return {k: v for k, v in tags.items() if INIT_TAG.fullmatch(k)}


def image_fingerprint(report: Mapping[str, Any]) -> str | None:
    """A fingerprint of the images an evaluation report covers, from the report alone.

    Bicubic's per-image PSNR-Y is a function of the HR image only, so names, sizes and those
    values identify the validation set even where ``data.dvc`` does not describe it (KFP data
    sources). ``None`` for reports without per-image rows.
    """
    rows = report.get("per_image")
    if not rows:
        return None
    items = [(r["name"], r.get("hr_shape"), round(float(r["bicubic"].get("psnr_y") or 0.0), 6)) for r in rows]
    digest = hashlib.sha256(json.dumps(sorted(items), sort_keys=True).encode()).hexdigest()[:16]
    return f"{digest} ({len(items)} images)"


def evaluation_key(ctx: StepContext, report: Mapping[str, Any] | None = None) -> str:
    """What makes two runs' figures comparable: the same validation images, scale and evaluation.

    From the report's image fingerprint when it has one, else from the ``data.dvc`` hash and the
    evaluation settings; empty when neither is known (the champion is then always re-evaluated).
    """
    scale, ev = ctx.params.model.scale, ctx.params.evaluate
    fingerprint = image_fingerprint(report or {})
    if fingerprint:
        return f"images={fingerprint};scale={scale}"
    data = provenance_tags(ctx.root).get("data.dvc.md5", "unknown")
    return "" if data == "unknown" else f"data={data};scale={scale};max_images={ev.max_images}"


def measure_champion(ctx: StepContext, model_uri: str, val_dir: Path, metrics: Sequence[str]) -> dict[str, float]:
    """Re-evaluate a registered generator on this run's validation images (as the evaluate step does)."""
    from esrgan.evaluation import evaluate_folder
    from pipeline.registry.packaging import load_registered_generator

    model = load_registered_generator(model_uri)
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate_folder(
            model,
            ctx.evaluation_images(val_dir, tmp),
            scale=ctx.params.model.scale,
            tile=ctx.params.evaluate.tile,
            metrics=tuple(metrics),
            progress=False,
            model_name=model_uri,
        )
    return {k: float(v) for k, v in report["model"]["mean"].items() if v is not None}


def champion_figures(
    ctx: StepContext, client: MlflowClient, champion: Any, eval_key: str, val_dir: Path, metrics: Sequence[str]
) -> tuple[dict[str, float] | None, str]:
    """The current champion's figures on this run's images: its recorded tags when they come from
    the same evaluation key and every one of ``metrics`` is there as a finite number, else a fresh
    evaluation on ``val_dir``. Returns ``(figures, how)``; ``(None, why)`` when the champion cannot
    be measured (the gate then keeps it unless ``register.force_promote``).

    A recorded figure that is missing, not a number or not finite (a tag deleted, or set to
    ``nan`` or ``abc``) is never taken as the champion's: it is measured again, like figures
    from other data.
    """
    tags = champion.tags or {}
    if eval_key and tags.get(EVAL_KEY_TAG) == eval_key:
        figures, problems = usable_figures(tags, metrics)
        if not problems:
            return figures, "the champion's recorded figures (same data and evaluation)"
        why = f"its recorded {'; '.join(problems)}"
        if not val_dir.is_dir():
            return None, f"{why}, and {val_dir} is missing to re-evaluate it"
    else:
        why = "its figures come from other data"
        if not val_dir.is_dir():
            return None, f"the champion was evaluated on other data and {val_dir} is missing"
    log.info("re-evaluating champion version %s on %s (%s)", champion.version, val_dir, why)
    uri = f"models:/{champion.name}/{champion.version}"
    try:
        figures = measure_champion(ctx, uri, val_dir, metrics)
    except Exception as exc:  # any failure: keep the deployed model rather than replace it unmeasured
        log.debug("re-evaluating %s failed", uri, exc_info=True)
        return None, f"re-evaluating {uri} failed: {_first_line(exc)}"
    return figures, f"the champion re-evaluated on {val_dir.name}/ of this run ({why})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinity replaced by ``None`` (``null``): what ``write_json`` accepts."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data


def _run_link(run_id: str, experiment_id: str) -> str:
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"[pipeline run {run_id}]({uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id})"
    return f"pipeline run `{run_id}` (experiment {experiment_id}, tracking store `{uri}`)"


def model_description(name: str, alias: str) -> str:
    """The registered model's description: what it is and how its aliases move."""
    return (
        f"**{name}**: ESRGAN x4 super-resolution generator (RRDBNet, plain PyTorch) trained by the esrgan-pipeline "
        "(PSNR pre-training, GAN fine-tuning, network interpolation between the two with weight alpha).\n\n"
        f"- `@{alias}`: the deployed version; deploy `models:/{name}@{alias}`.\n"
        f"- `@{CHALLENGER_ALIAS}`: the newest candidate from the pipeline. It becomes `@{alias}` only when it is at "
        "least as good as the champion on the same validation images under the selection rule (or when "
        "`register.force_promote` is true). Each version's `decision` tags record why.\n"
        "- Input: base64 PNG/JPEG in the column `image`; output: base64 PNG, width, height (see the signature).\n"
        "- Each version carries `artifacts/generator.safetensors` and `artifacts/model.onnx`.\n"
        "- `esrgan registry list | promote VERSION | rollback` manage the aliases; the champion history is the "
        f"model tag `{HISTORY_TAG}`."
    )


def version_description(
    alpha: float,
    rule: SelectionParams,
    decision: Decision,
    metrics: Mapping[str, float],
    provenance: Mapping[str, str],
    link: str,
    lineage: Mapping[str, str] | None = None,
) -> str:
    """The version's description: alpha, why this alpha won, the gate's decision, figures, provenance,
    and (``lineage``: ``<section>.init.<network>`` -> resolution) the weights training started from."""
    why_alpha = pick_reason(rule)
    figures = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
    return (
        f"ESRGAN x4 generator interpolated with alpha {alpha:g} (0 = PSNR model, 1 = GAN model).\n\n"
        f"- Why this alpha: {why_alpha}.\n"
        f"- Gate: **{decision.label}**: {decision.reason}.\n"
        f"- Validation metrics (mean over the validation split): {figures}.\n"
        f"- Data: `data.dvc` md5 `{provenance.get('data.dvc.md5', 'unknown')}`; "
        f"git commit `{provenance.get('git.commit', 'unknown')}`"
        f"{' (dirty tree)' if provenance.get('git.dirty') == 'true' else ''}.\n"
        + "".join(f"- Fine-tuned from {value} (`{key}`).\n" for key, value in sorted((lineage or {}).items()))
        + f"- Produced by {link}."
    )


def sweep_images(models: Mapping[float, Path], val_dir: Path, scale: int, photos: int) -> dict[str, Any]:
    """The trade-off at a glance: for the first ``photos`` validation photos, the same crop as
    LR | bicubic | every alpha | HR (``esrgan.visualize.sweep_comparisons``)."""
    from esrgan.data import to_rgb8
    from esrgan.imageio import is_image_path, read_image
    from esrgan.models import load_generator
    from esrgan.visualize import sweep_comparisons

    if not val_dir.is_dir():
        return {}
    paths = sorted(p for p in val_dir.iterdir() if p.is_file() and is_image_path(p))[:photos]
    generators = {alpha: load_generator(path) for alpha, path in models.items()}
    return sweep_comparisons({p.stem: to_rgb8(read_image(p))[0] for p in paths}, generators, scale)


def register_step(
    ctx: StepContext,
    reports: Sequence[Path],
    models: Mapping[float, Path],
    summary_file: Path,
    plot_csv: Path,
    plot_png: Path,
    registered_file: Path,
    val_dir: Path | None = None,
) -> dict[str, Any]:
    """Pick the sweep's alpha, register it as ``@challenger``, promote it to the champion alias if it
    is at least as good as the current champion on the same images, finish the pipeline's parent run.

    ``val_dir`` (default ``<data.path>/val``) is where the current champion is re-evaluated when
    its recorded figures come from other data or are missing, not a number or not finite.
    Once a version is registered, ``registered.json`` and the version's ``decision`` tags are
    written whatever happens next; a failure after that is one :class:`RegistryError` line.
    """
    params = ctx.params.registration
    loaded = [json.loads(Path(p).read_text()) for p in reports]
    rows = summarise(loaded)
    pick = pick_alpha(rows, params.selection)
    alpha = pick["alpha"]
    model_path = next((p for a, p in models.items() if math.isclose(a, alpha)), None)
    if model_path is None:
        raise SelectionError(f"no generator file for the chosen alpha {alpha}")
    write_plot_data(rows, plot_csv)
    draw_plot(rows, alpha, plot_png)
    # Only finite figures are the challenger's (a NaN would be tagged "nan" and poison the next gate).
    metrics = usable_figures({k: v for k, v in pick.items() if k != "alpha"})[0]
    val_dir = val_dir if val_dir is not None else ctx.root / ctx.params.data.path / "val"
    eval_key = evaluation_key(ctx, loaded[0])
    provenance = provenance_tags(ctx.root, ctx.tracking.params_file)
    name = params.model_name
    summary = {
        "challenger": {"alpha": alpha, **metrics},
        "alphas": [r for r in rows if r["alpha"] is not None],
        "bicubic": {k: v for k, v in rows[-1].items() if k != "alpha"},
    }
    with stage_run(ctx.tracking, "register", ctx.params.section("register")) as run:
        client = MlflowClient()
        previous = alias_version(client, name, params.alias)
        info = log_generator_model(
            model_path,
            registered_model_name=name,
            max_input_pixels=params.max_input_pixels,
            tile=params.serve_tile,
        )
        version = str(info.registered_model_version)
        register_run, parent = run.info.run_id, parent_run_id(ctx.tracking)
        compared_on = f"data {provenance['data.dvc.md5']}; {eval_key or 'images unknown'}"

        def record(decision: Decision, champion_version: str | None, error: str | None = None) -> dict[str, Any]:
            """``registered.json`` (no NaN: ``write_json`` refuses it), written as soon as there is a decision."""
            registered = _registered_record(
                name, version, alpha, params, decision, previous, champion_version, metrics, register_run, parent
            )
            if error is not None:
                registered["error"] = error
            safe: dict[str, Any] = json_safe(registered)
            write_json(registered_file, safe)
            return safe

        # From here on a version exists: whatever happens, it gets a decision, in its tags and in
        # registered.json, before the stage stops.
        decision: Decision | None = None
        lineage: dict[str, str] = {}
        try:
            lineage = _init_lineage(client, parent)
            version_tags = {
                **lineage,
                "alpha": f"{alpha:g}",
                **{k: f"{v:.{RECORDED_DECIMALS}f}" for k, v in metrics.items()},
                **provenance,
                **({EVAL_KEY_TAG: eval_key} if eval_key else {}),
                "selection.rule": params.selection.rule,
                "selection.metric": params.selection.metric,
                "pipeline_run_id": parent,
                "register_run_id": register_run,
            }
            for key, value in version_tags.items():
                client.set_model_version_tag(name, version, key, value)
            client.set_registered_model_alias(name, CHALLENGER_ALIAS, version)

            old_figures, how = None, "no champion yet"
            if previous is not None:
                champion = client.get_model_version(name, previous)
                wanted = [m for m in ("psnr_y", params.selection.metric) if m in metrics] or list(metrics)
                old_figures, how = champion_figures(ctx, client, champion, eval_key, val_dir, wanted)
            decision = decide(
                metrics,
                old_figures,
                params.selection,
                champion_version=previous,
                force=params.force_promote,
                compared_on=f"{compared_on}; {how}",
                unmeasured=how,
            )
            for key, value in decision.tags().items():
                client.set_model_version_tag(name, version, key, value)
            if decision.promote:
                promote(client, name, version, params.alias, decision.reason)
        except BaseException as exc:
            line = _first_line(exc)
            log.debug("the gate failed after registering version %s", version, exc_info=True)
            decision, champion_version = _decision_after_failure(
                client, name, version, params.alias, previous, decision, metrics, compared_on, line
            )
            record(decision, champion_version, error=line)
            if not isinstance(exc, Exception):
                raise  # Ctrl-C, SIGTERM: recorded, and the stage stops as it was told
            raise RegistryError(
                f"registered model {name!r}: version {version} was registered but the gate failed ({line}); "
                f"recorded as {decision.label} in {registered_file}"
            ) from None
        champion_version = version if decision.promote else previous
        registered = record(decision, champion_version)
        write_json(summary_file, json_safe(summary))

        try:
            link = _run_link(parent, ctx.tracking.experiment_id)
            client.update_registered_model(name, description=model_description(name, params.alias))
            client.update_model_version(
                name,
                version,
                description=version_description(alpha, params.selection, decision, metrics, provenance, link, lineage),
            )
            mlflow.log_metrics({f"challenger_{k}": v for k, v in metrics.items()})
            mlflow.log_metrics({f"champion_{k}": v for k, v in (decision.champion or {}).items()})
            mlflow.log_params({"challenger_alpha": alpha, "challenger_version": version})
            mlflow.set_tags(
                {
                    "decision": decision.label,
                    "decision.reason": decision.reason[:4900],
                    "champion_version": str(champion_version),
                    "previous_champion_version": str(previous),
                }
            )
            mlflow.log_artifact(str(plot_png))
            sweep = sweep_images(models, val_dir, ctx.params.model.scale, ctx.params.logging.num_samples)
            for photo, image in sweep.items():
                mlflow.log_image(image, f"sweep/{photo}_lr_bicubic_alphas_hr.png")
            mlflow.log_dict({"rows": json_safe(rows)}, "alpha_comparison.json")
        except (MlflowException, OSError) as exc:
            raise _logging_failed(name, version, decision, registered_file, exc) from None
    try:
        client.log_artifact(parent, str(plot_png))
        client.log_metric(parent, "challenger_alpha", alpha)
        client.set_tag(parent, "decision", f"{decision.label}: {decision.reason}"[:4900])
        for key, value in metrics.items():
            client.log_metric(parent, f"challenger_{key}", value)
        finish_parent(ctx.tracking)
    except (MlflowException, OSError) as exc:
        raise _logging_failed(name, version, decision, registered_file, exc) from None
    return registered


def _registered_record(
    name: str,
    version: str,
    alpha: float,
    params: Any,
    decision: Decision,
    previous: str | None,
    champion_version: str | None,
    metrics: Mapping[str, float],
    register_run: str,
    parent: str,
) -> dict[str, Any]:
    """What ``registered.json`` says: the version, the gate's decision and why, both models' figures."""
    return {
        "model_name": name,
        "version": version,
        "alpha": alpha,
        "alias": params.alias if decision.promote else CHALLENGER_ALIAS,
        "decision": decision.label,
        "reason": decision.reason,
        "forced": bool(decision.promote and params.force_promote and previous),
        "champion_version": champion_version,
        "previous_champion_version": previous,
        "comparison": {
            "compared_on": decision.compared_on,
            "challenger": decision.challenger,
            "champion": decision.champion,
        },
        "model_uri": f"models:/{name}@{params.alias}",
        "version_uri": f"models:/{name}/{version}",
        "onnx_uri": f"models:/{name}/{version}/artifacts/{ONNX_FILE}",
        "metrics": dict(metrics),
        "register_run_id": register_run,
        "pipeline_run_id": parent,
    }


def _decision_after_failure(
    client: MlflowClient,
    name: str,
    version: str,
    alias: str,
    previous: str | None,
    decision: Decision | None,
    metrics: Mapping[str, float],
    compared_on: str,
    line: str,
) -> tuple[Decision, str | None]:
    """The decision to record when the gate failed after ``version`` was registered, and the champion.

    A decision to promote stands only if the alias did move; otherwise the version is recorded as
    not promoted, with the failure as the reason. The tags are written on a best-effort basis (the
    registry may be what failed); ``registered.json`` is written by the caller either way.
    """
    champion_version = previous
    if decision is not None and decision.promote:
        try:
            champion_version = alias_version(client, name, alias)
        except Exception:  # the registry is down: the alias is unknown, take it as not moved
            champion_version = previous
    if decision is None or (decision.promote and champion_version != version):
        why = f"not promoted: the gate failed ({line})"
        if decision is not None:
            why = f"{decision.reason}; but promoting it failed ({line})"
        decision = Decision(False, why, dict(metrics), decision.champion if decision else None, previous, compared_on)
    try:
        for key, value in {**decision.tags(), "decision.error": line}.items():
            client.set_model_version_tag(name, version, key, value)
    except Exception:  # best effort: the error raised and registered.json say what happened
        log.warning("could not record the decision on version %s of %s in the registry", version, name)
    return decision, champion_version


def _logging_failed(
    name: str, version: str, decision: Decision, registered_file: Path, exc: BaseException
) -> RegistryError:
    return RegistryError(
        f"registered model {name!r}: version {version} was registered ({decision.label}, recorded in "
        f"{registered_file}) but logging it to MLflow failed: {_first_line(exc)}"
    )
