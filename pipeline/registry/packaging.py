"""Logging generators as MLflow pyfunc models, registering them, and loading them back."""

from __future__ import annotations

import base64
import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from esrgan.models import RRDBNet, load_generator, save_generator

if TYPE_CHECKING:  # for annotations only: the functions import MLflow and pandas when called
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
ESRGAN_PACKAGE = Path(__file__).resolve().parents[2] / "esrgan"
#: Name of the ONNX export inside a logged model (``<model>/artifacts/model.onnx``).
ONNX_FILE = "model.onnx"


def _signature() -> ModelSignature:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "image")]),
        outputs=Schema([ColSpec("string", "image"), ColSpec("long", "width"), ColSpec("long", "height")]),
    )


def _input_example() -> pd.DataFrame:
    import pandas as pd

    buf = io.BytesIO()
    gradient = np.linspace(0, 255, 8 * 8 * 3).reshape(8, 8, 3).astype(np.uint8)
    Image.fromarray(gradient).save(buf, format="PNG")
    # Annotated: pandas-stubs types the constructor for Python >= 3.11 only (mypy checks 3.10).
    example: pd.DataFrame = pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode("ascii")]})
    return example


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pkgs = ["torch", "numpy", "pillow", "safetensors", "pandas", "opencv-python-headless", "scipy", "pydantic", "tqdm"]
    engines = []  # the served model runs through these when installed (pipeline.registry.pyfunc_model.load_upscaler)
    for engine in ("openvino", "onnxruntime"):
        with contextlib.suppress(PackageNotFoundError):
            engines.append(f"{engine}=={version(engine)}")
    return [f"mlflow=={version('mlflow')}"] + [f"{p}=={version(p)}" for p in pkgs] + engines


def log_generator_model(
    generator_path: str | Path,
    name: str = "model",
    registered_model_name: str | None = None,
    max_input_pixels: int | None = None,
    tile: int | None = None,
    onnx: bool = True,
) -> ModelInfo:
    """Log a generator file as an MLflow pyfunc model in the active run (and optionally register it).

    The generator is re-saved as safetensors inside the model, so what is served and what
    ``load_generator`` / spandrel read is the same file. With ``onnx`` the same weights also travel
    as ``artifacts/model.onnx`` (dynamic height and width, see :mod:`esrgan.export`), so every
    registered version carries a file for ONNX Runtime, TensorRT or Triton next to the pyfunc.

    Returns:
        MLflow's ``ModelInfo`` (``.model_uri``, ``.registered_model_version``).
    """
    import mlflow

    from pipeline.registry.pyfunc_model import DEFAULT_MAX_INPUT_PIXELS, DEFAULT_TILE

    model = load_generator(generator_path)
    with tempfile.TemporaryDirectory() as tmp:
        st_path = Path(tmp) / "generator.safetensors"
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # growth-width warning is for spandrel users
            save_generator(model, st_path)
        artifacts = {"generator": str(st_path)}
        if onnx:
            from esrgan.export import export_onnx

            artifacts["onnx"] = str(export_onnx(model, Path(tmp) / ONNX_FILE))
        info: ModelInfo = mlflow.pyfunc.log_model(  # MLflow leaves log_model unannotated
            name=name,
            python_model=str(PYFUNC_CODE),
            artifacts=artifacts,
            code_paths=[str(ESRGAN_PACKAGE)],
            model_config={
                "max_input_pixels": max_input_pixels or DEFAULT_MAX_INPUT_PIXELS,
                "tile": DEFAULT_TILE if tile is None else tile,
                "architecture": model.config,
            },
            signature=_signature(),
            input_example=_input_example(),
            pip_requirements=_pip_requirements(),
            registered_model_name=registered_model_name,
        )
        return info


def load_registered_generator(model_uri: str) -> RRDBNet:
    """Load the generator inside a logged pyfunc model (``models:/name@alias``, ``runs:/...``)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        candidates = sorted(local.rglob("generator.safetensors")) or sorted(local.rglob("*.safetensors"))
        if not candidates:
            raise FileNotFoundError(f"{model_uri}: no generator file inside the model")
        model = load_generator(candidates[0])
        shutil.rmtree(local, ignore_errors=True)
    return model
