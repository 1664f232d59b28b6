"""The depth rule's coordinate check (issue 12 item 7, as a test on a tiny Transformer): over
model.blocks = 2, 4, 8, 16 (base_blocks 2), the change of the residual stream that enters the
final LayerNorm after a few Adam steps stays flat in depth with CompleteP (α = 1) and depth-μP
(α = ½), and grows about ∝ depth without a depth rule; at init the stream is flat with α set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mupbench.assemble import build_run
from mupbench.config import compose

DEPTHS = (2, 4, 8, 16)


def stream_rms(alpha, blocks: int, steps: int = 5, seeds=(0, 1)) -> tuple[float, float]:
    """(RMS of the stream's change after ``steps`` updates, RMS of the stream at init) on a fixed
    batch, averaged over seeds."""
    out = []
    for seed in seeds:
        run = build_run(compose(["train.device=cpu", "model=transformer", "dataset=synthetic_tokens", "train.batch_size=8",
                                 f"model.blocks={blocks}", "model.base_blocks=2", f"parametrization.depth_alpha={alpha}",
                                 f"seed={seed}", "optimizer.lr=1e-2"]))
        seen = {}
        run.model.ln_f.register_forward_hook(lambda m, args, out: seen.__setitem__("x", args[0].detach()))
        x, _ = run.train_sampler.next()
        with torch.no_grad():
            run.model(x)
        x0 = seen["x"].clone()
        for _ in range(steps):
            bx, by = run.train_sampler.next()
            run.optimizer.zero_grad()
            run.loss_fn(run.model(bx), by).backward()
            run.optimizer.step()
        with torch.no_grad():
            run.model(x)
        out.append(((seen["x"] - x0).pow(2).mean().sqrt().item(), x0.pow(2).mean().sqrt().item()))
    return tuple(np.mean(out, 0))


def slope(values) -> float:
    return float(np.polyfit(np.log(DEPTHS), np.log(values), 1)[0])


@pytest.mark.parametrize("alpha, update_slope", [("null", (0.6, 1.2)), (1.0, (-0.3, 0.3)), (0.5, (-0.3, 0.3))])
def test_updates_are_flat_in_depth_with_a_depth_rule_only(alpha, update_slope):
    rows = [stream_rms(alpha, L) for L in DEPTHS]
    lo, hi = update_slope
    assert lo < slope([r[0] for r in rows]) < hi
    if alpha != "null":
        assert abs(slope([r[1] for r in rows])) < 0.05  # the activations at init, too
