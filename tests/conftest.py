"""Session-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from esrgan.models import RRDBNet, save_generator
from tests.demo_training import DemoTraining, train_demo


@pytest.fixture(scope="session")
def demo_training(tmp_path_factory: pytest.TempPathFactory) -> DemoTraining:
    """The CPU demo's two training stages, run once per session (several CPU minutes)."""
    return train_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny x4 RRDBNet saved as a .pth (nf 8, 1 block, growth 4, written zero-padded to growth 32)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), path)
    return path


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_does_not_leak() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` (which every step context calls) is process-global and beats
    ``MLFLOW_TRACKING_URI``: a test that ran a step would point the next test's commands at its
    store. Forget it after each test, keeping the environment variable as it was before."""
    import os
    import sys

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # also unsets the variable it had set
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before
