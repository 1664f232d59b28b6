"""The forward pass of M stacked members at once, each member on its own batch.

- The MLP (an ``nn.Sequential`` of Linear/ReLU/Flatten/Dropout) runs as batched matmuls
  (:class:`BatchedLinear`; measured faster than vmap on CPU); every other model runs as
  ``vmap(functional_call)`` over the members' parameters. Each member's loss is its own, so the
  gradient of their sum is each member's own gradient.
- Dropout: each member draws its masks from its own generator, seeded and consumed exactly as its
  single run's global RNG (``bernoulli_`` on the same shapes in the same order; on CUDA the single
  run's fused kernel reads only the default generator, so each member's state is swapped into it),
  so a member equals its single run with dropout on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel


class _MaskFeed:
    """Dropout masks for one forward, handed to the dropout modules in call order."""

    def __init__(self):
        self.masks: list[torch.Tensor] = []
        self.shapes: list[tuple] | None = None  # when probing: records (shape, dtype, p) per call


class _FedDropout(nn.Module):
    """nn.Dropout whose mask comes from outside (already scaled by 1/(1-p))."""

    def __init__(self, p: float, feed: _MaskFeed):
        super().__init__()
        self.p, self.feed = p, feed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x  # F.dropout draws nothing here either
        if self.feed.shapes is not None:
            self.feed.shapes.append((tuple(x.shape), x.dtype, self.p))
            return x
        return x * self.feed.masks.pop(0)


def _feed_dropouts(module: nn.Module, feed: _MaskFeed) -> None:
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, _FedDropout(child.p, feed))
        elif isinstance(child, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)):
            raise ValueError(f"batched training supports nn.Dropout only, not {type(child).__name__}")
        else:
            _feed_dropouts(child, feed)


class BatchedLinear(torch.autograd.Function):
    """x·Wᵀ + b for every member at once, the bias fused into the product as F.linear's addmm
    fuses it (bitwise F.linear's forward), with the weight's gradient gᵀ·x computed in the
    parameter's own layout, so the fused optimizer reads it without a copy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        if b is None:
            return torch.bmm(x, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        x, w = x.to(g.dtype), w.to(g.dtype)  # under bf16 autocast the products ran in bf16 (autograd casts back)
        gx = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), x) if ctx.needs_input_grad[1] else None  # in W's own layout
        gb = g.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def sequential_ops(model: nn.Module) -> list[tuple] | None:
    """The MLP as a list of ops for the batched-matmul path, or None if it is not that simple."""
    if type(model) is not nn.Sequential:
        return None
    ops: list[tuple] = []
    for name, m in model.named_children():
        if type(m) is nn.Linear:
            ops.append(("linear", f"{name}.weight", f"{name}.bias" if m.bias is not None else None))
        elif type(m) is nn.ReLU:
            ops.append(("relu",))
        elif type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            ops.append(("flatten",))
        elif type(m) is nn.Dropout:
            ops.append(("dropout", m.p))
        elif type(m) is not nn.Identity:
            return None
    return ops


