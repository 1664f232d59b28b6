"""mupbench's sweep launchers, where Hydra looks for plugins (the ``hydra_plugins`` namespace).

The code lives in :mod:`mupbench.launching`; these names are what ``_target_`` in
``conf/hydra/launcher/{slurm,local}.yaml`` points to.
"""

from mupbench.launching import ChunkedLocalLauncher, ChunkedSlurmLauncher


class SlurmLauncher(ChunkedSlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher with chunks, skipping and array splitting."""


class LocalLauncher(ChunkedLocalLauncher):
    """hydra-submitit-launcher's LocalLauncher with chunks and skipping."""
