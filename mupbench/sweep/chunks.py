"""What one submitit job runs: a chunk of consecutive grid points, handed to a runner.

The MLP grid is 5,120 tiny runs; one job each would spend more time starting Python than
training, so a job takes a chunk. ``runner(points, ctx) -> list[JobReturn]`` trains it: the
default runs the points one after the other through the entrypoint; ``mupbench.sweep.batched``'s
runners train the chunk's seeds (and k values) as ensembles first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_RUNNER = "mupbench.sweep.chunks.run_sequential"
# where the runners lived before mupbench.sweep: profiles and scripts that name them keep working
_RENAMED = {
    "mupbench.launching.run_sequential": DEFAULT_RUNNER,
    "mupbench.batched.run_chunk": "mupbench.sweep.batched.run_chunk",
    "mupbench.batched.run_chunk_seeds": "mupbench.sweep.batched.run_chunk_seeds",
}


@dataclass
class Point:
    """One grid point of a sweep: its overrides and its job number in the multirun."""

    overrides: list[str]
    num: int


class ChunkContext:
    """What a runner gets inside a job: how to compose and how to run a point."""

    def __init__(self, launcher: Any, singleton_state: dict):
        self._launcher = launcher
        self._state = singleton_state

    def run(self, point: Point) -> Any:
        """Run one point through the entrypoint (its run dir, record and Hydra job log)."""
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

        return BaseSubmititLauncher.__call__(
            self._launcher, point.overrides, "hydra.sweep.dir", point.num, f"job_id_for_{point.num}", self._state
        )

    def compose(self, point: Point) -> Any:
        """The point's composed sweep config (with its hydra node), without running it;
        ``rundirs.task_and_run_dir`` splits it into the task config and the run dir."""
        from hydra.core.singleton import Singleton

        Singleton.set_state(self._state)
        loader = self._launcher.hydra_context.config_loader
        return loader.load_sweep_config(self._launcher.config, list(point.overrides))


def run_sequential(points: Sequence[Point], ctx: ChunkContext) -> list:
    """The default runner: the chunk's points one after the other, each as its own Hydra job."""
    return [ctx.run(p) for p in points]


def resolve_runner(path: str) -> Callable[[Sequence[Point], ChunkContext], list]:
    """The runner function named by a dotted path (``package.module.function``)."""
    path = _RENAMED.get(str(path), str(path))
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError("give a dotted path, package.module.function")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise ValueError(f"{module} has no function {name}")
    return fn


class ChunkTask:
    """The callable that one submitit job runs: a chunk of points, handed to the runner."""

    def __init__(self, launcher: Any):
        self.launcher = launcher

    def __call__(self, points: list[Point], singleton_state: dict) -> list:
        runner = resolve_runner(self.launcher.runner)
        returns = runner(points, ChunkContext(self.launcher, singleton_state))
        if len(returns) != len(points):
            raise RuntimeError(f"runner {self.launcher.runner} returned {len(returns)} results for {len(points)} points")
        return list(returns)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Preempted or timed out: requeue the same chunk. Finished points are skipped when it
        restarts and the interrupted one resumes from its checkpoint.pt."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
