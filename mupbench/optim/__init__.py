"""The optimizers: one Adam (``adam``: the foreach update and the fused call) that single runs
(``LeanAdam``) and stacked ensembles (``StackedAdam``, ``StackedFusedAdam``) step through, with
per-group ε and decoupled weight decay (torch AdamW); Adam-atan2 (``atan2``: ``AdamAtan2``,
``StackedAdamAtan2``) on the same moments; SGD (torch.optim.SGD for single runs, ``StackedSGD``
for ensembles). ``build_optimizer`` and ``build_stacked`` choose one from the config
(optimizer=adam / adam_atan2 / sgd; per-parameter ε and λ_torch come from the parameter groups,
or for an ensemble as ``eps`` and ``weight_decay``)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from mupbench.config import ConfigError
from mupbench.optim.adam import LeanAdam, adam_foreach, cpu_fused_adam, fused_adam
from mupbench.optim.atan2 import AdamAtan2, StackedAdamAtan2, atan2_foreach
from mupbench.optim.sgd import StackedSGD
from mupbench.optim.stacked_adam import StackedAdam, StackedFusedAdam

__all__ = ["AdamAtan2", "LeanAdam", "StackedAdam", "StackedAdamAtan2", "StackedFusedAdam", "StackedSGD", "adam_foreach",
           "atan2_foreach", "build_optimizer", "build_stacked", "cpu_fused_adam", "fused_adam"]


def build_optimizer(cfg: DictConfig, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """A single run's optimizer. Adam: fused by default, on CPU too (one kernel per tensor instead
    of ten passes), stepped by LeanAdam (torch.optim.Adam's kernels and state without its per-step
    Python work, which would otherwise make μP's two learning-rate groups cost more than SP's
    one); for_loop is stock torch.optim.Adam. SGD: torch.optim.SGD, fused on CUDA, foreach on CPU."""
    o = cfg.optimizer
    if o.name == "adam_atan2":
        return AdamAtan2(groups, lr=o.lr, betas=o.betas, a=o.a, b=o.b)
    if o.name == "adam":
        impl = o.impl if o.impl != "auto" else "fused"
        decoupled = any(g.get("weight_decay", 0.0) for g in groups)  # groups carry λ_torch: torch AdamW's decay
        if impl == "for_loop":
            adam = torch.optim.AdamW if decoupled else torch.optim.Adam
            return adam(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=0.0, foreach=False)
        try:
            return LeanAdam(groups, lr=o.lr, betas=o.betas, eps=o.eps, impl=impl, decoupled_weight_decay=decoupled)
        except RuntimeError:  # a torch without fused Adam for this device or dtype
            if o.impl != "auto":
                raise
            return LeanAdam(groups, lr=o.lr, betas=o.betas, eps=o.eps, impl="foreach", decoupled_weight_decay=decoupled)
    impl = o.impl if o.impl != "auto" else ("fused" if device.type == "cuda" else "foreach")
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, fused=impl == "fused", foreach=impl == "foreach")


def build_stacked(cfg: DictConfig, params: list[torch.Tensor], lrs: torch.Tensor, device, step: int = 0, eps=None,
                  weight_decay: torch.Tensor | None = None):
    """An ensemble's optimizer over stacked ``params`` with per-member ``lrs`` ((M, P) float64),
    ``eps`` (one per parameter; default optimizer.eps) and ``weight_decay`` (λ_torch, (M, P), or None).
    Adam on CPU: StackedFusedAdam (the single runs' fused kernel) unless optimizer.impl says
    otherwise or this torch lacks the kernel; elsewhere StackedAdam. Adam-atan2: StackedAdamAtan2.
    SGD: StackedSGD."""
    o = cfg.optimizer
    if o.name == "adam_atan2":
        return StackedAdamAtan2(params, lrs, o.betas, o.a, o.b, step, weight_decay)
    if o.name == "adam":
        eps = o.eps if eps is None else eps
        if torch.device(device).type == "cpu" and o.impl in ("auto", "fused") and cpu_fused_adam():
            return StackedFusedAdam(params, lrs, o.betas, eps, step, weight_decay)
        return StackedAdam(params, lrs, o.betas, eps, step, weight_decay)
    if o.name == "sgd":
        return StackedSGD(params, lrs, o.momentum, step)
    raise ConfigError("optimizer.name", f"batched training has no {o.name!r}; use adam or sgd")
