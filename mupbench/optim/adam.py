"""Adam, written once: the foreach update and the fused call that every Adam in mupbench runs.

``adam_foreach`` is ``torch.optim.adam._multi_tensor_adam``'s update (no weight decay, no
amsgrad) in its order of operations, with a step size per tensor: a float per tensor (a single
run's parameter groups: ``_foreach_addcdiv_`` as torch calls it) or a tensor broadcasting against
it (an ensemble's (M, 1, …) per-member step sizes: s·m, ÷ denominator, + — addcdiv's order of
operations on CPU). ``fused_adam`` is the one call of ``torch._fused_adam_``, the kernel
torch.optim.Adam(fused=True) runs.

``LeanAdam`` (single runs) steps torch.optim.Adam's state through either; the stacked Adams of
an ensemble (``mupbench.optim.stacked``) do the same on tensors with a leading member axis.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

Floats = Sequence[float]


def bias_corrections(beta1: float, beta2: float, step: float) -> tuple[float, float]:
    """(1 − β1^t, √(1 − β2^t)) in double, as torch.optim.Adam computes them."""
    return 1 - beta1**step, (1 - beta2**step) ** 0.5


def adam_moments(grads, exp_avgs, exp_avg_sqs, *, beta1: float, beta2: float) -> None:
    """m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g² (torch's foreach operations)."""
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)


def decay_(params, factors) -> None:
    """θ ← θ·f, torch AdamW's decoupled weight decay (f = 1 − lr·λ_torch, in double, rounded once
    to the parameter dtype): a float or a broadcasting tensor per tensor, None for no decay."""
    pairs = [(p, f) for p, f in zip(params, factors) if f is not None]
    if pairs:
        torch._foreach_mul_([p for p, _ in pairs], [f for _, f in pairs])


def adam_foreach(params, grads, exp_avgs, exp_avg_sqs, step_sizes, *, beta1: float, beta2: float, eps,
                 bias_correction2_sqrt: float, decay=None) -> None:
    """One Adam update of every tensor in the lists, in place: torch.optim.adam._multi_tensor_adam's
    operations in its order (AdamW's when ``decay`` is given).

    ``step_sizes[i]`` is −lr/(1 − β1^t) for tensor i: floats, or tensors that broadcast against
    it (rounded to its dtype by the caller). ``eps``: one float, or one per tensor. ``decay``:
    ``decay_``'s factors, one per tensor."""
    if decay is not None:
        decay_(params, decay)
    adam_moments(grads, exp_avgs, exp_avg_sqs, beta1=beta1, beta2=beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, eps if isinstance(eps, (int, float)) else list(eps))
    if all(isinstance(s, float) for s in step_sizes):
        torch._foreach_addcdiv_(params, exp_avgs, denom, list(step_sizes))
    else:
        update = torch._foreach_mul(exp_avgs, list(step_sizes))
        torch._foreach_div_(update, denom)  # (s·m)/d: addcdiv's order of operations
        torch._foreach_add_(params, update)


def fused_adam(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr: float, beta1: float, beta2: float, eps: float,
               weight_decay: float = 0.0) -> None:
    """torch's fused kernel on the lists (each element its own tensor), ``steps`` already advanced:
    the update of torch.optim.Adam(fused=True), or AdamW(fused=True) with λ_torch = ``weight_decay``."""
    kernel = torch._fused_adamw_ if weight_decay else torch._fused_adam_
    kernel(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=lr, beta1=beta1, beta2=beta2,
           weight_decay=weight_decay, eps=eps, maximize=False, grad_scale=None, found_inf=None)


@functools.cache
def cpu_fused_adam() -> bool:
    """Whether this torch has the fused Adam kernel for CPU (2.4 and later); probed once per process."""
    try:
        p = torch.zeros(1, requires_grad=True)
        p.grad = torch.zeros(1)
        torch.optim.Adam([p], fused=True).step()
        return True
    except RuntimeError:
        return False


