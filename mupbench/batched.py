"""Batched training: the seeds (and k values) of one grid point's width trained as one stacked
ensemble in one process, each member ending with its own normal run record.

A group is a set of points whose configs differ only in ``seed`` and ``optimizer.lr``. Each
member is assembled by ``build_run`` exactly as its single run would be (its own init, data-order,
val and dropout streams), then the members' parameters are stacked along a leading member axis:

- forward: the MLP (an ``nn.Sequential`` of Linear/ReLU/Flatten/Dropout) runs as batched matmuls
  (``_BatchedLinear``: bmm, then the bias; measured faster than vmap on CPU, and its forward is
  bitwise F.linear's); every other model runs as ``vmap(functional_call)``. Each member's loss is
  its own; the gradient of their sum is each member's own gradient.
- dropout: each member draws its masks from its own dropout generator, seeded and consumed
  exactly as the single run's global RNG (``bernoulli_`` on the same shapes in the same order),
  so a member equals its single run with dropout on, and members of different seeds get
  different masks (on CUDA the single run's fused dropout kernel reads only the default
  generator, so each member's state is swapped into it: ``_cuda_masks``).
- optimizer: Adam (and SGD) written on the stacked tensors with PyTorch's own operations in
  PyTorch's order (``StackedAdam``, ``_multi_tensor_adam``'s lerp, mul/addcmul, sqrt, ÷√bc2,
  +ε, step size −lr/bc1 per member: bitwise torch.optim.Adam), so member i gets its own
  learning rate k_i × lr_mult. On CPU the default is ``StackedFusedAdam``: torch's fused Adam
  kernel (what single runs use) on slices of members with equal k, one pass instead of ten.
- divergence: every step's losses go to a buffer; a member whose loss turns non-finite is frozen
  from that step on (on CPU it is left out of the fused update, which costs nothing to know
  there; on CUDA a device-side mask zeroes its gradient and step size, without a host sync); at
  evaluations it is recorded as diverged at that exact step, with the history its single run
  would have, and dropped from the ensemble.
- checkpoints: every ``train.ckpt_every`` steps each member writes its own checkpoint.pt in the
  single run's format, so either trainer can resume it.

``train_points`` is the entry for a list of configs and run dirs; ``BatchedLauncher`` (Hydra,
in-process: ``hydra/launcher=batched``) and ``run_chunk`` (a runner for mupbench.launching's
chunked SLURM / local launchers) group a multirun's points and call it, composing one point per
group (``derive_points``); ``GroupedBasicSweeper`` (the project's default sweeper) likewise checks
one composed point per group before launching.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from mupbench.assemble import Run, autocast, build_run, resolve_device, set_flush_denormal, stream_seed
from mupbench.config import ConfigError, validate
from mupbench.data import DataError, IndexSampler, Splits, load_splits
from mupbench.loop import Outcome, load_checkpoint, save_checkpoint
from mupbench.records import CHECKPOINT

log = logging.getLogger("mupbench")

BATCHED_KEYS = ("seed", "optimizer.lr")  # the axes a group may vary along
CHUNK = 2**16  # elements per block of an optimizer update: its p, g, m, v and temporaries stay in cache


# ----------------------------------------------------------------------------------- grouping
def group_key(cfg: DictConfig, lrs: bool = True) -> str:
    """What members of one ensemble share: the whole config except the seed (and k, if ``lrs``)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("seed", None)
    if lrs:
        c["optimizer"].pop("lr", None)
    return json.dumps(c, sort_keys=True)


def group_indices(cfgs: Sequence[DictConfig], lrs: bool = True) -> list[list[int]]:
    """Indices of ``cfgs`` grouped by ``group_key``, groups in order of first appearance."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, cfg in enumerate(cfgs):
        groups[group_key(cfg, lrs)].append(i)
    return list(groups.values())


# ------------------------------------------------------------------------------------ samplers
class StackedIndexSampler:
    """The members' IndexSamplers as one: (M, batch) row indices, one gather per tensor.

    Members share the data and the batch size, so their epochs turn over at the same step; each
    reshuffle draws every member's permutation from that member's own generator, as its single
    run would.
    """

    def __init__(self, samplers: list[IndexSampler]):
        s0 = samplers[0]
        if any(s.pos != s0.pos or s.perm.numel() != s0.perm.numel() for s in samplers):
            raise ValueError("members of one ensemble must be at the same point of their epochs")
        self.samplers, self.tensors, self.batch_size, self.n, self.pos = samplers, s0.tensors, s0.batch_size, s0.n, s0.pos
        self.perm = torch.stack([s.perm for s in samplers])

    def next(self) -> tuple[torch.Tensor, ...]:
        if self.pos + self.batch_size > self.perm.shape[1]:
            device = self.tensors[0].device
            self.perm = torch.stack([torch.randperm(self.n, generator=s.generator, device=s.generator.device).to(device) for s in self.samplers])
            self.pos = 0
        idx = self.perm[:, self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return tuple(t[idx] for t in self.tensors)

    def select(self, keep: list[int]) -> None:
        self.samplers = [self.samplers[i] for i in keep]
        self.perm = self.perm[keep]

    def write_back(self) -> None:
        """Put the stacked state back into each member's own sampler (for its checkpoint)."""
        for i, s in enumerate(self.samplers):
            s.perm, s.pos = self.perm[i], self.pos


