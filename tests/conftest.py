"""Session-wide fixtures."""

from __future__ import annotations

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
