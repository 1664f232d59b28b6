"""Adam on an ensemble's stacked parameters (leading member axis), each member with its own
learning rates, through the single run's own math (``mupbench.optim.adam``).

``lrs`` is an (M, P) float64 tensor: member i, parameter j → k_i × lr_mult_j. It may be replaced
or changed in place (a frozen member's row set to zero); the optimizers read it at each step.
State is one stacked exp_avg and exp_avg_sq per parameter; ``member_state(i)`` /
``load_member(i, …)`` convert member i's to and from torch.optim.Adam states.
"""

from __future__ import annotations

import torch

from mupbench.optim.adam import adam_foreach, bias_corrections, fused_adam
from mupbench.optim.members import Plan, aligned, per_member, plan

CHUNK = 2**16  # elements per block of a large tensor's update: its p, g, m, v and temporaries stay in cache


class StackedAdam:
    """torch.optim.Adam (no weight decay, no amsgrad) per member: ``adam_foreach`` with the step
    size −lr/(1 − β1^t) per member, computed in double and rounded once to the parameter dtype
    (bitwise torch.optim.Adam(foreach=True) on CPU). On CPU a tensor of more than ``CHUNK``
    elements is updated one cache-sized block at a time (every operation on a block before the
    next block); on CUDA every block would be a kernel launch, so there one call covers all."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas, eps: float, step: int = 0):
        self.lrs = lrs
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.t = float(eps), step
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.t += 1
        bias_correction1, bias_correction2_sqrt = bias_corrections(self.beta1, self.beta2, float(self.t))
        step_size = (self.lrs / bias_correction1 * -1).to(params[0].dtype)  # (M, P)
        sizes = [per_member(step_size[:, j], p) for j, p in enumerate(params)]
        kw = dict(beta1=self.beta1, beta2=self.beta2, eps=self.eps, bias_correction2_sqrt=bias_correction2_sqrt)
        on_cpu = params[0].device.type == "cpu"
        large = [j for j, p in enumerate(params) if on_cpu and p.numel() > CHUNK]
        small = [j for j in range(len(params)) if j not in large]
        if small:  # few elements: one foreach call per operation over all of them
            adam_foreach(*([t[j] for j in small] for t in (params, grads, self.exp_avg, self.exp_avg_sq, sizes)), **kw)
        for j in large:
            for blk in _blocks(params[j]):
                adam_foreach([params[j][blk]], [grads[j][blk]], [self.exp_avg[j][blk]], [self.exp_avg_sq[j][blk]],
                             [sizes[j][blk[0]]], **kw)

    def select(self, keep) -> None:
        self.lrs = self.lrs[keep]
        self.exp_avg = [m[keep] for m in self.exp_avg]
        self.exp_avg_sq = [v[keep] for v in self.exp_avg_sq]

    def load_member(self, i: int, state: list[dict]) -> None:
        """Member ``i``'s tensors from torch.optim.Adam states, one per parameter in plan order."""
        for j, s in enumerate(state):
            self.exp_avg[j][i].copy_(s["exp_avg"])
            self.exp_avg_sq[j][i].copy_(s["exp_avg_sq"])

    def member_state(self, i: int) -> list[dict]:
        """Member ``i``'s torch.optim.Adam states (copies), one per parameter in plan order."""
        step = torch.tensor(float(self.t), dtype=torch.float32)
        return [{"step": step.clone(), "exp_avg": m[i].clone(), "exp_avg_sq": v[i].clone()} for m, v in zip(self.exp_avg, self.exp_avg_sq)]


def _blocks(p: torch.Tensor) -> list[tuple[slice, ...]]:
    """Index tuples covering stacked ``p`` in about ``CHUNK``-element blocks: whole members, or
    rows within one member (any strides: gradients may be transposed)."""
    M, per = p.shape[0], p[0].numel()
    if per <= CHUNK:
        return [(slice(a, a + CHUNK // per),) for a in range(0, M, CHUNK // per)]
    rows = max(1, CHUNK // (per // p.shape[1]))
    return [(slice(a, a + 1), slice(r, r + rows)) for a in range(M) for r in range(0, p.shape[1], rows)]


class StackedFusedAdam(StackedAdam):
    """The same Adam through ``fused_adam`` (what single runs use by default on CPU): one call
    per distinct learning rate, whose tensors are pieces of the stacked ones laid out so that
    each member's update is bitwise torch.optim.Adam(fused=True) on that member alone
    (``mupbench.optim.members``: a member whose size leaves a vector tail is its own view,
    others share slices with their equal-lr neighbours). Members marked dead (``alive``) are
    left out of the calls; knowing who is alive needs the host, so this is for CPU (on CUDA an
    ensemble uses StackedAdam)."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas, eps: float, step: int = 0):
        super().__init__(params, lrs, betas, eps, step)
        self.step_t = torch.tensor(float(step), dtype=torch.float32, device=params[0].device)
        self._key: tuple | None = None  # what the cached plan was made for
        self._plan: Plan | None = None
        self._views: list[tuple[list, list, list, list]] = []  # per call: params, exp_avgs, exp_avg_sqs, steps

    def _calls(self, params: list[torch.Tensor], alive: list[bool] | None) -> Plan:
        """The plan and the persistent tensors' views, rebuilt when lrs (replaced or changed in
        place), the live members or the parameter tensors change."""
        k, tensors = self._key, [*params, *self.exp_avg]
        if not (k and k[0] is self.lrs and k[1] == self.lrs._version and k[2] == alive and len(k[3]) == len(tensors)
                and all(a is b for a, b in zip(k[3], tensors))):
            self._plan = plan(self.lrs.tolist(), alive, [aligned(p) for p in params])
            self._views = [(ps, ms, vs, [self.step_t] * len(ps)) for ps, ms, vs in
                           zip(*(self._plan.gather(t) for t in (params, self.exp_avg, self.exp_avg_sq)))]
            self._key = (self.lrs, self.lrs._version, None if alive is None else list(alive), tensors)
        return self._plan

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], alive: list[bool] | None = None) -> None:
        self.t += 1
        self.step_t.fill_(float(self.t))
        calls = self._calls(params, alive)
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]  # the kernel reads them flat
        for (lr, _), gs, (ps, ms, vs, steps) in zip(calls.calls, calls.gather(grads), self._views):
            fused_adam(ps, gs, ms, vs, steps, lr=lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps)