class ListSampler:
    """Any samplers, one call each per step, stacked (language-model windows)."""

    def __init__(self, samplers: list):
        self.samplers = samplers

    def next(self) -> tuple[torch.Tensor, ...]:
        return tuple(torch.stack(parts) for parts in zip(*(s.next() for s in self.samplers)))

    def select(self, keep: list[int]) -> None:
        self.samplers = [self.samplers[i] for i in keep]

    def write_back(self) -> None:
        pass


def stacked_sampler(samplers: list):
    if all(type(s) is IndexSampler for s in samplers):
        return StackedIndexSampler(samplers)
    return ListSampler(samplers)


# ---------------------------------------------------------------------------------- optimizers
def _optimizer_order(run: Run, names: list[str]) -> list[int]:
    """For each parameter in plan order, its index in the run's torch optimizer (whose param
    groups order parameters by learning rate)."""
    own = dict(run.model.named_parameters())
    position = {id(p): k for k, p in enumerate(p for g in run.optimizer.param_groups for p in g["params"])}
    return [position[id(own[name])] for name in names]


@functools.cache
def _cpu_fused_adam() -> bool:
    """Whether this torch has the fused Adam kernel for CPU (2.4 and later)."""
    try:
        p = torch.zeros(1, requires_grad=True)
        p.grad = torch.zeros(1)
        torch.optim.Adam([p], fused=True).step()
        return True
    except RuntimeError:
        return False


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(M,) → (M, 1, …, 1), broadcasting against a stacked parameter."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class StackedAdam:
    """torch.optim.Adam (no weight decay, no amsgrad) on stacked parameters, per-member lr.

    The operations are those of ``torch.optim.adam._multi_tensor_adam`` in the same order, with
    the same scalars: step size −lr/(1 − β1^t) computed in double and rounded once to the
    parameter dtype, the denominator √v / √(1 − β2^t) + ε. Only the step size differs per member.
    """

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas, eps: float, step: int = 0):
        self.lrs = lrs  # (M, P) float64: member i, parameter j → k_i × lr_mult_j
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.t = float(eps), step
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.t += 1
        b1, b2, eps = self.beta1, self.beta2, self.eps
        bias_correction1 = 1 - b1 ** float(self.t)
        bias_correction2_sqrt = (1 - b2 ** float(self.t)) ** 0.5
        step_size = (self.lrs / bias_correction1 * -1).to(params[0].dtype)  # (M, P)
        sizes = [_per_member(step_size[:, j], p) for j, p in enumerate(params)]
        # on CPU large tensors go block by block (cache); on CUDA every block would be a kernel
        # launch, so there one foreach call per operation covers every tensor
        on_cpu = params[0].device.type == "cpu"
        large = {j for j, p in enumerate(params) if p.numel() > CHUNK and on_cpu}
        small = [j for j in range(len(params)) if j not in large]
        if small:  # few elements: one foreach call per operation over all of them
            ps, gs, ms, vs = ([t[j] for j in small] for t in (params, grads, self.exp_avg, self.exp_avg_sq))
            torch._foreach_lerp_(ms, gs, 1 - b1)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, gs, gs, 1 - b2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_div_(denom, bias_correction2_sqrt)
            torch._foreach_add_(denom, eps)
            update = torch._foreach_mul(ms, [sizes[j] for j in small])
            torch._foreach_div_(update, denom)  # (s·m)/d: addcdiv's order of operations
            torch._foreach_add_(ps, update)
        for j in sorted(large):  # every operation on one cache-sized block at a time
            p = params[j]
            M, per = p.shape[0], p[0].numel()
            s = sizes[j]
            if per <= CHUNK:  # blocks of whole members
                blocks = [(slice(a, a + CHUNK // per),) for a in range(0, M, CHUNK // per)]
            else:  # blocks of rows within one member (any strides: gradients may be transposed)
                rows = max(1, CHUNK // (per // p.shape[1]))
                blocks = [(slice(a, a + 1), slice(r, r + rows)) for a in range(M) for r in range(0, p.shape[1], rows)]
            for blk in blocks:
                pb, gb, mb, vb = p[blk], grads[j][blk], self.exp_avg[j][blk], self.exp_avg_sq[j][blk]
                mb.lerp_(gb, 1 - b1)
                vb.mul_(b2).addcmul_(gb, gb, value=1 - b2)
                d = torch.sqrt(vb).div_(bias_correction2_sqrt).add_(eps)
                pb.add_(torch.mul(mb, s[blk[0]]).div_(d))

    def select(self, keep: list[int]) -> None:
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


class StackedFusedAdam(StackedAdam):
    """The same Adam through torch's fused kernel (what single runs use by default on CPU):
    members with the same k sit next to each other, so one ``torch._fused_adam_`` call per run
    of equal learning rates updates a slice of every stacked tensor in one pass; bitwise
    torch.optim.Adam(fused=True) per member. Frozen members are left out of the calls, which
    needs their state on the host: CPU only (on CUDA the ensemble uses StackedAdam)."""

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, betas, eps: float, step: int = 0):
        super().__init__(params, lrs, betas, eps, step)
        self.rows = lrs.tolist()
        self.step_t = torch.tensor(float(step), dtype=torch.float32, device=params[0].device)

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], alive: list[bool] | None = None) -> None:
        self.t += 1
        self.step_t.fill_(float(self.t))
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]  # the kernel reads them flat
        a, M = 0, len(self.rows)
        while a < M:  # runs of members with equal learning rates (and all alive)
            if alive is not None and not alive[a]:
                a += 1
                continue
            b = a + 1
            while b < M and self.rows[b] == self.rows[a] and (alive is None or alive[b]):
                b += 1
            by_lr: dict[float, list[int]] = defaultdict(list)
            for j, lr in enumerate(self.rows[a]):
                by_lr[lr].append(j)
            for lr, js in by_lr.items():
                torch._fused_adam_(
                    [params[j][a:b] for j in js], [grads[j][a:b] for j in js], [self.exp_avg[j][a:b] for j in js],
                    [self.exp_avg_sq[j][a:b] for j in js], [], [self.step_t] * len(js), amsgrad=False, lr=lr, beta1=self.beta1,
                    beta2=self.beta2, weight_decay=0.0, eps=self.eps, maximize=False, grad_scale=None, found_inf=None,
                )
            a = b

    def select(self, keep) -> None:
        super().select(keep)
        self.rows = self.lrs.tolist()