class LeanAdam(torch.optim.Adam):
    """torch.optim.Adam's math, state and state_dict, without its per-step Python work.

    torch.optim.Adam.step re-discovers every parameter's state, regroups the tensors by device
    and dtype and calls the update once per parameter group, every step. For the small networks
    of a μP sweep that bookkeeping costs more than the arithmetic, and μP pays it twice (its
    parameters fall into two learning-rate groups where SP has one). ``LeanAdam`` builds the
    tensor lists once and then, per step:

    - ``fused``: one ``fused_adam`` call per group (CPU and CUDA): bitwise torch.optim.Adam(fused=True);
    - ``foreach``: every group in one ``adam_foreach``, each tensor with its own step size
      (−lr/(1 − β1^t)): bitwise torch.optim.Adam(foreach=True), and μP costs what SP costs.

    State (``step``, ``exp_avg``, ``exp_avg_sq``) and ``state_dict`` are torch.optim.Adam's, so
    checkpoints load in either. ε and weight decay may differ per group; weight decay is
    decoupled (``decoupled_weight_decay=True``: bitwise torch.optim.AdamW). Closures, amsgrad, L2
    weight decay, maximize, complex or sparse parameters, and parameters without a gradient fall
    back to torch.optim.Adam.step.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, impl: str = "fused",
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False):
        if impl not in ("fused", "foreach"):
            raise ValueError(f"LeanAdam impl {impl!r}: choose fused or foreach")
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=impl == "fused",
                         foreach=impl == "foreach", decoupled_weight_decay=decoupled_weight_decay)
        self.impl = impl
        self._lists: list[tuple[list, list, list, list]] | None = None

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._lists = None  # the state tensors were replaced

    def _lean_ok(self) -> bool:
        return all(
            not g["amsgrad"] and not g["maximize"] and (g["weight_decay"] == 0 or g.get("decoupled_weight_decay", False))
            and not g["differentiable"] and not g["capturable"]
            and all(p.grad is not None and not p.grad.is_sparse and not torch.is_complex(p) for p in g["params"])
            for g in self.param_groups
        )

    def _build(self) -> None:
        """Each group's (params, exp_avgs, exp_avg_sqs, steps), creating state as torch.optim.Adam does."""
        self._lists = []
        for g in self.param_groups:
            lists: tuple[list, list, list, list] = ([], [], [], [])
            for p in g["params"]:
                state = self.state[p]
                if not state:
                    fused = self.impl == "fused"
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu")
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                for lst, t in zip(lists, (p, state["exp_avg"], state["exp_avg_sq"], state["step"])):
                    lst.append(t)
            self._lists.append(lists)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not self._lean_ok():
            self._lists = None
            return super().step(closure)
        if self._lists is None:
            self._build()
        if self.impl == "fused":
            for g, (params, exp_avgs, exp_avg_sqs, steps) in zip(self.param_groups, self._lists):
                torch._foreach_add_(steps, 1)
                fused_adam(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, steps, lr=g["lr"], beta1=g["betas"][0],
                           beta2=g["betas"][1], eps=g["eps"], weight_decay=g["weight_decay"])
            return None
        self._foreach_step()
        return None

    def _foreach_step(self) -> None:
        """All groups in one ``adam_foreach``, with per-tensor step sizes, ε and decay."""
        g0 = self.param_groups[0]
        if any(g["betas"] != g0["betas"] for g in self.param_groups):
            raise ValueError("LeanAdam(foreach) needs the same betas in every group")
        params, exp_avgs, exp_avg_sqs, steps, lrs, eps, decay = [], [], [], [], [], [], []
        for g, (p, m, v, s) in zip(self.param_groups, self._lists):
            params += p
            exp_avgs += m
            exp_avg_sqs += v
            steps += s
            lrs += [g["lr"]] * len(p)
            eps += [g["eps"]] * len(p)
            decay += [1 - g["lr"] * g["weight_decay"] if g["weight_decay"] else None] * len(p)
        beta1, beta2 = g0["betas"]
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
        bias_correction1, bias_correction2_sqrt = bias_corrections(beta1, beta2, steps[0].item())  # every parameter took every step
        adam_foreach(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [(lr / bias_correction1) * -1 for lr in lrs],
                     beta1=beta1, beta2=beta2, eps=eps, bias_correction2_sqrt=bias_correction2_sqrt,
                     decay=decay if any(f is not None for f in decay) else None)
