"""Component 5: fidelity and perceptual metrics of one alpha on the validation split."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    alpha: float,
    config: Input[Artifact],
    model: Input[Model],
    hr_dataset: Input[Dataset],
    report: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
) -> None:
    """``report`` is the step's full JSON report (what registration reads); ``summary`` a table for the UI."""
    import tempfile
    from pathlib import Path

    from pipeline.kfp.components.runtime import GENERATOR_FILE, log_metrics, open_step
    from pipeline.steps.evaluate import evaluate_step

    ctx, _ = open_step(config.path)
    with tempfile.TemporaryDirectory() as tmp:
        means = evaluate_step(
            ctx,
            Path(model.path) / GENERATOR_FILE,
            alpha,
            Path(hr_dataset.path) / "val",
            Path(report.path),
            Path(tmp) / "metrics.json",
        )
    log_metrics(metrics, means)
    report.metadata["alpha"] = alpha
    rows = "\n".join(f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |" for k, v in means.items())
    Path(summary.path).write_text(f"### alpha = {alpha:g}\n\n| metric | mean |\n|---|---|\n{rows}\n")
