"""The training loop: steps, evaluations, divergence, checkpoints.

Evaluation follows SPEC §4: every ``eval_every`` steps, before that step's update, the train
loss is the current mini-batch's loss (train mode) and the val loss the mean over
``eval_batches`` val mini-batches (eval mode); one more evaluation follows the last update.
Inside the step nothing waits for the device: every step's loss goes into a device-side
buffer that is read only at evaluations, where the first non-finite loss (if any) is found
and the run stops as diverged at that exact step.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mupbench.assemble import Run, autocast
from mupbench.fileio import atomic_write
from mupbench.records import CHECKPOINT

log = logging.getLogger("mupbench")


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


@torch.no_grad()
def evaluate(run: Run) -> float:
    run.model.eval()
    total = torch.zeros((), device=run.device, dtype=torch.float64)
    for _ in range(run.cfg.train.eval_batches):
        x, y = run.val_sampler.next()
        with autocast(run.cfg, run.device):
            total += run.loss_fn(run.model(x), y).double()
    run.model.train()
    return (total / run.cfg.train.eval_batches).item()


def _rng_state(run: Run) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if run.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def _set_rng_state(run: Run, state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], run.device)


def save_checkpoint(run: Run, path: Path, step: int, history: list[dict], train_time_s: float, fingerprint: str) -> None:
    state = {
        "fingerprint": fingerprint,
        "step": step,
        "history": history,
        "train_time_s": train_time_s,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "train_sampler": run.train_sampler.state_dict(),
        "val_sampler": run.val_sampler.state_dict(),
        "rng": _rng_state(run),
    }
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(run: Run, path: Path, fingerprint: str) -> dict | None:
    """Restore a run from ``path``; a checkpoint of another config is ignored (and reported)."""
    if not path.exists():
        return None
    state = torch.load(path, map_location=run.device, weights_only=True)
    if state["fingerprint"] != fingerprint:
        log.warning("ignoring %s: it was written by a different config", path)
        return None
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.train_sampler.load_state_dict(state["train_sampler"])
    run.val_sampler.load_state_dict(state["val_sampler"])
    _set_rng_state(run, state["rng"])
    return state


def _first_nonfinite(losses: torch.Tensor, lo: int, hi: int) -> int | None:
    """The first step in [lo, hi) whose training loss is not finite (one host sync)."""
    if hi <= lo:
        return None
    bad = ~torch.isfinite(losses[lo:hi])
    return lo + int(bad.int().argmax()) if bool(bad.any()) else None


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(run: Run, run_dir: Path | None = None, fingerprint: str = "") -> Outcome:
    """Train ``run`` for ``cfg.train.steps`` steps; resume from ``run_dir/checkpoint.pt`` if any."""
    t = run.cfg.train
    model, opt, loss_fn, sampler = run.model, run.optimizer, run.loss_fn, run.train_sampler
    ckpt_path = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    start, history, prior_time = 0, [], 0.0
    resumed_from = None
    if ckpt_path is not None and t.ckpt_every:
        state = load_checkpoint(run, ckpt_path, fingerprint)
        if state is not None:
            start, history, prior_time = state["step"], state["history"], state["train_time_s"]
            resumed_from = start
            log.info("resuming from %s at step %d", ckpt_path, start)
    losses = torch.full((t.steps + 1,), float("nan"), device=run.device, dtype=torch.float32)
    amp = autocast(run.cfg, run.device)  # bf16 autocast, or a no-op context
    checked = start  # steps below this are known to have finite losses
    model.train()
    t0 = last_log = time.perf_counter()

    def elapsed() -> float:
        return prior_time + time.perf_counter() - t0

    def outcome(status: str, steps_done: int, diverged_step: int | None) -> Outcome:
        return Outcome(status, history, steps_done, diverged_step, elapsed(), steps_done - start, time.perf_counter() - t0, resumed_from)

    for step in range(start, t.steps + 1):
        is_eval = step % t.eval_every == 0 or step == t.steps
        if is_eval:
            bad = _first_nonfinite(losses, checked, step)
            if bad is not None:
                return outcome("diverged", bad, bad)
            checked = step
            val_loss = evaluate(run)
        x, y = sampler.next()
        with amp:
            loss = loss_fn(model(x), y)
        if is_eval:
            train_loss = loss.item()
            history.append({"step": step, "train_loss": train_loss, "val_loss": val_loss, "elapsed_s": round(elapsed(), 3)})
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                return outcome("diverged", step, step)
            now = time.perf_counter()
            if now - last_log >= t.log_every_s or step in (start, t.steps):
                rate = (step - start) / max(now - t0, 1e-9)
                eta = (t.steps - step) / rate if rate > 0 else float("nan")
                log.info(
                    "step %d/%d  train %.4g  val %.4g  %.0f steps/s  ETA %s",
                    step, t.steps, train_loss, val_loss, rate, _fmt_eta(eta) if math.isfinite(eta) else "?",
                )
                last_log = now
        if step == t.steps:
            break  # the final evaluation: no update follows it
        losses[step] = loss.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ckpt_path is not None and t.ckpt_every and (step + 1) % t.ckpt_every == 0 and step + 1 < t.steps:
            bad = _first_nonfinite(losses, checked, step + 1)
            if bad is not None:
                return outcome("diverged", bad, bad)
            checked = step + 1
            save_checkpoint(run, ckpt_path, step + 1, history, elapsed(), fingerprint)
    return outcome("completed", t.steps, None)
