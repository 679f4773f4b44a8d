"""The champion/challenger gate as a pure decision (no registry): the rule, forcing, first version."""

from __future__ import annotations

import pytest

from pipeline.cli.main_job import decision_lines
from pipeline.params import SelectionParams
from pipeline.registry.aliases import at_least_as_good, decide, format_table

RULE = SelectionParams(metric="niqe", psnr_margin_db=1.0)


def test_first_version_is_promoted() -> None:
    d = decide({"niqe": 9.0, "psnr_y": 20.0}, None, RULE)
    assert d.promote and d.label == "promoted" and "no champion yet" in d.reason
    assert d.tags()["decision.challenger.niqe"] == "9.0000"


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "why"),
    [
        ({"niqe": 5.0, "psnr_y": 25.0}, {"niqe": 5.5, "psnr_y": 25.0}, True, "5.0000 <= champion's 5.5000"),
        ({"niqe": 5.5, "psnr_y": 25.0}, {"niqe": 5.5, "psnr_y": 25.0}, True, "<="),  # ties keep the newer model
        ({"niqe": 6.0, "psnr_y": 26.0}, {"niqe": 5.5, "psnr_y": 25.0}, False, "6.0000 > champion's 5.5000"),
        # Better perceptual score bought with more than the allowed loss of fidelity: rejected.
        ({"niqe": 4.0, "psnr_y": 23.9}, {"niqe": 5.5, "psnr_y": 25.0}, False, "more than 1 dB below"),
        ({"niqe": 4.0, "psnr_y": 24.1}, {"niqe": 5.5, "psnr_y": 25.0}, True, "<="),
        ({"psnr_y": 25.0}, {"niqe": 5.5, "psnr_y": 25.0}, False, "challenger has no niqe"),
        # A champion without the figure is not beaten by default: the gate fails closed (issue 21).
        ({"niqe": 6.0, "psnr_y": 25.0}, {"psnr_y": 25.0}, False, "champion has no niqe"),
    ],
)
def test_rule_on_two_models(challenger: dict, champion: dict, promote: bool, why: str) -> None:
    ok, reason = at_least_as_good(challenger, champion, RULE)
    assert ok is promote and why in reason
    d = decide(challenger, champion, RULE, champion_version="3", compared_on="data=x")
    assert d.promote is promote and d.champion_version == "3" and "version 3" in d.reason
    tags = d.tags()
    assert tags["decision"] == ("promoted" if promote else "kept-champion")
    assert tags["decision.champion_version"] == "3" and tags["decision.compared_on"] == "data=x"
    assert all(tags[f"decision.champion.{k}"] == f"{v:.4f}" for k, v in champion.items())


def test_force_promotes_a_worse_model_and_says_so() -> None:
    d = decide({"niqe": 9.0}, {"niqe": 5.0}, RULE, champion_version="1", force=True)
    assert d.promote and d.reason == "forced by register.force_promote"


def test_unmeasurable_champion_is_kept() -> None:
    d = decide({"niqe": 4.0}, None, RULE, champion_version="2")
    assert not d.promote and "could not be measured" in d.reason


def test_main_job_lines_for_both_outcomes() -> None:
    base = {"model_name": "esrgan-x4", "version": "2", "alpha": 0.4, "alias": "champion", "reason": "r"}
    assert decision_lines({**base, "decision": "promoted"}).startswith(
        "champion: esrgan-x4 version 2 (alias @champion), alpha 0.4\ndecision: promoted: r"
    )
    kept = decision_lines({**base, "decision": "kept-champion", "alias": "challenger", "champion_version": "1"})
    assert "challenger: esrgan-x4 version 2 (alias @challenger)" in kept
    assert "kept champion version 1: r" in kept and "esrgan registry promote 2" in kept


def test_table_lists_aliases_and_history() -> None:
    rows = [
        {
            "version": "2",
            "aliases": ["challenger"],
            "alpha": "0.5",
            "psnr_y": "24.1",
            "ssim_y": "",
            "niqe": "6.1",
            "data": "abc",
            "commit": "deadbeef",
            "decision": "kept-champion",
            "created": "2026-01-01 00:00",
        },
        {
            "version": "1",
            "aliases": ["champion"],
            "alpha": "0",
            "psnr_y": "25.0",
            "ssim_y": "",
            "niqe": "5.0",
            "data": "abc",
            "commit": "deadbeef",
            "decision": "promoted",
            "created": "2026-01-01 00:00",
        },
    ]
    text = format_table("esrgan-x4", rows, ["1"]).splitlines()
    assert text[0] == "registered model esrgan-x4: 2 version(s)"
    assert text[1].split() == [
        "version",
        "aliases",
        "alpha",
        "psnr_y",
        "ssim_y",
        "niqe",
        "data",
        "commit",
        "decision",
        "created",
    ]
    assert text[2].split()[:2] == ["2", "challenger"] and text[3].split()[:2] == ["1", "champion"]
    assert text[-1] == "champion history (oldest first): 1"


def test_image_fingerprint_identifies_the_validation_images() -> None:
    from pipeline.steps.register import image_fingerprint

    def report(*rows: tuple[str, float]) -> dict:
        return {"per_image": [{"name": n, "hr_shape": [64, 64], "bicubic": {"psnr_y": v}} for n, v in rows]}

    same = image_fingerprint(report(("a.png", 25.0), ("b.png", 27.5)))
    assert same == image_fingerprint(report(("b.png", 27.5), ("a.png", 25.0))) and same.endswith("(2 images)")
    assert same != image_fingerprint(report(("a.png", 25.0), ("b.png", 27.4)))  # same names, other content
    assert same != image_fingerprint(report(("a.png", 25.0)))
    assert image_fingerprint({}) is None
