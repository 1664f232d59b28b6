"""Every point of a sweep validated before the first run or submission.

A bad value (ζ = 0.5, k ≤ 0, …) found midway leaves a sweep half-run and the rest untried; on a
cluster it is found inside a job, after queueing. So the sweeper (and each launcher, when no
sweeper checked its batch) composes one point per group of points that differ only in plain
seed / k values, sets each point's values on that config and runs ``mupbench.config.validate``
on it: the value checks of the entrypoint itself, for every point, at ~1 ms a point. Problems
are reported one line each (the key and the fix, the first point that has it and how many
more), and nothing runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from mupbench.sweep.grouping import groups_of_jobs

# what each option of conf/budget_arm sets (tests/analysis/test_budget.py holds the arms to it)
ARM_KEYS = ("model.width_mult", "train.steps")


def arm_clash(overrides: Sequence[str]) -> str | None:
    """Why a job's overrides defeat its budget arm, or None. An arm sets its runs' width and steps,
    and an override beats a config group's value: ``train.steps=`` typed beside a budget preset
    would give every arm the same horizon, and the budget comparison would compare nothing."""
    keys = {text.split("=", 1)[0].lstrip("+~"): text for text in overrides}
    if "budget_arm" not in keys:
        return None
    for key in ARM_KEYS:
        if key in keys:
            return (f"{key}: the budget arms (conf/budget_arm/) set each run's {' and '.join(ARM_KEYS)}, and {keys[key]} "
                    f"would replace them in every arm; drop it (a smaller study: the preset's _quick variant, or arms of "
                    f"your own in conf/budget_arm/)")
    return None


def sweep_problems(job_overrides: Sequence[Sequence[str]], compose: Callable[[int], DictConfig], first_num: int = 0) -> list[str]:
    """One line per distinct problem among the jobs (empty: every job is valid). ``compose(i)``
    composes job i (a Hydra composition error is raised as it is: the CLI says it in one line);
    jobs are numbered from ``first_num`` as in the multirun's log."""
    from mupbench.config import ConfigError, validate

    found: dict[str, list[int]] = {}
    for i, overrides in enumerate(job_overrides):
        clash = arm_clash(overrides)
        if clash:
            found.setdefault(clash, []).append(i)
    if found:  # every arm would compose: the clash is the whole sweep's problem
        return _lines(found, job_overrides, first_num)
    parsed, groups = groups_of_jobs(job_overrides)
    for members in groups:
        rep = compose(members[0])
        task = OmegaConf.masked_copy(rep, [k for k in rep.keys() if k != "hydra"])
        for i in members:
            for key, value in parsed[i][1].items():
                OmegaConf.update(task, key, value, merge=False)
            try:
                validate(task)
            except ConfigError as e:
                found.setdefault(str(e), []).append(i)
    return _lines(found, job_overrides, first_num)


def _lines(found: dict[str, list[int]], job_overrides: Sequence[Sequence[str]], first_num: int) -> list[str]:
    from hydra.core.utils import filter_overrides

    lines = []
    for message, jobs in found.items():
        more = f" and {len(jobs) - 1} more point{'s' if len(jobs) > 2 else ''}" if len(jobs) > 1 else ""
        point = " ".join(filter_overrides(job_overrides[jobs[0]]))
        lines.append(f"{message} (point #{first_num + jobs[0]}: {point}{more}; nothing was run)")
    return lines


def refuse(lines: Sequence[str]) -> NoReturn:
    """End the command with the problems, one line each on stderr, and exit status 2 (the CLI's
    one-line error form; a Hydra exception would be folded into a single line)."""
    for line in lines:
        print(f"mupbench: error: {line}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(2)


def check_or_refuse(job_overrides: Sequence[Sequence[str]], compose: Callable[[int], DictConfig], first_num: int = 0) -> None:
    problems = sweep_problems(job_overrides, compose, first_num)
    if problems:
        refuse(problems)


# The sweeper checks a batch before handing it to the launcher; the launcher then knows that
# batch (the same list object) was checked and does not compose it again.
def mark_checked(launcher: Any, batch: Sequence[Sequence[str]]) -> None:
    launcher._mupbench_checked_batch = batch


def was_checked(launcher: Any, batch: Sequence[Sequence[str]]) -> bool:
    return getattr(launcher, "_mupbench_checked_batch", None) is batch
