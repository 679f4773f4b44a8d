"""``python -m pipeline.cli``: the ``esrgan`` command (what torchrun starts in each rank)."""

import sys

from pipeline.cli.app import main

sys.exit(main())
