"""Step 0: the weights training starts from, resolved from ``params.yaml``'s ``init`` sources.

Paths, ``s3://``, ``https://...#sha256=`` and registry URIs become files in this project's layout,
one folder per training stage, with ``source.json`` recording what each source resolved to (an
alias: the version and run it pointed to). ``dvc.yaml`` runs this stage on every ``dvc repro``
(``always_changed``): a registry alias or a remote file can change without DVC seeing it, and
equal weights give equal bytes, so the training stages re-run only when a source really changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.data.init_sources import STAGE_SOURCES, resolve_stage_init
from pipeline.steps.context import StepContext


def resolve_init_step(ctx: StepContext, out_dir: Path) -> dict[str, Any]:
    """Write ``out_dir/<section>/`` for each training stage (``pretrain_psnr``, ``finetune_gan``)."""
    return {section: resolve_stage_init(ctx.params, section, out_dir / section, ctx.root) for section in STAGE_SOURCES}
