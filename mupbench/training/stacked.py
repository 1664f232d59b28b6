"""The stacked stepper: M members of one group (configs that differ only in seed and k), their
parameters stacked along a leading member axis, stepped as one.

Each member is assembled by ``build_run`` exactly as its single run would be (its own init,
data-order, val and dropout streams); the stacked tensors are then the members' own parameters
(each member's model views its slice), so a member's checkpoint is its single run's. A member
whose loss turns non-finite is frozen from that step on (its gradient and step size zeroed on the
device, no host sync) until the loop records it and drops it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mupbench import parametrization as P
from mupbench import schedules as S
from mupbench.assemble import Run, autocast, stream_seed
from mupbench.data import IndexSampler
from mupbench.optim import StackedFusedAdam, build_stacked
from mupbench.training import checkpoint
from mupbench.training.forward import StackedForward


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
        """Put the stacked state back into each member's own sampler (for its checkpoint); a
        copy, so that a checkpoint does not save the whole stacked storage."""
        for i, s in enumerate(self.samplers):
            s.perm, s.pos = self.perm[i].clone(), self.pos


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


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(M,) → (M, 1, …, 1), broadcasting against a stacked tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class StackedStepper:
    """The loop's stepper for M members of one group (see mupbench.training.loop.Stepper)."""

    def __init__(self, runs: list[Run], step: int = 0, forward: str = "auto", rng_states: list | None = None):
        r0 = runs[0]
        self.runs, self.cfg, self.device = runs, r0.cfg, r0.device
        self.names = [e.name for e in r0.plan]
        named = [dict(r.model.named_parameters()) for r in runs]
        self.params = [torch.stack([n[name].detach() for n in named]).requires_grad_() for name in self.names]
        # buffers (BatchNorm's running statistics): stacked too, each member's model views its slice
        self.buffer_names = [name for name, _ in r0.model.named_buffers()]
        owned = [dict(r.model.named_buffers()) for r in runs]
        self.buffers = [torch.stack([b[name] for b in owned]) for name in self.buffer_names]
        o = self.cfg.optimizer
        self.ks = [float(r.cfg.optimizer.lr) for r in runs]  # each member's k (the loop's lr column)
        lrs = torch.tensor([[k * e.lr_mult for e in r0.plan] for k in self.ks], dtype=torch.float64).to(self.device)
        self.base_lrs = lrs  # k·ρ: the schedule's s(t) multiplies them (set_lr_scale)
        wds = [[P.torch_weight_decay(e, o.get("weight_decay", 0.0), o.get("wd_mode", "coupled"), k) for e in r0.plan] for k in self.ks]
        wd = torch.tensor(wds, dtype=torch.float64).to(self.device) if any(any(row) for row in wds) else None
        eps = [o.eps * e.eps_mult for e in r0.plan] if "eps" in o else None
        self.opt = build_stacked(self.cfg, self.params, lrs, self.device, step, eps=eps, weight_decay=wd)
        self.schedule = S.multiplier(self.cfg.get("schedule"), self.cfg.train.steps)
        own = dict(r0.model.named_parameters())
        position = {id(p): k for k, p in enumerate(p for g in r0.optimizer.param_groups for p in g["params"])}
        self.opt_order = [position[id(own[name])] for name in self.names]  # plan order → the torch optimizer's order
        for i, r in enumerate(runs):  # resumed members bring their optimizer state
            state = r.optimizer.state_dict()["state"]
            if state:
                self.opt.load_member(i, [state[k] for k in self.opt_order])
        self.train_sampler = stacked_sampler([r.train_sampler for r in runs])
        self.val_sampler = stacked_sampler([r.val_sampler for r in runs])
        # each member's dropout stream, where its single run keeps it (torch's global RNG, seeded
        # with the member's dropout stream by build_run; a resumed member brings its state)
        self.dropout_gens = [torch.Generator(device=self.device).manual_seed(stream_seed(r.cfg.seed, "dropout")) for r in runs]
        for g, state in zip(self.dropout_gens, rng_states or [None] * len(runs)):
            if state is not None:
                g.set_state(state)
        self.alive = torch.ones(len(runs), dtype=torch.bool, device=self.device)
        self.forward = StackedForward(r0.model, self.names, r0.loss_fn, self.device, forward, self.buffer_names)
        self._share_params()

    @property
    def size(self) -> int:
        return len(self.runs)

    @property
    def mode(self) -> str:
        return self.forward.mode

    def _share_params(self) -> None:
        """Each member's own model views its slice of the stacked parameters (no copies)."""
        for i, r in enumerate(self.runs):
            own = dict(r.model.named_parameters())
            for name, p in zip(self.names, self.params):
                own[name].data = p.detach()[i]
            own = dict(r.model.named_buffers())
            for name, b in zip(self.buffer_names, self.buffers):
                own[name].data = b[i]

    def drop(self, keep: list[int]) -> None:
        """Keep only the members at positions ``keep`` (the others are recorded): less work."""
        self.runs = [self.runs[i] for i in keep]
        self.ks = [self.ks[i] for i in keep]
        idx = torch.tensor(keep, device=self.device)
        self.base_lrs = self.base_lrs[idx]
        self.params = [p.detach()[idx].requires_grad_() for p in self.params]
        self.buffers = [b[idx] for b in self.buffers]
        self.opt.select(idx)
        self.train_sampler.select(keep)
        self.val_sampler.select(keep)
        self.dropout_gens = [self.dropout_gens[i] for i in keep]
        self.alive = self.alive[idx]
        self._share_params()

    def losses(self, x: torch.Tensor, y: torch.Tensor, train: bool) -> torch.Tensor:
        """(M,) losses of the members on their own batches (x, y stacked on dim 0)."""
        params = self.params if train else [p.detach() for p in self.params]
        with autocast(self.cfg, self.device):
            return self.forward.losses(params, x, y, train, self.dropout_gens, self.buffers)

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        return self.train_sampler.next()

    def set_lr_scale(self, s: float) -> None:
        """The schedule's s(t) for the next step: every member's lrs are k·ρ·s (decay follows).
        The fused optimizer takes s as a number (its cached calls stay; (k·ρ)·s is the same double
        either way), the others a new lrs tensor."""
        if isinstance(self.opt, StackedFusedAdam):
            self.opt.scale = s
        else:
            self.opt.lrs = self.base_lrs * s

    def lrs_in_use(self) -> torch.Tensor:
        """(M, P): the lrs the next update uses, k_i·ρ_j·s(t)."""
        return self.opt.lrs * getattr(self.opt, "scale", 1.0)

    def step(self, batch) -> torch.Tensor:
        """Forward, backward and update of every member; the (M,) pre-update losses."""
        losses = self.losses(*batch, train=True)
        grads = torch.autograd.grad(losses.sum(), self.params)
        with torch.no_grad():
            self.alive &= torch.isfinite(losses)
            if isinstance(self.opt, StackedFusedAdam):  # CPU: knowing who is alive costs nothing
                self.opt.step(self.params, grads, None if bool(self.alive.all()) else self.alive.tolist())
                return losses.detach()
            if self.device.type != "cpu" or not bool(self.alive.all()):
                grads = [torch.where(_per_member(self.alive, g), g, 0) for g in grads]
                # a frozen member's zeroed gradient still moves Adam's moments: zero its lr too
                self.opt.lrs = torch.where(self.alive[:, None], self.opt.lrs, torch.zeros_like(self.opt.lrs))
            self.opt.step(self.params, grads)
        return losses.detach()

    @torch.no_grad()
    def train_losses(self, batch) -> torch.Tensor:
        """The members' training-mode losses on ``batch`` without an update (the final evaluation)."""
        return self.losses(*batch, train=True)

    @torch.no_grad()
    def evaluate(self) -> torch.Tensor:
        """Each member's val loss (SPEC §4): the mean over eval_batches of its own val batches."""
        n = self.cfg.train.eval_batches
        total = torch.zeros(self.size, device=self.device, dtype=torch.float64)
        for _ in range(n):
            x, y = self.val_sampler.next()
            total += self.losses(x, y, train=False).double()
        return total / n

    def save(self, i: int, path: Path, step: int, history: list[dict], train_time_s: float, fingerprint: str) -> None:
        """Member i's checkpoint, in exactly its single run's format (and RNG states)."""
        run = self.runs[i]
        self.train_sampler.write_back()
        self.val_sampler.write_back()
        opt_state = run.optimizer.state_dict()
        opt_state["state"] = {k: s for k, s in zip(self.opt_order, self.opt.member_state(i))}
        run.optimizer.load_state_dict(opt_state)
        rng = {"cuda" if self.device.type == "cuda" else "cpu": self.dropout_gens[i].get_state()}
        if self.device.type == "cuda":
            rng["cpu"] = torch.get_rng_state()
        own = [*run.model.parameters(), *run.model.buffers()]
        views = [p.data for p in own]
        try:
            for p in own:
                p.data = p.data.clone()  # a view would save the whole stacked storage
            checkpoint.save(run, path, step, history, train_time_s, fingerprint, rng)
        finally:
            for p, v in zip(own, views):
                p.data = v
