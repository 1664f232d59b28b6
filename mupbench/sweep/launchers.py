"""Hydra launchers for sweeps on SLURM (and locally): chunks of grid points per job, every point
validated and finished points skipped before anything is submitted.

These extend hydra-submitit-launcher's launcher (the same parameters, executors, job
environment and requeue) and are selected by the profiles in ``conf/hydra/launcher/``
(``slurm``, ``local``; the classes they name live in ``hydra_plugins/mupbench_launcher``, where
Hydra looks for plugins). On top of the plugin:

- ``points_per_job`` (or ``num_jobs``): one job trains a chunk of consecutive grid points
  (``mupbench.sweep.chunks``), each in its own run dir with its own record.
- ``skip_finished``: a point whose run dir already holds a finished record of the same config
  (what the entrypoint itself would skip) is not submitted at all; the counts are logged.
- ``max_array_size``: more jobs than the cluster's MaxArraySize go out as several arrays, all
  submitted at once (``array_parallelism`` applies to each array).
- ``runner``: the function that runs one chunk inside its job (``chunks.resolve_runner``).

Requeue: every job is checkpointable. On preemption or time-out submitit calls ``checkpoint``,
which resubmits the same chunk; points that finished are skipped by the entrypoint and the one
that was interrupted resumes from its ``checkpoint.pt`` (``train.ckpt_every`` > 0).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import HydraException
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

from mupbench.records import RESULT, fingerprint, finished_record
from mupbench.sweep.checks import check_or_refuse, was_checked
from mupbench.sweep.chunks import DEFAULT_RUNNER, ChunkTask, Point, resolve_runner
from mupbench.sweep.rundirs import run_dir_function, task_and_run_dir

log = logging.getLogger(__name__)

ERROR_PREFIX = "mupbench: error: "  # how the entrypoint says a bad input in one line (mupbench.cli)


class LauncherError(HydraException):
    """A launcher setting that cannot work (the message names the key), or a sweep that cannot be
    submitted or did not finish; mupbench-train reports it in one line."""


def job_return(overrides: Sequence[str], task: Any, run_dir: Path, task_name: str) -> JobReturn:
    """What Hydra's run_job returns for a point whose entrypoint finds its finished record."""
    ret = JobReturn(overrides=list(overrides), cfg=task, working_dir=str(run_dir))
    ret.status = JobStatus.COMPLETED
    ret.return_value = None  # what the entrypoint returns
    ret.task_name = task_name
    return ret


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b:?")


