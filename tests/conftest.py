"""Session-wide fixtures."""

from __future__ import annotations

import pytest

from tests.demo_training import DemoTraining, train_demo


@pytest.fixture(scope="session")
def demo_training(tmp_path_factory: pytest.TempPathFactory) -> DemoTraining:
    """The CPU demo's two training stages, run once per session (several CPU minutes)."""
    return train_demo(tmp_path_factory.mktemp("demo"))
