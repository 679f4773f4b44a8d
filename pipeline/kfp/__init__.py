"""Kubeflow Pipelines: the components (``components/``, one per step), their build on the project
image (``build``), the DAG (``dag``), how ``params.yaml`` travels as pipeline parameters (``params``),
local runs and submission (``run``), the parent MLflow run of a KFP execution (``parent_run``) and
multi-node training as a TrainJob (``trainjob``)."""
