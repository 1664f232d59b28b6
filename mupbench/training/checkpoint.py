"""A run's checkpoint.pt: everything needed to continue exactly where it stopped.

One format for single runs and ensemble members (each member writes its own run's file), so either
trainer resumes either. A checkpoint that cannot be used — another config's, or one that fails to
load (truncated, corrupt, missing entries, wrong shapes) — never blocks a run: it is set aside
under a new name, with one warning line, and the run starts from step 0.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from mupbench.fileio import atomic_write
from mupbench.records import CHECKPOINT

log = logging.getLogger("mupbench")


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(device: torch.device, state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save(run, path: Path, step: int, history: list[dict], train_time_s: float, fingerprint: str, rng: dict | None = None) -> None:
    """Write ``run``'s state after ``step`` steps (``rng``: its dropout stream's state; default
    torch's global RNG, which a single run draws its dropout masks from)."""
    state = {
        "fingerprint": fingerprint,
        "step": step,
        "history": history,
        "train_time_s": train_time_s,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "train_sampler": run.train_sampler.state_dict(),
        "val_sampler": run.val_sampler.state_dict(),
        "rng": rng if rng is not None else rng_state(run.device),
    }
    with atomic_write(path) as f:
        torch.save(state, f)


def set_aside(path: Path, why: str) -> Path:
    """Rename an unusable checkpoint out of the way (kept for a post-mortem), with one warning."""
    dest = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
    path.replace(dest)
    log.warning("checkpoint %s cannot be used (%s): set aside as %s; the run starts from step 0", path, why, dest.name)
    return dest


class SetAside(RuntimeError):
    """A checkpoint failed while it was being applied, after the run was partly overwritten: it has
    been set aside, and the caller must assemble the run afresh."""


def _check(state, run) -> None:
    """Refuse a checkpoint whose contents do not fit ``run``, before anything is applied."""
    for key in ("fingerprint", "step", "history", "train_time_s", "model", "optimizer", "train_sampler", "val_sampler", "rng"):
        if key not in state:
            raise KeyError(f"no {key!r} entry")
    own = run.model.state_dict()
    theirs = state["model"]
    if set(theirs) != set(own):
        raise KeyError(f"parameters differ: {sorted(set(theirs) ^ set(own))[:3]}")
    bad = [k for k, v in own.items() if tuple(theirs[k].shape) != tuple(v.shape) or theirs[k].dtype != v.dtype]
    if bad:
        raise ValueError(f"{bad[0]} has shape {tuple(theirs[bad[0]].shape)}, the run has {tuple(own[bad[0]].shape)}")
    opt = state["optimizer"]
    if [len(g["params"]) for g in opt["param_groups"]] != [len(g["params"]) for g in run.optimizer.param_groups]:
        raise ValueError("optimizer parameter groups differ")


def load(run, run_dir: Path, fingerprint: str) -> dict | None:
    """Restore ``run`` from ``run_dir/checkpoint.pt`` and return the checkpoint's state (its
    "step", "history", "train_time_s", "rng"), or None when there is none it can use (an
    unusable one is set aside; raises SetAside if that happened after ``run`` was touched)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=run.device, weights_only=True)
        if not isinstance(state, dict):
            raise TypeError("not a checkpoint")
        if state.get("fingerprint") != fingerprint:
            set_aside(path, "it was written by a different config")
            return None
        _check(state, run)
    except Exception as e:  # noqa: BLE001 — any damage: truncated, not a zip, missing keys, wrong shapes
        set_aside(path, f"{type(e).__name__}: {(str(e).splitlines() or ['unreadable'])[0]}")
        return None
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.train_sampler.load_state_dict(state["train_sampler"])
        run.val_sampler.load_state_dict(state["val_sampler"])
        out = {"step": int(state["step"]), "history": list(state["history"]), "train_time_s": float(state["train_time_s"]),
               "rng": state["rng"]}
    except Exception as e:  # noqa: BLE001
        set_aside(path, f"{type(e).__name__}: {(str(e).splitlines() or ['unreadable'])[0]}")
        raise SetAside(str(path)) from e
    return out


def remove_stale_parts(run_dir: Path) -> None:
    """Temp files of a write that was killed (``.<name>.*.part``, see mupbench.fileio): a
    relaunch removes those of its own run dir."""
    for part in Path(run_dir).glob(".*.part"):
        part.unlink(missing_ok=True)