def _why(e: BaseException) -> str:
    """One line from submitit's account of a lost job: the exception that ended it (the last
    one in the job's traceback) and where its log is, or the first line (cancelled, timed out)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    dashes = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    trace = lines[dashes[0] + 1 : dashes[1]] if len(dashes) >= 2 else []
    hits = [i for i, line in enumerate(trace) if _EXCEPTION_LINE.match(line)]
    if not hits:
        return lines[0]
    i = hits[-1]
    why = trace[i] + (f" {trace[i + 1]}" if trace[i].endswith(":") and i + 1 < len(trace) else "")
    log = next((line[2:] for line in lines if line.startswith("- ") and line.endswith(".err")), None)
    return why + (f" (log: {log})" if log else "")


def input_error(job: Any) -> str | None:
    """The one-line bad-input error the entrypoint printed inside a job (a config or data error:
    running it again fails again), or None (cancelled, killed, out of time, a crash)."""
    try:
        text = job.stderr() or ""
    except OSError:
        return None
    said = [line[len(ERROR_PREFIX):].strip() for line in text.splitlines() if line.startswith(ERROR_PREFIX)]
    return said[-1] if said else None


def _positive_int(key: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LauncherError(f"hydra.launcher.{key}: {value!r} must be a positive integer")
    return value


def _chunks(points: list[Point], size: int) -> list[list[Point]]:
    return [points[i : i + size] for i in range(0, len(points), size)]


class _ChunkedLauncher(BaseSubmititLauncher):
    _EXECUTOR = "local"

    def __init__(
        self,
        points_per_job: int = 1,
        num_jobs: int | None = None,
        skip_finished: bool = True,
        max_array_size: int = 1000,
        runner: str = DEFAULT_RUNNER,
        **params: Any,
    ) -> None:
        self.points_per_job, self.num_jobs, self.max_array_size = points_per_job, num_jobs, max_array_size
        self.skip_finished, self.runner = skip_finished, runner
        super().__init__(**params)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Hydra's setup, then the settings checked: here, not in __init__, whose errors Hydra
        wraps in its own "Error in call to target" message."""
        super().setup(*args, **kwargs)
        _positive_int("points_per_job", self.points_per_job)
        _positive_int("num_jobs", self.num_jobs, allow_none=True)
        _positive_int("max_array_size", self.max_array_size)
        if not isinstance(self.skip_finished, bool):
            raise LauncherError(f"hydra.launcher.skip_finished: {self.skip_finished!r} must be true or false")
        try:
            resolve_runner(self.runner)
        except Exception as e:  # noqa: BLE001 — whatever the import raised, said in one line
            raise LauncherError(f"hydra.launcher.runner: cannot use {self.runner!r}: {e}") from None

    # ------------------------------------------------------------------ submit side
    def _executor(self) -> Any:
        """The submitit executor with this profile's resources (as the plugin builds it)."""
        import submitit

        init_keys = {"submitit_folder", "max_num_timeout"}
        init = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        params = dict(self.params)
        for key in ("gpus_per_node", "gpus_per_task"):
            if params.get(key) == 0:  # no GPU: leave the flag out rather than ask for 0
                params[key] = None
        executor.update_parameters(
            **{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k not in init_keys}
        )
        return executor

    def _compose(self, point: Point) -> Any:
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(point.overrides))

    def _finished(self, point: Point, run_dir_of: Callable[[Sequence[str]], Path | None]) -> tuple[JobReturn, str] | None:
        """(JobReturn, status) for a point that the entrypoint would skip, else None."""
        # a cheap look first: most points of a fresh sweep have no record at all
        guess = run_dir_of(point.overrides)
        if guess is not None and not (guess / RESULT).exists():
            return None
        cfg = self._compose(point)
        task_cfg, run_dir = task_and_run_dir(cfg)
        done = finished_record(task_cfg, run_dir, fingerprint(task_cfg))  # the entrypoint's own rule
        if done is None:
            return None
        return job_return(point.overrides, task_cfg, run_dir, str(cfg.hydra.job.name)), str(done["status"])

    def _check_nothing_in_flight(self) -> None:
        """Refuse to submit while jobs of the same name are still queued or running: their points
        have no record yet and would be trained twice, into the same run dirs."""
        if self._EXECUTOR != "slurm":
            return
        import getpass
        import subprocess

        name = str(self.params.get("name"))
        try:
            out = subprocess.run(["squeue", "-h", "-u", getpass.getuser(), "-n", name, "-o", "%i %t"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return  # no squeue here: sbatch will say what is wrong
        live = out.stdout.splitlines()  # completing (CG) ones too: a requeued job passes through CG
        if out.returncode == 0 and live:
            raise LauncherError(
                f"{len(live)} jobs named {name!r} are still queued or running (squeue -n {name}): their points would "
                f"run twice; wait for them or `scancel -n {name}`, then relaunch (finished points are skipped)"
            )

    def _skip_finished(self, points: list[Point]) -> tuple[dict[int, JobReturn], list[str]]:
        results: dict[int, JobReturn] = {}
        statuses: list[str] = []
        if self.skip_finished:
            run_dir_of = run_dir_function(self.config, Path(str(self.config.hydra.sweep.dir)))
            for p in points:
                found = self._finished(p, run_dir_of)
                if found is not None:
                    results[p.num] = found[0]
                    statuses.append(found[1])
        return results, statuses

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        points = [Point(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
        if not was_checked(self, job_overrides):  # another sweeper than mupbench's: check here
            check_or_refuse(job_overrides, lambda i: self._compose(points[i]), initial_job_idx)
        results, statuses = self._skip_finished(points)
        todo = [p for p in points if p.num not in results]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(
            f"{len(points)} points in {sweep_dir}: {statuses.count('completed')} completed and "
            f"{statuses.count('diverged')} diverged before (skipped), {len(todo)} to run"
        )
        if not todo:
            return [results[p.num] for p in points]
        self._check_nothing_in_flight()

        size = math.ceil(len(todo) / self.num_jobs) if self.num_jobs else self.points_per_job
        chunks = _chunks(todo, size)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        for chunk in chunks:
            log.info("\t#%s : %s", ",".join(str(p.num) for p in chunk), " | ".join(" ".join(filter_overrides(p.overrides)) for p in chunk))
        executor = self._executor()
        task, state = ChunkTask(self), Singleton.get_state()
        jobs = []
        for i in range(0, len(chunks), self.max_array_size):
            group = chunks[i : i + self.max_array_size]
            jobs += executor.map_array(task, group, [state] * len(group))
        log.info(
            f"Submitit '{self._EXECUTOR}': {len(todo)} points in {len(jobs)} jobs of up to {size} "
            f"({math.ceil(len(chunks) / self.max_array_size)} array(s)); sweep dir {sweep_dir}"
        )
        failed = []
        for job, chunk in zip(jobs, chunks):
            try:
                returns = job.results()[0]
            except Exception as e:  # noqa: BLE001 — the job ended without results: said below
                failed.append((job, chunk, e))
                continue
            for p, r in zip(chunk, returns):
                results[p.num] = r
        if failed:
            raise LauncherError(_failure(failed, len(jobs)))
        return [results[p.num] for p in points]


def _failure(failed: list, n_jobs: int) -> str:
    """The one line for jobs that ended without results: a bad input said inside a job is that
    error (relaunching would fail again); anything else is lost work that a relaunch redoes."""
    said = [(job, chunk, why) for job, chunk, _ in failed if (why := input_error(job))]
    if said:
        job, chunk, why = said[0]
        more = f" (and {len(said) - 1} more jobs)" if len(said) > 1 else ""
        return f"{why} — job {job.job_id}, point #{chunk[0].num}: {' '.join(filter_overrides(chunk[0].overrides))}{more}"
    job, _, e = failed[0]
    lost = sum(len(c) for _, c, _ in failed)
    return (f"{len(failed)} of {n_jobs} jobs ({lost} points) ended without results, e.g. job {job.job_id}: "
            f"{_why(e)} — relaunch the same command to run them again (finished points are skipped)")


# Hydra instantiates launchers only from the hydra_plugins namespace: the classes that the
# profiles name are thin subclasses in hydra_plugins/mupbench_launcher.
class ChunkedSlurmLauncher(_ChunkedLauncher):
    _EXECUTOR = "slurm"


class ChunkedLocalLauncher(_ChunkedLauncher):
    _EXECUTOR = "local"
