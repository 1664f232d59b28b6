"""``python -m mupbench.analysis SWEEP_DIR...``: the same as ``mupbench-report``."""

import sys

from .report import main

sys.exit(main())
