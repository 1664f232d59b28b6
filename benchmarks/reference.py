"""The baseline: a plain-PyTorch training loop, the way the paper's code trains.

The same model (built by mupbench.models, plain nn.Modules; the MLP is an nn.Sequential) with
PyTorch's default init, ``torch.optim.Adam`` with default settings (on CPU that is the for-loop
implementation), random mini-batches drawn in a Python loop with no DataLoader, and SPEC §4's
evaluation: every ``eval_every`` steps, before that step's update, the current batch's loss and
the mean of ``eval_batches`` val batches, each read with ``.item()``.

As a script it is one MLP run in one process (the paper's shell loops start one process per run):
    python benchmarks/reference.py --width-mult 4 --steps 2000
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


class Reference:
    """Model, optimizer and data of one reference run; ``train(steps)`` runs the loop."""

    def __init__(self, model, splits, lr: float, batch_size: int, eval_every: int = 200, eval_batches: int = 10,
                 weight_decay: float = 0.0, schedule=None):
        self.model, self.device = model, next(model.parameters()).device
        params = self.model.parameters()
        # with weight decay, what a user writes: torch.optim.AdamW on every parameter
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) if weight_decay else torch.optim.Adam(params, lr=lr)
        self.schedule = schedule  # a `schedule` config node: stepped each update with LambdaLR
        self.train_data, self.val_data = splits.train, splits.val
        self.task, self.context = splits.spec.task, splits.spec.input_shape[0]
        self.batch_size, self.eval_every, self.eval_batches = batch_size, eval_every, eval_batches

    @classmethod
    def from_config(cls, cfg, splits, device: torch.device | None = None, seed: int = 0) -> Reference:
        """The reference run of a mupbench config: its model with PyTorch's default init."""
        from mupbench.assemble import attention_scale
        from mupbench.models import model_module

        torch.manual_seed(seed)
        model = model_module(cfg.model.name).build(cfg.model, splits.spec, attention_scale(cfg)).to(device or torch.device("cpu"))
        t = cfg.train
        return cls(model, splits, float(cfg.optimizer.lr), t.batch_size, t.eval_every, t.eval_batches,
                   float(cfg.optimizer.get("weight_decay", 0.0)), cfg.get("schedule"))

    def batch(self, data):
        if self.task == "lm":
            (ids,) = data
            offsets = torch.randint(ids.numel() - self.context, (self.batch_size,), device=ids.device)
            window = torch.stack([ids[o : o + self.context + 1] for o in offsets.tolist()])
            return window[:, :-1], window[:, 1:]
        idx = torch.randint(data[0].shape[0], (self.batch_size,), device=data[0].device)
        return data[0][idx], data[1][idx]

    def loss(self, out, y):
        if self.task == "regression":
            return F.mse_loss(out, y)
        if self.task == "lm":
            return F.cross_entropy(out.flatten(0, 1), y.flatten())
        return F.cross_entropy(out, y)

    def train(self, steps: int) -> list[tuple[int, float, float]]:
        from mupbench.schedules import multiplier  # only the shape s(t); the plumbing is torch's

        model, opt = self.model, self.optimizer
        shape = multiplier(self.schedule, steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, shape) if shape else None
        history = []
        model.train()
        for step in range(steps + 1):
            is_eval = step % self.eval_every == 0 or step == steps
            if is_eval:
                model.eval()
                with torch.no_grad():
                    val = sum(self.loss(model(x), y).item() for x, y in (self.batch(self.val_data) for _ in range(self.eval_batches)))
                model.train()
            x, y = self.batch(self.train_data)
            loss = self.loss(model(x), y)
            if is_eval:
                history.append((step, loss.item(), val / self.eval_batches))
            if step == steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            if scheduler:
                scheduler.step()
        return history


def main() -> None:
    """One MLP run as the paper's code runs it: no Hydra, no config system, one process."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--flush-denormal", action="store_true", help="flush CPU denormals to zero (as train.flush_denormal=true)")
    p.add_argument("--california", default=None, help="a folder with California Housing (else the synthetic regression data)")
    a = p.parse_args()
    t0 = time.perf_counter()
    from mupbench.models import mlp

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.set_flush_denormal(a.flush_denormal)
    if a.california:
        from mupbench.data import california_housing as data

        splits = data.load(data.Config(root=a.california), torch.device(a.device))
    else:
        from mupbench.data import synthetic as data

        splits = data.load(data.Config(), torch.device(a.device))
    torch.manual_seed(a.seed)
    model = mlp.build(mlp.Config(width_mult=a.width_mult), splits.spec).to(a.device)
    history = Reference(model, splits, a.lr, batch_size=16).train(a.steps)
    print(f"reference run: {a.steps} steps, last val loss {history[-1][2]:.4g}, {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
