"""Everything MLflow: tracking the steps' runs (``tracking``), the registry's aliases and champion
history (``aliases``), packaging a generator as a pyfunc model (``packaging``, ``pyfunc_model``) and
serving it with KServe (``kserve``)."""
