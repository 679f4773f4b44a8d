"""Component 1: fetch the HR dataset, then the extract-patches step."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


def extract_patches(
    config: Input[Artifact], hr_dataset: Output[Dataset], patches: Output[Dataset], metrics: Output[Metrics]
) -> None:
    """``hr_dataset`` is the fetched ``train``/``val`` set (evaluation reads ``val``); ``patches`` the pairs."""
    import tempfile
    from pathlib import Path

    from pipeline.data.sources import DataSource, fetch_dataset
    from pipeline.kfp.components.runtime import log_metrics, open_step
    from pipeline.steps.extract_patches import extract_patches_step

    ctx, config_data = open_step(config.path)
    data_dir = fetch_dataset(DataSource(**config_data["data"]), Path(hr_dataset.path))
    with tempfile.TemporaryDirectory() as tmp:
        result = extract_patches_step(ctx, data_dir, Path(patches.path), Path(tmp) / "metrics.json")
    log_metrics(metrics, result)
