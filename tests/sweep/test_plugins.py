"""Hydra imports every module under hydra_plugins/ on every command (its plugin scan): ours are
thin and import no torch until a launch starts, and neither does mupbench.sweep."""

from __future__ import annotations

import subprocess
import sys


def test_plugins_and_the_sweep_package_import_no_torch():
    code = ("import sys, hydra_plugins.mupbench_batched, hydra_plugins.mupbench_launcher, mupbench.sweep.batched, "
            "mupbench.sweep.sweeper, mupbench.sweep.launchers, mupbench.sweep.progress, mupbench.status; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
