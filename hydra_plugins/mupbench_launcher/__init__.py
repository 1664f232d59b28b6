"""mupbench's sweep launchers, where Hydra looks for plugins (the ``hydra_plugins`` namespace).

The code lives in :mod:`mupbench.sweep.launchers`; these names are what ``_target_`` in
``conf/hydra/launcher/{slurm,local}.yaml`` points to. Hydra imports this module on every
command: nothing here imports torch (a job does).
"""

from mupbench.sweep.launchers import ChunkedLocalLauncher, ChunkedSlurmLauncher


class SlurmLauncher(ChunkedSlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher with chunks, checks, skipping and array splitting."""


class LocalLauncher(ChunkedLocalLauncher):
    """hydra-submitit-launcher's LocalLauncher with chunks, checks and skipping."""
