"""SGD on an ensemble's stacked parameters. Single runs use torch.optim.SGD itself
(``mupbench.optim.build_optimizer``)."""

from __future__ import annotations

import torch

from mupbench.optim.members import per_member


class StackedSGD:
    """torch.optim.SGD (momentum, no dampening, no weight decay, no Nesterov) on stacked
    parameters, per-member lr (``lrs``: (M, P) float64, read at each step). The operations are
    torch's foreach SGD's (buffer ← momentum·buffer + g, the first step's buffer a copy of g),
    the update p + (−lr)·g as one addcmul with a per-member −lr."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, momentum: float, step: int = 0):
        self.lrs, self.momentum, self.t = lrs, float(momentum), step
        self.buf: list[torch.Tensor] | None = None

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.t += 1
        if self.momentum:
            if self.buf is None:
                self.buf = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.buf, self.momentum)
                torch._foreach_add_(self.buf, grads)
            grads = self.buf
        neg_lr = (-self.lrs).to(params[0].dtype)
        torch._foreach_addcmul_(params, grads, [per_member(neg_lr[:, j], p) for j, p in enumerate(params)])

    def select(self, keep) -> None:
        self.lrs = self.lrs[keep]
        if self.buf is not None:
            self.buf = [b[keep] for b in self.buf]

    def load_member(self, i: int, state: list[dict]) -> None:
        """Member ``i``'s momentum buffers from torch.optim.SGD states, one per parameter in plan order."""
        bufs = [s.get("momentum_buffer") for s in state]
        if not self.momentum or all(b is None for b in bufs):
            return
        if self.buf is None:
            self.buf = [torch.zeros((len(self.lrs), *b.shape), dtype=b.dtype, device=b.device) for b in bufs]
        for j, b in enumerate(bufs):
            self.buf[j][i].copy_(b)

    def member_state(self, i: int) -> list[dict]:
        """Member ``i``'s torch.optim.SGD states (copies), one per parameter in plan order."""
        if self.buf is None:
            return []
        return [{"momentum_buffer": b[i].clone()} for b in self.buf]
