"""The core library's base class for errors the user can fix (bad files, bad settings).

``esrgan/`` never imports the pipeline, so it has its own base; the ``esrgan`` command line
catches it next to :class:`pipeline.errors.PipelineError` and prints the message without a
traceback.
"""

from __future__ import annotations


class EsrganError(Exception):
    """A user-fixable problem in the core library; the message names the file or setting."""