class StackedSGD:
    """torch.optim.SGD (momentum, no dampening, no weight decay, no Nesterov) on stacked
    parameters, per-member lr. Equal to torch's to float rounding: torch applies −lr as a fused
    multiply-add, this as a multiply then an add."""

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
        torch._foreach_addcmul_(params, grads, [_per_member(neg_lr[:, j], p) for j, p in enumerate(params)])

    def select(self, keep: list[int]) -> None:
        self.lrs = self.lrs[keep]
        if self.buf is not None:
            self.buf = [b[keep] for b in self.buf]

    def load_member(self, i: int, state: list[dict]) -> None:
        bufs = [s.get("momentum_buffer") for s in state]
        if not self.momentum or all(b is None for b in bufs):
            return
        if self.buf is None:
            self.buf = [torch.zeros((len(self.lrs), *b.shape), dtype=b.dtype, device=b.device) for b in bufs]
        for j, b in enumerate(bufs):
            self.buf[j][i].copy_(b)

    def member_state(self, i: int) -> list[dict]:
        if self.buf is None:
            return []
        return [{"momentum_buffer": b[i].clone()} for b in self.buf]


# ------------------------------------------------------------------------------------- forward
class _MaskFeed:
    """Dropout masks for one forward, handed to the dropout modules in call order."""

    def __init__(self):
        self.masks: list[torch.Tensor] = []
        self.shapes: list[tuple] | None = None  # when probing: records (shape, dtype) per call


class _FedDropout(nn.Module):
    """nn.Dropout whose mask comes from outside (already scaled by 1/(1-p)), so that each member
    of a vmapped ensemble gets its own mask from its own generator."""

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


