"""The MLOps side of esrgan-pipeline: the pipeline steps (``pipeline.steps``), the ``esrgan``
command line, MLflow tracking and registry, the Kubeflow DAG, data sources and S3.

The core library (``esrgan``) knows nothing of this package; this package calls it.
"""
