"""Component 0: merge and validate the parameters, fix the pipeline key (cheap, cached)."""

from kfp.dsl import Artifact, Output


def resolve_params(
    params_json: str,
    alphas: list[float],
    psnr_iterations: int,
    gan_iterations: int,
    device: str,
    experiment: str,
    model_name: str,
    data_source: str,
    data_uri: str,
    data_rev: str,
    data_path: str,
    config: Output[Artifact],
) -> str:
    """Fail before any GPU is requested if the parameters are invalid; returns the pipeline key."""
    from pipeline.data.sources import DataSource, source_kind
    from pipeline.images import project_version
    from pipeline.kfp.components.runtime import write_config
    from pipeline.kfp.params import params_with_knobs, pipeline_key

    knobs = {
        "alphas": alphas,
        "psnr_iterations": psnr_iterations,
        "gan_iterations": gan_iterations,
        "device": device,
        "experiment": experiment,
        "model_name": model_name,
    }
    params = params_with_knobs(params_json, knobs)
    data = DataSource(kind=source_kind(data_source), uri=data_uri, rev=data_rev, path=data_path).as_dict()
    key = pipeline_key(params, data, code_version=project_version())  # the image's package version
    write_config(config.path, params, key, data)
    return key
