"""``esrgan data``: the HR dataset tracked by ``data.dvc`` (sample, import, holdout, DIV2K)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("data", help="the HR dataset tracked by data.dvc")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    s = dsub.add_parser("sample", help="(re)build the embedded sample set and track it with DVC")
    s.add_argument("--out", type=Path, default=Path("data"))
    s.add_argument("--force", action="store_true", help="replace a dataset that differs from the sample set")
    s.add_argument("--no-dvc", action="store_true", help="do not run 'dvc add'")
    s.set_defaults(handler=_sample)
    i = dsub.add_parser("import", help="bring a folder of HR images (DIV2K, DF2K...) in and re-track it")
    i.add_argument("source", type=Path)
    i.add_argument("--out", type=Path, default=Path("data"))
    i.add_argument("--val-fraction", type=float, default=0.1)
    i.add_argument("--force", action="store_true", help="replace the current dataset (its DVC cache copy remains)")
    i.add_argument("--no-dvc", action="store_true")
    i.set_defaults(handler=_import)
    h = dsub.add_parser("holdout", help="write 9 photos that are not in the sample set, to evaluate on")
    h.add_argument("out", type=Path)
    h.set_defaults(handler=lambda a: print_json(_holdout(a.out)))
    d = dsub.add_parser("download-div2k", help="download DIV2K HR (needs internet), then use 'data import'")
    d.add_argument("out", type=Path)
    d.set_defaults(handler=lambda a: print_json({"path": str(_div2k(a.out))}))


def _sample(a: argparse.Namespace) -> int:
    from pipeline.data.workspace import sample

    return print_json(sample(a.out, force=a.force, track=not a.no_dvc))


def _import(a: argparse.Namespace) -> int:
    from pipeline.data.workspace import import_folder

    return print_json(import_folder(a.source, a.out, val_fraction=a.val_fraction, force=a.force, track=not a.no_dvc))


def _holdout(out: Path) -> dict[str, object]:
    from esrgan.data import build_holdout_set

    entries = build_holdout_set(out)
    return {"path": str(out), "images": [{k: e[k] for k in ("name", "licence", "attribution")} for e in entries]}


def _div2k(out: Path) -> Path:
    from esrgan.data import download_div2k

    return download_div2k(out)
