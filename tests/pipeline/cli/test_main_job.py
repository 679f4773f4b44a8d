"""``esrgan main``'s closing lines: what the register step decided, from ``registered.json``."""

from __future__ import annotations

from pipeline.cli.main_job import decision_lines


def test_main_job_lines_for_both_outcomes() -> None:
    base = {"model_name": "esrgan-x4", "version": "2", "alpha": 0.4, "alias": "champion", "reason": "r"}
    assert decision_lines({**base, "decision": "promoted"}).startswith(
        "champion: esrgan-x4 version 2 (alias @champion), alpha 0.4\ndecision: promoted: r"
    )
    kept = decision_lines({**base, "decision": "kept-champion", "alias": "challenger", "champion_version": "1"})
    assert "challenger: esrgan-x4 version 2 (alias @challenger)" in kept
    assert "kept champion version 1: r" in kept and "esrgan registry promote 2" in kept
