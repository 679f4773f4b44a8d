"""Where the pipeline's data comes from: the HR dataset in the workspace (``workspace``), the KFP
data sources (``sources``), the ``init`` weights (``init_sources``) and S3 object storage (``storage``)."""
