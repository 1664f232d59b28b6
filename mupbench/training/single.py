"""The single-run stepper: one member, the model's own forward, torch's fused Adam.

Nothing in its step waits for the device: the loss stays a device tensor, which the loop reads
only at evaluations.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mupbench import schedules as S
from mupbench.assemble import Run, autocast
from mupbench.training import checkpoint


class SingleStepper:
    """The loop's stepper for one run (see mupbench.training.loop.Stepper)."""

    mode = "single"

    def __init__(self, run: Run):
        self.run, self.device = run, run.device
        self.size = 1
        self._amp = autocast(run.cfg, run.device)  # bf16 autocast, or a no-op context
        self.ks = [float(run.cfg.optimizer.lr)]  # k (the loop's lr column)
        self.schedule = S.multiplier(run.cfg.get("schedule"), run.cfg.train.steps)
        # each group's k·ρ, from the config (a resumed optimizer's groups hold the lr of its last step)
        self._base_lrs = [self.ks[0] * g["lr_mult"] for g in run.optimizer.param_groups] if self.schedule else []
        run.model.train()

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        return self.run.train_sampler.next()

    def set_lr_scale(self, s: float) -> None:
        """The schedule's s(t) for the next step: each group's lr is k·ρ·s (a Python float: no
        device sync; torch AdamW's decay lr·λ_torch follows)."""
        for g, base in zip(self.run.optimizer.param_groups, self._base_lrs):
            g["lr"] = base * s

    def step(self, batch) -> torch.Tensor:
        run = self.run
        x, y = batch
        with self._amp:
            loss = run.loss_fn(run.model(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        return loss.detach().view(1)

    @torch.no_grad()
    def train_losses(self, batch) -> torch.Tensor:
        x, y = batch
        with self._amp:
            return self.run.loss_fn(self.run.model(x), y).view(1)

    @torch.no_grad()
    def evaluate(self) -> torch.Tensor:
        run, n = self.run, self.run.cfg.train.eval_batches
        run.model.eval()
        total = torch.zeros((), device=run.device, dtype=torch.float64)
        for _ in range(n):
            x, y = run.val_sampler.next()
            with self._amp:
                total += run.loss_fn(run.model(x), y).double()
        run.model.train()
        return (total / n).view(1)

    def save(self, i: int, path: Path, step: int, history: list[dict], train_time_s: float, fingerprint: str) -> None:
        checkpoint.save(self.run, path, step, history, train_time_s, fingerprint)

    def drop(self, keep: list[int]) -> None:
        self.size = len(keep)
