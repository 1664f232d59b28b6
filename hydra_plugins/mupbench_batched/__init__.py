"""mupbench's batched launcher, where Hydra looks for plugins (the ``hydra_plugins`` namespace).

The code lives in :mod:`mupbench.batched`; ``conf/hydra/launcher/batched.yaml`` names this class.
"""

from hydra._internal.core_plugins.basic_launcher import BasicLauncher

from mupbench.batched import BatchedLauncherImpl


class BatchedLauncher(BatchedLauncherImpl, BasicLauncher):
    """Hydra's in-process launcher, with a multirun's seeds (and k values) trained as ensembles."""
