"""StepContext: the context of a training rank other than 0 has no MLflow tracking, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.params import load_params
from pipeline.steps.context import StepContext

ROOT = Path(__file__).resolve().parents[3]


def test_an_untracked_context_refuses_to_hand_out_tracking(tmp_path: Path) -> None:
    ctx = StepContext.untracked(tmp_path, load_params(ROOT / "params.yaml"))
    assert ctx.root == tmp_path.resolve()
    assert ctx.tracker is None
    with pytest.raises(RuntimeError, match="does not track MLflow runs"):
        _ = ctx.tracking
