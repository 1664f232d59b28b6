"""Adam-atan2, the ε-free Adam of Everett et al. 2024, in the form of lucidrains/adam-atan2-pytorch
(SPEC-AXES §1, [LUC]): Adam's moments (``adam_moments``), then

    θ ← θ·(1 − lr·λ_torch) − lr·a·atan2(m̂, b·√v̂),   m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t)

(defaults a = 1.27, b = 1). atan2(c·y, c·x) = atan2(y, x) for c > 0: the update does not change
with the gradient's scale, so no per-role ε is needed. ``AdamAtan2`` steps a single run,
``StackedAdamAtan2`` an ensemble (per-member lr and λ_torch); both through ``atan2_foreach``, so a
member is its single run to the last bit.
"""

from __future__ import annotations

import torch

from mupbench.optim.adam import adam_moments, decay_
from mupbench.optim.stacked_adam import StackedAdam


def _each(x, n: int) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x] * n


def atan2_foreach(params, grads, exp_avgs, exp_avg_sqs, step_sizes, *, beta1: float, beta2: float, b,
                  bias_correction1, bias_correction2, decay=None) -> None:
    """One Adam-atan2 update of every tensor in the lists, in place. ``step_sizes[i]`` = −lr·a for
    tensor i (floats, or tensors that broadcast against it); ``b`` and the bias corrections
    (1 − β^t, in double): one float or one per tensor; ``decay``: ``decay_``'s factors."""
    n = len(params)
    adam_moments(grads, exp_avgs, exp_avg_sqs, beta1=beta1, beta2=beta2)
    den = torch._foreach_mul(exp_avg_sqs, [bb * bb / c for bb, c in zip(_each(b, n), _each(bias_correction2, n))])
    torch._foreach_sqrt_(den)  # b·√v̂
    update = torch._foreach_mul(exp_avgs, [1.0 / c for c in _each(bias_correction1, n)])  # m̂
    for u, d in zip(update, den):
        u.atan2_(d)
    if decay is not None:
        decay_(params, decay)
    torch._foreach_mul_(update, list(step_sizes))
    torch._foreach_add_(params, update)


class AdamAtan2(torch.optim.Optimizer):
    """Adam-atan2 for a single run; per-group lr, a, b and weight_decay (λ_torch, decoupled as
    torch AdamW's). State per parameter as torch.optim.Adam's (``step``, ``exp_avg``,
    ``exp_avg_sq``), so an ensemble member's state converts the same way."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), a: float = 1.27, b: float = 1.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), a=a, b=b, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        g0 = self.param_groups[0]
        if any(tuple(g["betas"]) != tuple(g0["betas"]) for g in self.param_groups):
            raise ValueError("AdamAtan2 needs the same betas in every group")
        beta1, beta2 = g0["betas"]
        lists: dict[str, list] = {k: [] for k in ("p", "g", "m", "v", "step", "size", "b", "decay")}
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                for k, x in (("p", p), ("g", p.grad), ("m", state["exp_avg"]), ("v", state["exp_avg_sq"]), ("step", state["step"]),
                             ("size", -g["lr"] * g["a"]), ("b", g["b"]), ("decay", 1 - g["lr"] * g["weight_decay"] if g["weight_decay"] else None)):
                    lists[k].append(x)
        if not lists["p"]:
            return loss
        torch._foreach_add_(lists["step"], 1.0)
        steps = [s.item() for s in lists["step"]]
        atan2_foreach(lists["p"], lists["g"], lists["m"], lists["v"], lists["size"], beta1=beta1, beta2=beta2, b=lists["b"],
                      bias_correction1=[1 - beta1**t for t in steps], bias_correction2=[1 - beta2**t for t in steps],
                      decay=lists["decay"] if any(d is not None for d in lists["decay"]) else None)
        return loss


class StackedAdamAtan2(StackedAdam):
    """Adam-atan2 on stacked parameters: StackedAdam's state, blocks, select and member states,
    with ``atan2_foreach`` as the update (step size −lr·a per member, in double, rounded once)."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas, a: float = 1.27, b: float = 1.0, step: int = 0,
                 weight_decay: torch.Tensor | None = None):
        super().__init__(params, lrs, betas, 0.0, step, weight_decay)
        self.a, self.b = float(a), float(b)

    def _per_member(self, params: list[torch.Tensor]) -> list[tuple]:
        t = float(self.t)
        self._bias_correction1, self._bias_correction2 = 1 - self.beta1**t, 1 - self.beta2**t
        return self._with_decay(params, -self.lrs * self.a)

    def _update(self, js: list[int], ps, gs, ms, vs, per: list[tuple]) -> None:
        decay = [d for _, d in per]
        atan2_foreach(ps, gs, ms, vs, [s for s, _ in per], beta1=self.beta1, beta2=self.beta2, b=self.b,
                      bias_correction1=self._bias_correction1, bias_correction2=self._bias_correction2,
                      decay=decay if any(d is not None for d in decay) else None)
