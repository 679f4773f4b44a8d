"""The registry listing (``esrgan registry list``): its columns come from the metric registry."""

from __future__ import annotations

from esrgan.metrics.registry import headline_names
from pipeline.registry.aliases import LIST_METRICS, format_table


def test_the_listed_metrics_are_the_registry_headline_figures() -> None:
    assert LIST_METRICS == headline_names() == ("psnr_y", "ssim_y", "niqe")


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
