"""Sweep code: everything that turns a multirun's grid into runs, and reads it back.

The trainer (``mupbench.lifecycle``) trains points it is given and never imports this package;
this package decides which points, in which groups, in which run dirs, on which launcher:

- ``rundirs``   a point's run dir from its overrides (Hydra's naming, without composing), the grid
- ``grouping``  points that differ only in seed and k: one ensemble; one composition per group
- ``checks``    every point of a sweep validated before the first run or submission
- ``chunks``    what one submitit job runs: a chunk of points, through a runner
- ``launchers`` the chunked SLURM / local launchers (hydra-submitit-launcher underneath)
- ``batched``   the in-process batched launcher and the chunk runners that train ensembles
- ``sweeper``   the default sweeper: Hydra's basic one with a grouped, value-checking check
- ``progress``  what ``mupbench-status`` shows: states, counts, ETA

Nothing here imports torch at import time: Hydra imports the plugins in ``hydra_plugins/`` on
every command, and those import this package.
"""