class _BatchedLinear(torch.autograd.Function):
    """x·Wᵀ + b for every member at once (bmm, then the bias added as F.linear's addmm adds it),
    with the weight's gradient gᵀ·x computed in the parameter's own layout, so the fused
    optimizer reads it without a copy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        out = torch.bmm(x, w.transpose(1, 2))
        return out + b.unsqueeze(1) if b is not None else out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        gx = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = g.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _sequential_ops(model: nn.Module) -> list[tuple] | None:
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


class Ensemble:
    """M members of one group, stacked: parameters, optimizer state, samplers and dropout streams."""

    def __init__(self, runs: list[Run], step: int = 0, forward: str = "auto"):
        r0 = runs[0]
        self.runs, self.cfg, self.device = runs, r0.cfg, r0.device
        self.loss_fn = r0.loss_fn
        self.names = [e.name for e in r0.plan]
        named = [dict(r.model.named_parameters()) for r in runs]
        self.params = [torch.stack([n[name].detach() for n in named]).requires_grad_() for name in self.names]
        lrs = torch.tensor([[float(r.cfg.optimizer.lr) * e.lr_mult for e in r0.plan] for r in runs], dtype=torch.float64)
        lrs = lrs.to(self.device)
        o = self.cfg.optimizer
        if o.name == "adam" and self.device.type == "cpu" and o.impl in ("auto", "fused") and _cpu_fused_adam():
            self.opt = StackedFusedAdam(self.params, lrs, o.betas, o.eps, step)
        elif o.name == "adam":
            self.opt = StackedAdam(self.params, lrs, o.betas, o.eps, step)
        elif o.name == "sgd":
            self.opt = StackedSGD(self.params, lrs, o.momentum, step)
        else:
            raise ConfigError("optimizer.name", f"batched training has no {o.name!r}; use adam or sgd")
        self.opt_order = _optimizer_order(r0, self.names)
        for i, r in enumerate(runs):  # resumed members bring their optimizer state
            state = r.optimizer.state_dict()["state"]
            if state:
                self.opt.load_member(i, [state[k] for k in self.opt_order])
        self.train_sampler = stacked_sampler([r.train_sampler for r in runs])
        self.val_sampler = stacked_sampler([r.val_sampler for r in runs])
        # each member's dropout stream, where its single run keeps it: build_run seeds torch's
        # global RNG with the member's dropout stream; a resumed member's state was loaded there
        self.dropout_gens = [torch.Generator(device=self.device).manual_seed(stream_seed(r.cfg.seed, "dropout")) for r in runs]
        self.alive = torch.ones(len(runs), dtype=torch.bool, device=self.device)
        self._share_params()
        self._build_forward(forward)

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.runs)

    def _share_params(self) -> None:
        """Each member's own model views its slice of the stacked parameters (no copies)."""
        for i, r in enumerate(self.runs):
            own = dict(r.model.named_parameters())
            for name, p in zip(self.names, self.params):
                own[name].data = p.detach()[i]

    def select(self, keep: list[int]) -> None:
        """Drop every member not in ``keep`` (diverged ones): less work for the rest."""
        self.runs = [self.runs[i] for i in keep]
        idx = torch.tensor(keep, device=self.device)
        self.params = [p.detach()[idx].requires_grad_() for p in self.params]
        self.opt.select(idx)
        self.train_sampler.select(keep)
        self.val_sampler.select(keep)
        self.dropout_gens = [self.dropout_gens[i] for i in keep]
        self.alive = self.alive[idx]
        self._share_params()

    # -- forward -----------------------------------------------------------------------------
    def _build_forward(self, mode: str) -> None:
        model = self.runs[0].model
        ops = _sequential_ops(model) if mode in ("auto", "bmm") else None
        if mode == "bmm" and ops is None:
            raise ValueError("forward='bmm' needs an nn.Sequential of Linear/ReLU/Flatten/Dropout")
        self.feed = _MaskFeed()
        if ops is not None:
            self.mode, self.ops = "bmm", ops
            self._vloss = vmap(self.loss_fn)
            # dropout shapes are known once a batch is seen: probed then
            self.dropout_specs = None if any(op[0] == "dropout" for op in ops) else []
            return
        self.mode = "vmap"
        skeleton = copy.deepcopy(model)
        _feed_dropouts(skeleton, self.feed)
        self.skeleton = skeleton
        names, feed, loss_fn = self.names, self.feed, self.loss_fn

        def member_loss(params, x, y, masks):
            feed.masks = list(masks)
            return loss_fn(functional_call(skeleton, dict(zip(names, params)), (x,)), y)

        self._vmapped = vmap(member_loss, randomness="error")
        self.dropout_specs = None

    def _bmm_forward(self, params: list[torch.Tensor], x: torch.Tensor, masks: list[torch.Tensor], train: bool) -> torch.Tensor:
        p = dict(zip(self.names, params))
        masks = list(masks)
        for op in self.ops:
            if op[0] == "linear":
                x = _BatchedLinear.apply(x, p[op[1]], p[op[2]] if op[2] else None)
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

    def _probe_dropout(self, x: torch.Tensor) -> None:
        """The shapes of one member's dropout inputs in a training forward, in call order."""
        self.feed.shapes = []
        try:
            with torch.no_grad():
                if self.mode == "bmm":
                    self._bmm_forward([p.detach()[:1] for p in self.params], x[:1], [], True)
                else:
                    self.skeleton.train()
                    functional_call(self.skeleton, {n: p.detach()[0] for n, p in zip(self.names, self.params)}, (x[0],))
        finally:
            self.dropout_specs, self.feed.shapes = self.feed.shapes, None

    def _masks(self) -> list[torch.Tensor]:
        """One mask per dropout call, stacked over members: member i draws from its own generator
        exactly what its single run's F.dropout draws (on CPU ``bernoulli_(1 - p)``, then
        ÷ (1 - p); on CUDA the fused dropout kernel, which reads only the default generator)."""
        if self.device.type == "cuda":
            return self._cuda_masks()
        masks = []
        for shape, dtype, p in self.dropout_specs:
            if p >= 1:
                masks.append(torch.zeros((self.size, *shape), dtype=dtype, device=self.device))
                continue
            masks.append(torch.stack([
                torch.empty(shape, dtype=dtype, device=self.device).bernoulli_(1 - p, generator=g).div_(1 - p)
                for g in self.dropout_gens
            ]))
        return masks

    def _cuda_masks(self) -> list[torch.Tensor]:
        """F.dropout on ones, with each member's state swapped into the default CUDA generator
        (host-side seed and offset: no device sync), draws what the single run draws."""
        saved = torch.cuda.get_rng_state(self.device)
        per_member = []
        try:
            for g in self.dropout_gens:
                torch.cuda.set_rng_state(g.get_state(), self.device)
                per_member.append([F.dropout(torch.ones(shape, dtype=dtype, device=self.device), p, training=True)
                                   for shape, dtype, p in self.dropout_specs])
                g.set_state(torch.cuda.get_rng_state(self.device))
        finally:
            torch.cuda.set_rng_state(saved, self.device)
        return [torch.stack(layer) for layer in zip(*per_member)]

    def losses(self, x: torch.Tensor, y: torch.Tensor, train: bool) -> torch.Tensor:
        """(M,) losses of the members on their own batches (x, y stacked on dim 0)."""
        if train and self.dropout_specs is None:
            self._probe_dropout(x)
        masks = self._masks() if train else []
        params = self.params if train else [p.detach() for p in self.params]
        with autocast(self.cfg, self.device):
            if self.mode == "bmm":
                return self._vloss(self._bmm_forward(params, x, masks, train), y)
            self.skeleton.train(train)
            if self.device.type == "cuda":  # the fused attention kernels' backward breaks under vmap
                with sdpa_kernel(SDPBackend.MATH):
                    return self._vmapped(tuple(params), x, y, masks)
            return self._vmapped(tuple(params), x, y, masks)

    # -- one step ----------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward, backward and update of every member; returns the (M,) pre-update losses.

        A member whose loss is not finite is frozen from this step on (its gradients are zeroed,
        so its parameters stay put) by a device-side mask: no host sync.
        """
        losses = self.losses(x, y, train=True)
        grads = torch.autograd.grad(losses.sum(), self.params)
        with torch.no_grad():
            self.alive &= torch.isfinite(losses)
            if isinstance(self.opt, StackedFusedAdam):  # CPU: knowing who is alive costs nothing
                self.opt.step(self.params, grads, None if bool(self.alive.all()) else self.alive.tolist())
                return losses.detach()
            if self.device.type != "cpu" or not bool(self.alive.all()):
                grads = [torch.where(_per_member(self.alive, g), g, 0) for g in grads]
                self._freeze_step_size()
            self.opt.step(self.params, grads)
        return losses.detach()

    def _freeze_step_size(self) -> None:
        """A frozen member's zeroed gradient still moves Adam's moments; zero its lr too."""
        dead = ~self.alive
        self.opt.lrs = torch.where(dead[:, None], torch.zeros_like(self.opt.lrs), self.opt.lrs)

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Each member's val loss (SPEC §4): the mean over eval_batches of its own val batches."""
        n = self.cfg.train.eval_batches
        total = torch.zeros(self.size, device=self.device, dtype=torch.float64)
        for _ in range(n):
            x, y = self.val_sampler.next()
            total += self.losses(x, y, train=False).double()
        return (total / n).tolist()

    def save_member(self, i: int, path: Path, step: int, history: list[dict], train_time_s: float, fingerprint: str) -> None:
        """Member i's checkpoint, in exactly the format (and with the RNG states) of its single run."""
        run = self.runs[i]
        self.train_sampler.write_back()
        self.val_sampler.write_back()
        for s in (run.train_sampler, run.val_sampler):
            if isinstance(s, IndexSampler):
                s.perm = s.perm.clone()  # a view would save the whole stacked storage
        opt_state = run.optimizer.state_dict()
        opt_state["state"] = {k: s for k, s in zip(self.opt_order, self.opt.member_state(i))}
        run.optimizer.load_state_dict(opt_state)
        gen = self.dropout_gens[i]
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(gen.get_state(), self.device)
        else:
            torch.set_rng_state(gen.get_state())
        own = list(run.model.parameters())
        views = [p.data for p in own]
        try:
            for p in own:
                p.data = p.data.clone()
            save_checkpoint(run, path, step, history, train_time_s, fingerprint)
        finally:
            for p, v in zip(own, views):
                p.data = v


