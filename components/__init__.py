"""The pipeline's KFP components (one module per step) and :mod:`components.build`, which makes them."""

#: Where ``docs/kubeflow.md`` pushes the image; override with ``esrgan kfp compile --image-repository``.
#: Here rather than in :mod:`components.build` so the ``esrgan`` parser shows it without importing kfp.
DEFAULT_REPOSITORY = "ghcr.io/owner/esrgan-pipeline"
