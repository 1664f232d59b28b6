"""Adam on an ensemble's stacked parameters (leading member axis), each member with its own
learning rates, through the single run's own math (``mupbench.optim.adam``).

``lrs`` is an (M, P) float64 tensor: member i, parameter j → k_i × lr_mult_j. It may be replaced
or changed in place (a frozen member's row set to zero); the optimizers read it at each step.
``weight_decay`` (optional) is likewise (M, P): λ_torch of torch AdamW (θ ← θ·(1 − lr·λ_torch));
``eps`` one float or one per parameter. State is one stacked exp_avg and exp_avg_sq per
parameter; ``member_state(i)`` / ``load_member(i, …)`` convert member i's to and from
torch.optim.Adam states.
"""

from __future__ import annotations

import torch

from mupbench.optim.adam import adam_foreach, bias_corrections, fused_adam
from mupbench.optim.members import Plan, aligned, per_member, plan

CHUNK = 2**16  # elements per block of a large tensor's update: its p, g, m, v and temporaries stay in cache


class StackedAdam:
    """torch.optim.Adam / AdamW (no amsgrad) per member: ``adam_foreach`` with the step size
    −lr/(1 − β1^t) and the decay factor 1 − lr·λ_torch per member, computed in double and rounded
    once to the parameter dtype (bitwise torch.optim.Adam(W)(foreach=True) on CPU). On CPU a
    tensor of more than ``CHUNK`` elements is updated one cache-sized block at a time (every
    operation on a block before the next block); on CUDA every block would be a kernel launch,
    so there one call covers all."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas, eps, step: int = 0,
                 weight_decay: torch.Tensor | None = None):
        self.lrs, self.weight_decay = lrs, weight_decay
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = [float(eps)] * len(params) if isinstance(eps, (int, float)) else [float(e) for e in eps]
        self.t = step
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.decays = [] if weight_decay is None else (weight_decay != 0).any(0).tolist()  # parameters some member decays

    def _per_member(self, params: list[torch.Tensor]) -> list[tuple]:
        """For each parameter, its per-member (M, 1, …) scalars of this step: step size, decay factor."""
        self._bias_correction1, self._bias_correction2_sqrt = bias_corrections(self.beta1, self.beta2, float(self.t))
        return self._with_decay(params, self.lrs / self._bias_correction1 * -1)

    def _with_decay(self, params: list[torch.Tensor], step_size: torch.Tensor) -> list[tuple]:
        step_size = step_size.to(params[0].dtype)
        decay = None if self.weight_decay is None else (1 - self.lrs * self.weight_decay).to(params[0].dtype)
        return [(per_member(step_size[:, j], p), per_member(decay[:, j], p) if decay is not None and self.decays[j] else None)
                for j, p in enumerate(params)]

    def _update(self, js: list[int], ps, gs, ms, vs, per: list[tuple]) -> None:
        """The update of parameters ``js`` (their tensors or blocks of them)."""
        decay, eps = [d for _, d in per], [self.eps[j] for j in js]
        adam_foreach(ps, gs, ms, vs, [s for s, _ in per], beta1=self.beta1, beta2=self.beta2, eps=eps[0] if len(set(eps)) == 1 else eps,
                     bias_correction2_sqrt=self._bias_correction2_sqrt, decay=decay if any(d is not None for d in decay) else None)

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.t += 1
        per = self._per_member(params)
        on_cpu = params[0].device.type == "cpu"
        large = [j for j, p in enumerate(params) if on_cpu and p.numel() > CHUNK]
        small = [j for j in range(len(params)) if j not in large]
        if small:  # few elements: one foreach call per operation over all of them
            self._update(small, *([t[j] for j in small] for t in (params, grads, self.exp_avg, self.exp_avg_sq, per)))
        for j in large:
            for blk in _blocks(params[j]):
                self._update([j], [params[j][blk]], [grads[j][blk]], [self.exp_avg[j][blk]], [self.exp_avg_sq[j][blk]],
                             [tuple(None if s is None else s[blk[0]] for s in per[j])])

    def select(self, keep) -> None:
        self.lrs = self.lrs[keep]
        if self.weight_decay is not None:
            self.weight_decay = self.weight_decay[keep]
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
    per distinct (lr, λ_torch, ε), whose tensors are pieces of the stacked ones laid out so that
    each member's update is bitwise torch.optim.Adam(W)(fused=True) on that member alone
    (``mupbench.optim.members``: a member whose size leaves a vector tail is its own view,
    others share slices with their equal-lr neighbours). Members marked dead (``alive``) are
    left out of the calls; knowing who is alive needs the host, so this is for CPU (on CUDA an
    ensemble uses StackedAdam)."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas, eps, step: int = 0,
                 weight_decay: torch.Tensor | None = None):
        super().__init__(params, lrs, betas, eps, step, weight_decay)
        self.step_t = torch.tensor(float(step), dtype=torch.float32, device=params[0].device)
        self._key: tuple | None = None  # what the cached plan was made for
        self._plan: Plan | None = None
        self._views: list[tuple[list, list, list, list]] = []  # per call: params, exp_avgs, exp_avg_sqs, steps
        # a schedule's s(t), multiplied into every call's lr (and so its decay lr·λ): changing it
        # each step keeps the cached plan, where replacing ``lrs`` would rebuild it
        self.scale = 1.0

    def _calls(self, params: list[torch.Tensor], alive: list[bool] | None) -> Plan:
        """The plan and the persistent tensors' views, rebuilt when lrs or weight_decay (replaced
        or changed in place), the live members or the parameter tensors change."""
        wd = self.weight_decay
        k, tensors = self._key, [*params, *self.exp_avg, self.lrs, *([] if wd is None else [wd])]
        versions = [self.lrs._version, None if wd is None else wd._version]
        if not (k and k[0] == versions and k[1] == alive and len(k[2]) == len(tensors) and all(a is b for a, b in zip(k[2], tensors))):
            lrs, wds = self.lrs.tolist(), None if wd is None else wd.tolist()
            rows = [[(lr, 0.0 if wds is None else wds[i][j], self.eps[j]) for j, lr in enumerate(row)] for i, row in enumerate(lrs)]
            self._plan = plan(rows, alive, [aligned(p) for p in params])
            self._views = [(ps, ms, vs, [self.step_t] * len(ps)) for ps, ms, vs in
                           zip(*(self._plan.gather(t) for t in (params, self.exp_avg, self.exp_avg_sq)))]
            self._key = (versions, None if alive is None else list(alive), tensors)
        return self._plan

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], alive: list[bool] | None = None) -> None:
        self.t += 1
        self.step_t.fill_(float(self.t))
        calls = self._calls(params, alive)
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]  # the kernel reads them flat
        for ((lr, wd, eps), _), gs, (ps, ms, vs, steps) in zip(calls.calls, calls.gather(grads), self._views):
            fused_adam(ps, gs, ms, vs, steps, lr=lr * self.scale, beta1=self.beta1, beta2=self.beta2, eps=eps, weight_decay=wd)
