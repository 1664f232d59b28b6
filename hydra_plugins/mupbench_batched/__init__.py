"""mupbench's batched launcher and sweeper, where Hydra looks for plugins (the ``hydra_plugins``
namespace). The code lives in :mod:`mupbench.batched`; ``conf/hydra/launcher/batched.yaml`` and
``conf/hydra/sweeper/mupbench.yaml`` name these classes.
"""

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from mupbench.batched import BatchedLauncherImpl, BatchedSweeperImpl


class BatchedLauncher(BatchedLauncherImpl, BasicLauncher):
    """Hydra's in-process launcher, with a multirun's seeds (and k values) trained as ensembles."""


class GroupedBasicSweeper(BatchedSweeperImpl, BasicSweeper):
    """Hydra's basic sweeper, checking one composed job per group instead of every job (its name
    says BasicSweeper: mupbench-status expands its grid exactly as the basic sweeper's)."""
