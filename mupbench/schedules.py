"""Learning-rate schedules: a dimensionless multiplier s(t) ∈ [0, 1] on every parameter group's
learning rate (SPEC-AXES §4), so a parameter's lr at step t is k·ρ·s(t) and torch AdamW's
decoupled decay, lr·λ_torch, follows the schedule in every weight-decay mode.

t counts updates from 0; T = train.steps; T_w = round(warmup_frac·T) warmup steps;
r = min_lr_ratio (a ratio of the peak, so a k sweep keeps its shape).

- ``constant``: s = 1 (the paper; the trainer then does no work per step for it).
- ``cosine`` ([NGM-C] train.py:262-274): s = t/T_w for t < T_w; r + ½(1 + cos(π(t − T_w)/(T_e − T_w)))(1 − r)
  for T_w ≤ t ≤ T_e; r after. T_e = T_w + round(decay_frac·T), or T when decay_frac is null.
- ``wsd`` (HF transformers ``_get_wsd_scheduler_lambda``): s = r + (1 − r)·t/T_w for t < T_w; 1 for the
  stable phase; then with T_d = round(decay_frac·T) decay steps ending at T and p = (t − T + T_d)/T_d,
  s = r + (1 − r)·f(p), f = 1 − p (``linear``), ½(1 + cos πp) (``cosine``) or 1 − √p (``1-sqrt``); r after.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from mupbench.rules import ConfigError, Rule, number, one_of

SCHEDULES = ("constant", "cosine", "wsd")
DECAY_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass
class ScheduleConfig:
    name: str = "constant"


@dataclass
class CosineConfig(ScheduleConfig):
    name: str = "cosine"
    warmup_frac: float = 0.0  # linear warmup from 0 over this fraction of train.steps
    decay_frac: Optional[float] = None  # the cosine's length as a fraction of train.steps; null: to the last step
    min_lr_ratio: float = 0.1  # r: the floor, as a ratio of the peak (~ lr/10, nanoGPT's Chinchilla note)


@dataclass
class WSDConfig(ScheduleConfig):
    name: str = "wsd"
    warmup_frac: float = 0.0  # warmup from r to 1 over this fraction of train.steps
    decay_frac: float = 0.2  # the final decay's fraction of train.steps (Hägele et al.: a 20% cooldown)
    decay_shape: str = "1-sqrt"  # linear | cosine | 1-sqrt
    min_lr_ratio: float = 0.0


OPTIONS = {"constant": ScheduleConfig, "cosine": CosineConfig, "wsd": WSDConfig}
FRACTION = number(ge=0, le=1, hint="a fraction of train.steps")
CHECKS = {
    "name": one_of(*SCHEDULES, hint="pick the schedule with the group, schedule=NAME"),
    "warmup_frac": FRACTION,
    "decay_frac": Rule("null or a finite number > 0 and ≤ 1", lambda v: v is None or (isinstance(v, (int, float)) and 0 < v <= 1),
                       "a fraction of train.steps"),
    "decay_shape": one_of(*DECAY_SHAPES),
    "min_lr_ratio": number(ge=0, le=1, hint="the floor as a ratio of the peak lr"),
}


def checks(schema) -> dict[str, Rule]:
    """The rules of one option's keys."""
    return {f: CHECKS[f] for f in schema.__dataclass_fields__}


def register(cs, schema_name: Callable[..., str]) -> None:
    """Store the schemas conf/schedule/<name>.yaml extend (mupbench.config calls it)."""
    for option, node in OPTIONS.items():
        cs.store(name=schema_name("schedule", option), node=node)


def check(sched, steps: int) -> None:
    """The cross-key checks: the phases fit in the run."""
    if sched.name == "constant":
        return
    decay = sched.decay_frac if sched.decay_frac is not None else 1 - sched.warmup_frac
    if sched.warmup_frac + decay > 1 + 1e-12:
        raise ConfigError("schedule.decay_frac", f"warmup_frac {sched.warmup_frac:g} + decay_frac {decay:g} exceed 1 (the whole run); "
                                                 "make them sum to at most 1")


def _f(shape: str, p: float) -> float:
    if shape == "linear":
        return 1 - p
    if shape == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    return 1 - math.sqrt(p)


def multiplier(sched, steps: int) -> Callable[[int], float] | None:
    """s(t) for ``sched`` (the ``schedule`` config node) over a run of ``steps`` updates, or None
    for ``constant`` (s ≡ 1: nothing to apply)."""
    if sched is None or sched.name == "constant":
        return None
    r, T = float(sched.min_lr_ratio), int(steps)
    Tw = round(sched.warmup_frac * T)
    if sched.name == "cosine":
        Te = T if sched.decay_frac is None else Tw + round(sched.decay_frac * T)

        def cosine(t: int) -> float:
            if t < Tw:
                return t / Tw
            if t <= Te:
                return r + 0.5 * (1 + math.cos(math.pi * (t - Tw) / max(Te - Tw, 1))) * (1 - r)
            return r

        return cosine
    if sched.name == "wsd":
        Td, shape = round(sched.decay_frac * T), sched.decay_shape
        Ts = T - Tw - Td

        def wsd(t: int) -> float:
            if t < Tw:
                return r + (1 - r) * t / Tw
            if t < Tw + Ts:
                return 1.0
            if t < T and Td > 0:
                return r + (1 - r) * _f(shape, (t - Tw - Ts) / Td)
            return r

        return wsd
    raise ConfigError("schedule.name", f"{sched.name!r} is not one of {', '.join(SCHEDULES)}")
