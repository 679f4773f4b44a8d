"""Component 6: pick the alpha, register it (challenger, champion if the gate passes), plot the sweep."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output


def register(
    config: Input[Artifact],
    models: Input[list[Model]],
    reports: Input[list[Dataset]],
    kfp_run_id: str,
    kfp_run_name: str,
    plot: Output[HTML],
    plot_data: Output[Dataset],
    summary: Output[Metrics],
    registered: Output[Artifact],
) -> str:
    """Returns the registration record as JSON (model name, version, alias, alpha, metrics)."""
    import base64
    import json
    import tempfile
    from pathlib import Path

    from pipeline.kfp.components.runtime import GENERATOR_FILE, log_metrics, open_step
    from pipeline.steps.register import register_step

    ctx, _ = open_step(config.path, {"kfp.run_id": kfp_run_id, "kfp.run_name": kfp_run_name})
    by_alpha = {float(m.metadata["alpha"]): Path(m.path) / GENERATOR_FILE for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "perception_distortion.png"
        record = register_step(
            ctx,
            [Path(r.path) for r in reports],
            by_alpha,
            Path(tmp) / "summary.json",
            Path(plot_data.path),
            png,
            Path(registered.path),
        )
        image = base64.b64encode(png.read_bytes()).decode()
    log_metrics(summary, record["metrics"], prefix="champion_")
    summary.log_metric("champion_alpha", float(record["alpha"]))
    Path(plot.path).write_text(
        "<html><body><h3>Perception-distortion trade-off</h3>"
        f"<p>champion: {record['model_name']} v{record['version']} @{record['alias']}, alpha {record['alpha']:g}</p>"
        f'<img alt="perception-distortion plot" src="data:image/png;base64,{image}"></body></html>'
    )
    return json.dumps(record, sort_keys=True)
