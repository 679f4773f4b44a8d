"""The KFP components, one module per step, each a thin body that calls the step function of
:mod:`pipeline.steps` (``runtime`` holds what the bodies share). :mod:`pipeline.kfp.build` turns
them into components on the project image."""