# --------------------------------------------------------------------------------------- loop
def _fmt(x: float) -> str:
    return f"{x:.4g}"


def train_ensemble(
    ens: Ensemble,
    run_dirs: list[Path | None],
    fingerprints: list[str],
    start: int = 0,
    histories: list[list[dict]] | None = None,
    prior_times: list[float] | None = None,
    resumed_from: list[int | None] | None = None,
) -> list[Outcome]:
    """loop.train for every member at once; each member's Outcome is what its single run returns."""
    t = ens.cfg.train
    M = ens.size
    histories = histories or [[] for _ in range(M)]
    prior_times = prior_times or [0.0] * M
    resumed_from = resumed_from or [None] * M
    outcomes: list[Outcome | None] = [None] * M
    ids = list(range(M))  # ensemble position → member number
    losses = torch.full((t.steps + 1, M), float("nan"), device=ens.device, dtype=torch.float32)
    checked = start
    t0 = last_log = time.perf_counter()

    def finish(pos: list[int], status: str, steps_done: list[int]) -> None:
        now = time.perf_counter() - t0
        for p, s in zip(pos, steps_done):
            i = ids[p]
            diverged = s if status == "diverged" else None
            outcomes[i] = Outcome(status, histories[i], s, diverged, prior_times[i] + now, s - start, now, resumed_from[i])

    def drop(pos: list[int]) -> None:
        nonlocal losses, ids
        if not pos:
            return
        keep = [p for p in range(ens.size) if p not in set(pos)]
        ids = [ids[p] for p in keep]
        if keep:
            ens.select(keep)
            losses = losses[:, keep]

    def check(hi: int) -> None:
        """Record and drop the members with a non-finite loss in [checked, hi) (one host sync)."""
        nonlocal checked
        if hi > checked:
            bad = ~torch.isfinite(losses[checked:hi])
            any_bad = bad.any(0).tolist()
            if any(any_bad):
                first = (bad.int().argmax(0) + checked).tolist()
                pos = [p for p in range(ens.size) if any_bad[p]]
                finish(pos, "diverged", [first[p] for p in pos])
                drop(pos)
        checked = hi

    for step in range(start, t.steps + 1):
        is_eval = step % t.eval_every == 0 or step == t.steps
        if is_eval:
            check(step)
            if not ids:
                break
            val = ens.evaluate()
        x, y = ens.train_sampler.next()
        if step == t.steps:  # the final evaluation: the batch's loss, no update
            with torch.no_grad():
                step_losses = ens.losses(x, y, train=True)
        else:
            step_losses = ens.step(x, y)
            losses[step] = step_losses
        if is_eval:
            train = step_losses.tolist()
            elapsed = time.perf_counter() - t0
            bad = []
            for p, i in enumerate(ids):
                histories[i].append({"step": step, "train_loss": train[p], "val_loss": val[p], "elapsed_s": round(prior_times[i] + elapsed, 3)})
                if not (math.isfinite(train[p]) and math.isfinite(val[p])):
                    bad.append(p)
            now = time.perf_counter()
            if now - last_log >= t.log_every_s or step in (start, t.steps):
                rate = (step - start) / max(now - t0, 1e-9)
                finite = sorted(v for v in val if math.isfinite(v))
                log.info(
                    "step %d/%d  %d members  median val %s  %.0f steps/s",
                    step, t.steps, len(ids), _fmt(finite[len(finite) // 2]) if finite else "nan", rate,
                )
                last_log = now
            if bad:
                finish(bad, "diverged", [step] * len(bad))
                drop(bad)
                if not ids:
                    break
        if step == t.steps:
            break
        if t.ckpt_every and (step + 1) % t.ckpt_every == 0 and step + 1 < t.steps and any(d is not None for d in run_dirs):
            check(step + 1)
            if not ids:
                break
            elapsed = time.perf_counter() - t0
            for p, i in enumerate(ids):
                if run_dirs[i] is not None:
                    ens.save_member(p, Path(run_dirs[i]) / CHECKPOINT, step + 1, histories[i], prior_times[i] + elapsed, fingerprints[i])
    finish([p for p, i in enumerate(ids) if outcomes[i] is None], "completed", [t.steps] * len(ids))
    return outcomes  # type: ignore[return-value]


# --------------------------------------------------------------------------------- the entry
def _auto_members(num_params: int, device: torch.device) -> int:
    """How many members one ensemble holds at most: about 2**22 stacked parameters on CPU
    (measured on the MLP at ζ = 16: 64 members step faster per member than 16 or 128), 2**28
    on a GPU (a few GB of state)."""
    budget = 2**28 if device.type == "cuda" else 2**22
    return max(1, budget // max(num_params, 1))


def train_points(
    cfgs: Sequence[DictConfig],
    run_dirs: Sequence[Path],
    *,
    max_members: int = 0,
    forward: str = "auto",
    splits: Splits | None = None,
) -> list[dict]:
    """Train a group of points (configs that differ only in seed and optimizer.lr) as ensembles,
    each point into its own run dir with the record ``run_one`` would write; finished points are
    skipped. Returns the records, in order.
    """
    from mupbench.train import (
        describe_run,
        fingerprint,
        finish_record,
        finished_record,
        start_record,
        write_failed_record,
    )

    if not cfgs:
        return []
    for cfg in cfgs:
        validate(cfg)
        if cfg.train.compile:
            raise ConfigError("train.compile", "batched training does not compile the model; run compiled points one by one")
    keys = {group_key(c) for c in cfgs}
    if len(keys) > 1:
        raise ValueError("train_points needs configs that differ only in seed and optimizer.lr; group them with group_indices")
    run_dirs = [Path(d) for d in run_dirs]
    records: list[dict | None] = [None] * len(cfgs)
    todo = []
    fps = [fingerprint(c) for c in cfgs]
    for i, (cfg, d) in enumerate(zip(cfgs, run_dirs)):
        done = finished_record(cfg, d, fps[i])
        if done:
            log.info("skipping %s: already %s (force=true reruns it)", d, done["status"])
            records[i] = done
            continue
        if cfg.force:
            (d / CHECKPOINT).unlink(missing_ok=True)
        todo.append(i)
    if not todo:
        return records  # type: ignore[return-value]
    cfg0 = cfgs[todo[0]]
    if cfg0.train.threads:
        torch.set_num_threads(cfg0.train.threads)
    device = resolve_device(cfg0.train.device)
    set_flush_denormal(cfg0.train.flush_denormal)  # before any torch op starts the thread pool
    if splits is None:
        splits = load_splits(cfg0.dataset, device)
    dtype = getattr(torch, cfg0.train.dtype)
    if dtype != torch.float32:  # cast once, not once per member
        cast = lambda ts: tuple(t.to(dtype) if t.is_floating_point() else t for t in ts)  # noqa: E731
        splits = Splits(splits.spec, cast(splits.train), cast(splits.val), cast(splits.test), splits.info)

    # assemble every member as its single run would be, then resume those with a checkpoint
    members: dict[int, dict] = {}
    for i in todo:
        rec = start_record(cfgs[i], fps[i])
        t0 = time.perf_counter()
        run = build_run(cfgs[i], device, splits)
        describe_run(rec, run)
        m = {"run": run, "record": rec, "t0": t0, "start": 0, "history": [], "prior": 0.0, "resumed": None, "rng": None}
        if cfgs[i].train.ckpt_every:
            state = load_checkpoint(run, run_dirs[i] / CHECKPOINT, fps[i])
            if state is not None:
                m.update(start=state["step"], history=state["history"], prior=state["train_time_s"], resumed=state["step"])
                m["rng"] = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
        members[i] = m

    cap = max_members or _auto_members(members[todo[0]]["record"]["num_params"], device)
    by_start: dict[int, list[int]] = defaultdict(list)
    for i in sorted(todo, key=lambda i: (float(cfgs[i].optimizer.lr), int(cfgs[i].seed))):  # equal k side by side
        by_start[members[i]["start"]].append(i)
    for start, group in sorted(by_start.items()):
        size = math.ceil(len(group) / math.ceil(len(group) / cap))  # balanced: 128 at a cap of 61 → 43, 43, 42
        for c in range(0, len(group), size):
            chunk = group[c : c + size]
            _train_chunk(chunk, start, members, cfgs, run_dirs, fps, records, forward, finish_record, write_failed_record)
    return records  # type: ignore[return-value]


_ENSEMBLE_NUMBERS = itertools.count()  # an ensemble's number within this process, in its members' records


def _train_chunk(chunk, start, members, cfgs, run_dirs, fps, records, forward, finish_record, write_failed_record) -> None:
    runs = [members[i]["run"] for i in chunk]
    number, t0 = next(_ENSEMBLE_NUMBERS), time.perf_counter()
    try:
        ens = Ensemble(runs, step=start, forward=forward)
        for p, i in enumerate(chunk):
            if members[i]["rng"] is not None:
                ens.dropout_gens[p].set_state(members[i]["rng"])
        log.info("%s: %d members × %s parameters on %s (%s)", members[chunk[0]]["record"]["setup"], len(chunk),
                 f"{members[chunk[0]]['record']['num_params']:,}", ens.device, ens.mode)
        outs = train_ensemble(
            ens, [run_dirs[i] for i in chunk], [fps[i] for i in chunk], start,
            [members[i]["history"] for i in chunk], [members[i]["prior"] for i in chunk], [members[i]["resumed"] for i in chunk],
        )
    except (ConfigError, DataError):
        raise
    except Exception as e:  # noqa: BLE001 — as run_one: the failure goes into each member's record
        for i in chunk:
            write_failed_record(cfgs[i], run_dirs[i], members[i]["record"], e, time.perf_counter() - members[i]["t0"])
            records[i] = members[i]["record"]
        log.error("batched training of %d members failed: %s: %s", len(chunk), type(e).__name__, e)
        return
    ensemble_s = round(time.perf_counter() - t0, 3)
    for p, i in enumerate(chunk):
        rec = members[i]["record"]
        # which runs trained together, and for how long (the ensemble's wall time, shared by all)
        rec["batched"] = {"ensemble": number, "members": len(chunk), "position": p, "forward": ens.mode, "ensemble_s": ensemble_s}
        records[i] = finish_record(cfgs[i], run_dirs[i], rec, outs[p], time.perf_counter() - members[i]["t0"])


# ------------------------------------------------------------------------------------ sweeps
# Composing one point of a multirun costs Hydra about half a second (it reads every YAML file
# again): more than training a small network. Points that differ only in seed and k are therefore
# composed once per group; the others copy that config and set the two keys. Their run dirs come
# from the overrides as Hydra would name them (mupbench.status.run_dir_function).


@functools.lru_cache(maxsize=4096)
def _plain_value(text: str) -> tuple[str, int | float] | None:
    """(key, value) if ``text`` is a plain ``seed=<int>`` or ``optimizer.lr=<number>`` change,
    else None. Cached: a sweep's jobs repeat the same few override strings, and Hydra's parser
    takes ~1 ms per override (seconds per few hundred jobs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    (o,) = OverridesParser.create().parse_overrides([text])
    key, value = o.get_key_element(), o.value()
    typed = isinstance(value, int) if key == "seed" else isinstance(value, (int, float))
    if key in BATCHED_KEYS and o.type == OverrideType.CHANGE and not o.is_sweep_override() and typed and not isinstance(value, bool):
        return key, value
    return None


def _varying(overrides: Sequence[str], keys: tuple[str, ...]) -> tuple[tuple[str, ...], dict]:
    """(the overrides other than plain ``key=value`` ones for ``keys``, {key: typed value})."""
    rest, values = [], {}
    for text in overrides:
        plain = _plain_value(text)
        if plain is not None and plain[0] in keys:
            values[plain[0]] = plain[1]
        else:
            rest.append(text)
    return tuple(rest), values


def groups_of_jobs(job_overrides: Sequence[Sequence[str]], lrs: bool = True) -> tuple[list, list[list[int]]]:
    """(each job's (other overrides, {key: value}), the jobs grouped by their other overrides)."""
    parsed = [_varying(o, BATCHED_KEYS if lrs else ("seed",)) for o in job_overrides]
    by_rest: dict[tuple, list[int]] = defaultdict(list)
    for i, (rest, values) in enumerate(parsed):
        by_rest[(rest, tuple(sorted(values)))].append(i)
    return parsed, list(by_rest.values())


def derive_points(job_overrides: Sequence[Sequence[str]], compose: Callable[[int], DictConfig], lrs: bool = True) -> list:
    """For each job: (task config, absolute run dir, its group's composed sweep config), or None
    where the job has to be composed on its own. ``compose(i)`` composes job i."""
    from hydra.core.hydra_config import HydraConfig

    from mupbench.launching import task_and_run_dir
    from mupbench.status import run_dir_function

    parsed, groups = groups_of_jobs(job_overrides, lrs)
    out: list = [None] * len(job_overrides)
    for members in groups:
        first = members[0]
        rep = compose(first)
        task0, dir0 = task_and_run_dir(rep)
        hc = HydraConfig.instance()
        saved = hc.cfg
        hc.set_config(rep)
        try:
            run_dir_of = run_dir_function(rep, Path(str(rep.hydra.sweep.dir)).absolute())
        finally:
            hc.cfg = saved
        if run_dir_of(job_overrides[first]) != dir0:
            out[first] = (task0, dir0, rep)  # a subdir that needs the whole config: compose each
            continue
        for i in members:
            task = copy.deepcopy(task0)
            for key, value in parsed[i][1].items():
                OmegaConf.update(task, key, value, merge=False)
            out[i] = (task, run_dir_of(job_overrides[i]), rep)
    return out


def train_sweep(points: Sequence[tuple[DictConfig, Path]], lrs: bool = True, max_members: int = 0, forward: str = "auto") -> list[bool]:
    """Train a multirun's points, (task config, run dir), group by group as ensembles into the run
    dirs their single runs would use. Returns, per point, whether it now holds its finished record;
    the rest (bad configs, compiled runs, failures) are for the entrypoint, which also says what is
    wrong in one line."""
    from mupbench.train import fingerprint, finished_record

    usable = []
    for i, (task, run_dir) in enumerate(points):
        try:
            validate(task)
        except ConfigError:
            continue
        if not task.print_params and not task.train.compile:  # compiled runs go one by one
            usable.append(i)
    groups = group_indices([points[i][0] for i in usable], lrs)
    log.info("%d points in %d batched groups (seeds%s batched)", len(usable), len(groups), " and k values" if lrs else "")
    for g in groups:
        try:
            train_points([points[usable[j]][0] for j in g], [points[usable[j]][1] for j in g], max_members=max_members, forward=forward)
        except (ConfigError, DataError) as e:
            log.error("cannot batch %d points: %s", len(g), e)
    return [finished_record(task, run_dir, fingerprint(task)) is not None for task, run_dir in points]


def _job_return(overrides: Sequence[str], task: DictConfig, run_dir: Path, rep: DictConfig):
    """What Hydra's run_job returns for a point whose entrypoint finds its record (the way
    mupbench.launching reports a skipped point)."""
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(overrides=list(overrides), cfg=task, working_dir=str(run_dir))
    ret.status = JobStatus.COMPLETED
    ret.return_value = None
    ret.task_name = str(rep.hydra.job.name)
    return ret


class BatchedLauncherImpl:
    """Hydra's basic (in-process) launcher, with the points of each group trained first as
    ensembles. A point that holds its finished record afterwards is reported done; any other
    point (a bad config, a compiled run, a failure) runs through the entrypoint as usual."""

    def __init__(self, lrs: bool = True, max_members: int = 0, forward: str = "auto") -> None:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        if not isinstance(lrs, bool):
            raise ConfigError("hydra.launcher.lrs", f"{lrs!r} must be true or false")
        if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 0:
            raise ConfigError("hydra.launcher.max_members", f"{max_members!r} must be an integer ≥ 0 (0 = by memory)")
        if forward not in ("auto", "bmm", "vmap"):
            raise ConfigError("hydra.launcher.forward", f"{forward!r}: choose auto, bmm or vmap")
        BasicLauncher.__init__(self)  # type: ignore[arg-type]
        self.lrs, self.max_members, self.forward = lrs, max_members, forward

    def _compose(self, overrides: Sequence[str], idx: int) -> DictConfig:
        from omegaconf import open_dict

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = idx
        return cfg

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from hydra.core.utils import (
            configure_log,
            filter_overrides,
            run_job,
            setup_globals,
        )

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally as batched ensembles")
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        derived = derive_points(job_overrides, lambda i: self._compose(job_overrides[i], initial_job_idx + i), self.lrs)
        have = [i for i, d in enumerate(derived) if d is not None]
        done = dict(zip(have, train_sweep([derived[i][:2] for i in have], self.lrs, self.max_members, self.forward)))
        runs = []
        for i, overrides in enumerate(job_overrides):
            if done.get(i):
                runs.append(_job_return(overrides, *derived[i]))
                continue
            runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=self._compose(overrides, initial_job_idx + i),
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs


class BatchedSweeperImpl:
    """Hydra's basic sweeper, except that before launching it composes one job per group of jobs
    that differ only in plain seed / optimizer.lr values, not every job (Hydra's check that every
    job composes costs about half a second a job: minutes for a grid of a few hundred). What it
    skips could not fail: a seed that is not an int, or a k that is not a number, is not a plain
    value here, so its job is composed and checked like any other."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        _, groups = groups_of_jobs(batch)
        for members in groups:
            self.hydra_context.config_loader.load_sweep_config(self.config, list(batch[members[0]]))


def run_chunk(points, ctx, lrs: bool = True) -> list:
    """A runner for mupbench.launching's chunked launchers (``hydra.launcher.runner=
    mupbench.batched.run_chunk``): the chunk's seeds and k values are trained as ensembles; a
    point left without its record (a failure, a bad config) then runs through the entrypoint.
    Put seed (and optimizer.lr) last in the sweep so that a chunk holds whole groups."""
    overrides = [p.overrides for p in points]
    derived = derive_points(overrides, lambda i: ctx.compose(points[i]), lrs)
    have = [i for i, d in enumerate(derived) if d is not None]
    done = dict(zip(have, train_sweep([derived[i][:2] for i in have], lrs)))
    return [_job_return(p.overrides, *derived[i]) if done.get(i) else ctx.run(p) for i, p in enumerate(points)]


def run_chunk_seeds(points, ctx) -> list:
    """As ``run_chunk``, batching only the seeds (each k value its own ensemble)."""
    return run_chunk(points, ctx, lrs=False)
