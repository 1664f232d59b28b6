"""mupbench's batched launcher and default sweeper, where Hydra looks for plugins (the
``hydra_plugins`` namespace). The code lives in :mod:`mupbench.sweep` (``batched``, ``sweeper``);
``conf/hydra/launcher/batched.yaml`` and ``conf/hydra/sweeper/mupbench.yaml`` name these classes.
Hydra imports this module on every command: nothing here imports torch (a launch does).
"""

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from mupbench.sweep.batched import BatchedLauncherImpl
from mupbench.sweep.sweeper import BatchedSweeperImpl


class BatchedLauncher(BatchedLauncherImpl, BasicLauncher):
    """Hydra's in-process launcher, with a multirun's seeds (and k values) trained as ensembles."""


class GroupedBasicSweeper(BatchedSweeperImpl, BasicSweeper):
    """Hydra's basic sweeper, checking every job's values on one composed job per group (its name
    says BasicSweeper: mupbench-status expands its grid exactly as the basic sweeper's)."""
