"""Training progress where a person watches (issue 15 item 5): a live bar with rate and ETA when
stderr is a terminal (tqdm), and the usual log lines elsewhere — the first and the last
evaluation and at most one line per ``log_every_s`` between — so SLURM logs stay readable.

    with Progress(cfg.train.steps, start, members=len(members), log_every_s=t.log_every_s) as progress:
        ...                      # each step: progress.advance(step + 1)   (cheap; optional)
        progress.eval(step, train_losses, val_losses)   # at each evaluation

``MUPBENCH_PROGRESS=log`` forces log lines, ``=bar`` a bar. Without tqdm installed: log lines.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from typing import IO, Sequence

log = logging.getLogger("mupbench")


def fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe(train: Sequence[float], val: Sequence[float]) -> str:
    """One run's losses, or an ensemble's median val loss and its size."""
    if len(val) == 1:
        return f"train {train[0]:.4g}  val {val[0]:.4g}"
    finite = sorted(v for v in val if math.isfinite(v))
    median = f"{finite[len(finite) // 2]:.4g}" if finite else "nan"
    return f"{len(val)} members  median val {median}"


def wants_bar(stream: IO) -> bool:
    choice = os.environ.get("MUPBENCH_PROGRESS", "auto")
    if choice in ("bar", "log"):
        return choice == "bar"
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """A bar on a terminal, rate-limited log lines elsewhere; see the module docstring."""

    def __init__(self, steps: int, start: int = 0, *, members: int = 1, log_every_s: float = 5.0,
                 desc: str = "train", stream: IO | None = None):
        self.steps, self.start, self.log_every_s = steps, start, log_every_s
        self.t0 = time.perf_counter()
        self.last_log = -math.inf
        self.bar = None
        self._redirect = contextlib.nullcontext()
        stream = stream if stream is not None else sys.stderr
        if wants_bar(stream):
            try:
                from tqdm import tqdm
                from tqdm.contrib.logging import logging_redirect_tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                label = f"{desc} ({members} members)" if members > 1 else desc
                self.bar = tqdm(total=steps, initial=start, desc=label, unit="step", file=stream, dynamic_ncols=True,
                                mininterval=0.5, smoothing=0.05)
                self._redirect = logging_redirect_tqdm(loggers=[log])  # log lines print above the bar

    def __enter__(self) -> Progress:
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._redirect.__exit__(*exc)

    def advance(self, step: int) -> None:
        """Steps done so far (between evaluations; a bar only)."""
        if self.bar is not None and step > self.bar.n:
            self.bar.update(step - self.bar.n)

    def eval(self, step: int, train: Sequence[float], val: Sequence[float]) -> None:
        """An evaluation at ``step`` with each member's train and val loss."""
        now = time.perf_counter()
        if self.bar is not None:
            self.advance(step)
            self.bar.set_postfix_str(describe(train, val), refresh=True)
            return
        if now - self.last_log < self.log_every_s and step not in (self.start, self.steps):
            return
        self.last_log = now
        rate = (step - self.start) / max(now - self.t0, 1e-9)
        eta = fmt_eta((self.steps - step) / rate) if rate > 0 else "?"
        log.info("step %d/%d  %s  %.0f steps/s  ETA %s", step, self.steps, describe(train, val), rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
