"""mupbench/optim/sgd.py: StackedSGD is torch.optim.SGD per member."""

from __future__ import annotations

import torch

from mupbench.optim import StackedSGD


def test_stacked_sgd_is_torch_sgd():
    torch.manual_seed(0)
    ks, shapes = [1e-2, 1e-1, 1e-2], [(4, 3), (4,), (1,)]
    M = len(ks)
    init = [torch.randn(M, *s) for s in shapes]
    grads = [[torch.randn(M, *s) for s in shapes] for _ in range(10)]
    params = [t.clone() for t in init]
    sgd = StackedSGD(params, torch.tensor([[k] * len(shapes) for k in ks], dtype=torch.float64), momentum=0.9)
    for g in grads:
        sgd.step(params, [t.clone() for t in g])
    for i, k in enumerate(ks):
        own = [torch.nn.Parameter(t[i].clone()) for t in init]
        opt = torch.optim.SGD(own, lr=k, momentum=0.9)
        for g in grads:
            for p, t in zip(own, g):
                p.grad = t[i].clone()
            opt.step()
        for p, q, s in zip(own, params, sgd.member_state(i)):
            assert torch.equal(p.detach(), q[i])
            assert torch.equal(opt.state[p]["momentum_buffer"], s["momentum_buffer"])
