"""The evaluate step's inputs: a bicubic baseline file it cannot use is one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import StageInputError
from pipeline.steps.evaluate import _load_baseline


@pytest.mark.parametrize(("text", "reason"), [("[1, 2]", "not a JSON object"), ("{", "Expecting")])
def test_an_unusable_baseline_is_a_stage_input_error(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bicubic.json"
    path.write_text(text)
    with pytest.raises(StageInputError, match=rf"bicubic.json: not a readable bicubic baseline report \({reason}"):
        _load_baseline(path)
