"""Batched sweeps: a multirun's points grouped (``grouping``) and each group trained as stacked
ensembles by ``mupbench.lifecycle.run_group``, every point into the run dir, record and metrics
its single run would have. Two ways in:

- ``BatchedLauncherImpl``: Hydra's in-process launcher (``hydra/launcher=batched``);
- ``run_chunk`` / ``run_chunk_seeds``: runners for the chunked SLURM / local launchers
  (``hydra.launcher.runner=mupbench.sweep.batched.run_chunk``), one chunk per job.

A point left without its finished record afterwards (a failure, a compiled run) runs through
the entrypoint as usual, which says what is wrong in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from mupbench.records import finished_record
from mupbench.sweep.checks import check_or_refuse, was_checked
from mupbench.sweep.grouping import derive_points, group_indices

log = logging.getLogger("mupbench")


def train_sweep(points: Sequence[tuple[DictConfig, Path]], lrs: bool = True, max_members: int = 0, forward: str = "auto") -> list[bool]:
    """Train a multirun's points, (task config, run dir), group by group as ensembles into the run
    dirs their single runs would use. Returns, per point, whether it now holds its finished record;
    the rest (compiled runs, failures, print_params) are for the entrypoint."""
    from mupbench.config import ConfigError
    from mupbench.data import DataError
    from mupbench.lifecycle import run_group  # here, when a launch starts: it imports torch

    usable = [i for i, (task, _) in enumerate(points) if not task.print_params and not task.train.compile]
    groups = group_indices([points[i][0] for i in usable], lrs)
    log.info("%d points in %d batched groups (seeds%s batched)", len(usable), len(groups), " and k values" if lrs else "")
    for g in groups:
        try:
            run_group([points[usable[j]][0] for j in g], [points[usable[j]][1] for j in g], max_members=max_members, forward=forward)
        except (ConfigError, DataError) as e:
            log.error("cannot batch %d points: %s", len(g), e)
    return [finished_record(task, run_dir) is not None for task, run_dir in points]


def _job_return(overrides: Sequence[str], task: DictConfig, run_dir: Path, rep: DictConfig):
    from mupbench.sweep.launchers import job_return

    return job_return(overrides, task, run_dir, str(rep.hydra.job.name))


def _train_derived(job_overrides, compose, lrs: bool, max_members: int = 0, forward: str = "auto") -> tuple[list, dict]:
    """(each job's derived point or None, {job index: holds its finished record})."""
    derived = derive_points(job_overrides, compose, lrs)
    have = [i for i, d in enumerate(derived) if d is not None]
    done = dict(zip(have, train_sweep([derived[i][:2] for i in have], lrs, max_members, forward)))
    return derived, done


class BatchedLauncherImpl:
    """Hydra's basic (in-process) launcher, with the points of each group trained first as
    ensembles. A point that holds its finished record afterwards is reported done; any other
    point (a compiled run, a failure) runs through the entrypoint as usual."""

    def __init__(self, lrs: bool = True, max_members: int = 0, forward: str = "auto") -> None:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        BasicLauncher.__init__(self)  # type: ignore[arg-type]
        self.lrs, self.max_members, self.forward = lrs, max_members, forward

    def setup(self, *args, **kwargs) -> None:
        """Hydra's setup, then the settings checked: here, not in __init__, whose errors Hydra
        wraps in its own "Error in call to target" message."""
        from mupbench.sweep.launchers import LauncherError

        super().setup(*args, **kwargs)
        if not isinstance(self.lrs, bool):
            raise LauncherError(f"hydra.launcher.lrs: {self.lrs!r} must be true or false")
        if isinstance(self.max_members, bool) or not isinstance(self.max_members, int) or self.max_members < 0:
            raise LauncherError(f"hydra.launcher.max_members: {self.max_members!r} must be an integer ≥ 0 (0 = by memory)")
        if self.forward not in ("auto", "bmm", "vmap"):
            raise LauncherError(f"hydra.launcher.forward: {self.forward!r}: choose auto, bmm or vmap")

    def _compose(self, overrides: Sequence[str], idx: int) -> DictConfig:
        from omegaconf import open_dict

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = idx
        return cfg

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from hydra.core.utils import configure_log, filter_overrides, run_job, setup_globals

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        compose = lambda i: self._compose(job_overrides[i], initial_job_idx + i)  # noqa: E731
        if not was_checked(self, job_overrides):  # another sweeper than mupbench's: check here
            check_or_refuse(job_overrides, compose, initial_job_idx)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally as batched ensembles")
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        derived, done = _train_derived(job_overrides, compose, self.lrs, self.max_members, self.forward)
        runs = []
        for i, overrides in enumerate(job_overrides):
            if done.get(i):
                runs.append(_job_return(overrides, *derived[i]))
                continue
            runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=compose(i),
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs


def run_chunk(points, ctx, lrs: bool = True) -> list:
    """A runner for the chunked launchers (``hydra.launcher.runner=mupbench.sweep.batched.run_chunk``):
    the chunk's seeds and k values are trained as ensembles; a point left without its record (a
    failure) then runs through the entrypoint. Put seed (and optimizer.lr) last in the sweep so
    that a chunk holds whole groups."""
    derived, done = _train_derived([p.overrides for p in points], lambda i: ctx.compose(points[i]), lrs)
    return [_job_return(p.overrides, *derived[i]) if done.get(i) else ctx.run(p) for i, p in enumerate(points)]


def run_chunk_seeds(points, ctx) -> list:
    """As ``run_chunk``, batching only the seeds (each k value its own ensemble)."""
    return run_chunk(points, ctx, lrs=False)
