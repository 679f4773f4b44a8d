"""The gate cases the selection and register tests share (a helper, not a test module)."""

from __future__ import annotations

import json
from typing import Any

from pipeline.params import SelectionParams

RULE = SelectionParams(metric="niqe", psnr_margin_db=1.0)
#: A worse challenger (higher NIQE) than the champion's true figures.
WORSE = {"niqe": 6.0, "psnr_y": 25.0}
TRUE_CHAMPION = {"niqe": 5.0, "psnr_y": 25.0}
#: What a person may leave in the champion's ``niqe`` tag; ``None``: the tag deleted.
BAD = [None, "nan", "NaN", "inf", "-inf", "abc", "", float("nan"), float("inf")]


def finite_json(data: Any) -> Any:
    """``data`` through strict JSON (raises on NaN or infinity, as ``write_json`` does)."""
    return json.loads(json.dumps(data, allow_nan=False))
