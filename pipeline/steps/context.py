"""What every step receives: the project root, the validated params and MLflow tracking."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.params import PipelineParams, load_params
from pipeline.registry.tracking import Tracking, configure


@dataclass(frozen=True)
class StepContext:
    """The project root (where ``params.yaml``, ``data.dvc`` and ``mlflow.db`` live)."""

    root: Path
    params: PipelineParams
    #: None for a training rank other than 0: only rank 0 tracks (N ranks creating one SQLite store
    #: at once would race). :attr:`tracking` is what the steps use.
    tracker: Tracking | None

    @property
    def tracking(self) -> Tracking:
        """Where this step's MLflow runs go; an error in a context that does not track."""
        if self.tracker is None:
            raise RuntimeError("this step context does not track MLflow runs (a training rank other than 0)")
        return self.tracker

    @classmethod
    def load(cls, root: str | Path = ".", params_file: str | Path = "params.yaml") -> StepContext:
        """Read ``params.yaml`` under ``root`` and configure MLflow."""
        root = Path(root).resolve()
        path = root / params_file
        params = load_params(path)
        return cls(root=root, params=params, tracker=configure(root, params.tracking.experiment, path))

    def evaluation_images(self, val_dir: Path, tmp: str | Path) -> Path:
        """``val_dir``, or (``evaluate.max_images`` set) a folder in ``tmp`` of links to its first
        images: what every evaluation of this run, the champion's included, measures."""
        limit = self.params.evaluate.max_images
        if limit is None:
            return val_dir
        for p in sorted(p for p in val_dir.iterdir() if p.is_file())[:limit]:
            (Path(tmp) / p.name).symlink_to(p.resolve())
        return Path(tmp)

    @classmethod
    def from_params(cls, root: str | Path, params: PipelineParams) -> StepContext:
        """For callers that already hold parameters (KFP components)."""
        root = Path(root).resolve()
        return cls(root=root, params=params, tracker=configure(root, params.tracking.experiment))

    @classmethod
    def untracked(cls, root: str | Path, params: PipelineParams) -> StepContext:
        """The parameters without MLflow: a training rank other than 0."""
        return cls(root=Path(root).resolve(), params=params, tracker=None)
