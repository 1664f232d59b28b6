"""The training schedule, written once for a single run and for a stacked ensemble.

SPEC §4: every ``eval_every`` steps, before that step's update, the train loss is the current
mini-batch's loss (train mode) and the val loss the mean over ``eval_batches`` val mini-batches
(eval mode); one more evaluation follows the last update. Inside the step nothing waits for the
device: every step's losses go into a device-side buffer that is read only at evaluations and
checkpoints, where the first non-finite loss of each member (if any) is found and that member is
recorded as diverged at that exact step and dropped.

A stepper is anything with ``size`` (members left), ``next_batch()``, ``step(batch) -> (M,)``
pre-update losses, ``train_losses(batch) -> (M,)`` (no update), ``evaluate() -> (M,)``,
``save(i, path, step, history, train_time_s, fingerprint)``, ``drop(keep)``, ``ks`` (each member's
k) and ``schedule`` (s(t), or None for a constant lr) with ``set_lr_scale(s)``: a single run is
one member (mupbench.training.single), an ensemble M (mupbench.training.stacked).

The schedule is applied here, once for both: before each update the stepper's lrs become
k·ρ·s(t); each history row's ``lr`` is k·s(t), the base lr of that step's update (the final
evaluation's: s(T)).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mupbench.records import CHECKPOINT
from mupbench.trackers.progress import Progress

log = logging.getLogger("mupbench")


@dataclass
class Member:
    """One run's side of the loop: where it checkpoints, and what it brings from a resume."""

    run_dir: Path | None
    fingerprint: str = ""
    history: list[dict] = field(default_factory=list)
    prior_time_s: float = 0.0  # training time of earlier sessions (resumes)
    resumed_from: int | None = None
    on_eval: Callable[[dict], None] | None = None  # called with each history row as it is written


@dataclass
class Outcome:
    status: str  # completed | diverged
    history: list[dict]
    steps_done: int
    diverged_step: int | None
    train_time_s: float  # accumulated over every session of the run (resumes included)
    session_steps: int  # steps done by this process
    session_time_s: float
    resumed_from: int | None = None


def train(stepper, members: list[Member], train_cfg, start: int = 0) -> list[Outcome]:
    """Train every member from step ``start`` to ``train_cfg.steps``; one Outcome per member."""
    t = train_cfg
    outcomes: list[Outcome | None] = [None] * len(members)
    ids = list(range(len(members)))  # stepper position → member number
    losses = torch.full((t.steps + 1, len(members)), float("nan"), device=stepper.device, dtype=torch.float32)
    checked = start  # steps below this are known to have finite losses
    schedule = getattr(stepper, "schedule", None)  # s(t) (mupbench.schedules), None for the constant lr
    t0 = time.perf_counter()

    def finish(positions: list[int], status: str, steps_done: list[int]) -> None:
        now = time.perf_counter() - t0
        for p, s in zip(positions, steps_done):
            m = members[ids[p]]
            outcomes[ids[p]] = Outcome(status, m.history, s, s if status == "diverged" else None, m.prior_time_s + now,
                                       s - start, now, m.resumed_from)

    def drop(positions: list[int]) -> None:
        nonlocal losses, ids
        keep = [p for p in range(len(ids)) if p not in set(positions)]
        ids = [ids[p] for p in keep]
        losses = losses[:, keep]
        stepper.drop(keep)

    def check(hi: int) -> None:
        """Record and drop the members with a non-finite loss in [checked, hi) (one host sync)."""
        nonlocal checked
        if hi > checked:
            bad = ~torch.isfinite(losses[checked:hi])
            any_bad = bad.any(0).tolist()
            if any(any_bad):
                first = (bad.int().argmax(0) + checked).tolist()
                positions = [p for p, b in enumerate(any_bad) if b]
                finish(positions, "diverged", [first[p] for p in positions])
                drop(positions)
        checked = hi

    # a live bar on a terminal, the usual rate-limited log lines elsewhere (SLURM logs stay readable)
    with Progress(t.steps, start, members=len(members), log_every_s=t.log_every_s) as progress:
        for step in range(start, t.steps + 1):
            is_eval = step % t.eval_every == 0 or step == t.steps
            s = 1.0 if schedule is None else schedule(step)
            if schedule is not None and step < t.steps:
                stepper.set_lr_scale(s)  # this step's lrs: k·ρ·s(t), in every parameter group / member
            if is_eval:
                check(step)
                if not ids:
                    break
                val = stepper.evaluate()
            batch = stepper.next_batch()
            if step == t.steps:  # the final evaluation: the batch's loss, no update
                step_losses = stepper.train_losses(batch)
            else:
                step_losses = stepper.step(batch)
                losses[step] = step_losses
            if is_eval:
                train_losses, val_losses = step_losses.tolist(), val.tolist()
                elapsed = time.perf_counter() - t0
                bad = []
                for p, i in enumerate(ids):
                    row = {"step": step, "train_loss": train_losses[p], "val_loss": val_losses[p],
                           "elapsed_s": round(members[i].prior_time_s + elapsed, 3), "lr": stepper.ks[p] * s}
                    members[i].history.append(row)
                    if members[i].on_eval is not None:
                        members[i].on_eval(row)
                    if not (math.isfinite(train_losses[p]) and math.isfinite(val_losses[p])):
                        bad.append(p)
                progress.eval(step, train_losses, val_losses)
                if bad:
                    finish(bad, "diverged", [step] * len(bad))
                    drop(bad)
                    if not ids:
                        break
            if step == t.steps:
                break
            if t.ckpt_every and (step + 1) % t.ckpt_every == 0 and step + 1 < t.steps and any(m.run_dir for m in members):
                check(step + 1)
                if not ids:
                    break
                elapsed = time.perf_counter() - t0
                for p, i in enumerate(ids):
                    m = members[i]
                    if m.run_dir is not None:
                        stepper.save(p, Path(m.run_dir) / CHECKPOINT, step + 1, m.history, m.prior_time_s + elapsed, m.fingerprint)
    finish([p for p, i in enumerate(ids) if outcomes[i] is None], "completed", [t.steps] * len(ids))
    return outcomes  # type: ignore[return-value]