class StackedForward:
    """``losses(params, x, y, train, gens) -> (M,)``: every member's loss on its own batch."""

    def __init__(self, model: nn.Module, names: list[str], loss_fn: Callable, device: torch.device, mode: str = "auto",
                 buffer_names: list[str] = ()):
        """``buffer_names``: the model's buffers (BatchNorm's running statistics), passed per member
        to every forward, so that each member updates and evaluates with its own."""
        self.names, self.loss_fn, self.device, self.buffer_names = names, loss_fn, device, list(buffer_names)
        self.feed = _MaskFeed()
        self.dropout_specs: list[tuple] | None = None  # learnt from the first training batch
        ops = sequential_ops(model) if mode in ("auto", "bmm") and not self.buffer_names else None
        if mode == "bmm" and ops is None:
            raise ValueError("forward='bmm' needs an nn.Sequential of Linear/ReLU/Flatten/Dropout")
        if ops is not None:
            self.mode, self.ops = "bmm", ops
            self._vloss = vmap(loss_fn)
            if not any(op[0] == "dropout" for op in ops):
                self.dropout_specs = []
            return
        self.mode = "vmap"
        self.skeleton = copy.deepcopy(model)
        _feed_dropouts(self.skeleton, self.feed)
        skeleton, feed, buffer_names = self.skeleton, self.feed, self.buffer_names

        def member_loss(params, buffers, x, y, masks):
            feed.masks = list(masks)
            tensors = {**dict(zip(names, params)), **dict(zip(buffer_names, buffers))}  # buffers updated in place
            return loss_fn(functional_call(skeleton, tensors, (x,)), y)

        self._vmapped = vmap(member_loss, randomness="error")

    def _bmm(self, params: list[torch.Tensor], x: torch.Tensor, masks: list[torch.Tensor], train: bool) -> torch.Tensor:
        p = dict(zip(self.names, params))
        masks = list(masks)
        for op in self.ops:
            if op[0] == "linear":
                x = BatchedLinear.apply(x, p[op[1]], p[op[2]] if op[2] else None)
            elif op[0] == "relu":
                x = torch.relu(x)
            elif op[0] == "flatten":
                x = x.flatten(2)
            elif op[0] == "dropout" and train and op[1] > 0:
                if self.feed.shapes is not None:
                    self.feed.shapes.append((tuple(x.shape[1:]), x.dtype, op[1]))
                else:
                    x = x * masks.pop(0)
        return x

    def _probe_dropout(self, params: list[torch.Tensor], x: torch.Tensor) -> None:
        """The shapes of one member's dropout inputs in a training forward, in call order."""
        self.feed.shapes = []
        try:
            with torch.no_grad():
                if self.mode == "bmm":
                    self._bmm([p.detach()[:1] for p in params], x[:1], [], True)
                else:
                    self.skeleton.train()
                    functional_call(self.skeleton, {n: p.detach()[0] for n, p in zip(self.names, params)}, (x[0],))
        finally:
            self.dropout_specs, self.feed.shapes = self.feed.shapes, None

    def _masks(self, gens: list[torch.Generator]) -> list[torch.Tensor]:
        """One mask per dropout call, stacked over members: member i draws from its own generator
        what its single run's F.dropout draws (on CPU ``bernoulli_(1 - p)``, then ÷ (1 - p))."""
        if self.device.type == "cuda":
            return self._cuda_masks(gens)
        masks = []
        for shape, dtype, p in self.dropout_specs:
            if p >= 1:
                masks.append(torch.zeros((len(gens), *shape), dtype=dtype, device=self.device))
                continue
            masks.append(torch.stack([
                torch.empty(shape, dtype=dtype, device=self.device).bernoulli_(1 - p, generator=g).div_(1 - p) for g in gens
            ]))
        return masks

    def _cuda_masks(self, gens: list[torch.Generator]) -> list[torch.Tensor]:
        """F.dropout on ones, with each member's state swapped into the default CUDA generator
        (host-side seed and offset: no device sync), draws what the single run draws."""
        saved = torch.cuda.get_rng_state(self.device)
        per_member = []
        try:
            for g in gens:
                torch.cuda.set_rng_state(g.get_state(), self.device)
                per_member.append([F.dropout(torch.ones(shape, dtype=dtype, device=self.device), p, training=True)
                                   for shape, dtype, p in self.dropout_specs])
                g.set_state(torch.cuda.get_rng_state(self.device))
        finally:
            torch.cuda.set_rng_state(saved, self.device)
        return [torch.stack(layer) for layer in zip(*per_member)]

    def losses(self, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, train: bool,
               gens: list[torch.Generator], buffers: list[torch.Tensor] = ()) -> torch.Tensor:
        if train and self.dropout_specs is None:
            self._probe_dropout(params, x)
        masks = self._masks(gens) if train and self.dropout_specs else []
        if self.mode == "bmm":
            return self._vloss(self._bmm(params, x, masks, train), y)
        self.skeleton.train(train)
        if self.device.type == "cuda":  # the fused attention kernels' backward breaks under vmap
            with sdpa_kernel(SDPBackend.MATH):
                return self._vmapped(tuple(params), tuple(buffers), x, y, masks)
        return self._vmapped(tuple(params), tuple(buffers), x, y, masks)
