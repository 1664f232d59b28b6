"""The optimizers: one Adam (``adam``: the foreach update and the fused call) that single runs
(``LeanAdam``) and stacked ensembles (``StackedAdam``, ``StackedFusedAdam``) step through, with
per-group ε and decoupled weight decay (torch AdamW); Adam-atan2 (``atan2``: ``AdamAtan2``,
``StackedAdamAtan2``) on the same moments; SGD (torch.optim.SGD for single runs, ``StackedSGD``
for ensembles). ``build_optimizer`` and ``build_stacked`` choose one from the config (Adam-atan2
and weight decay are not wired to the config yet)."""

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
    if o.name == "adam":
        impl = o.impl if o.impl != "auto" else "fused"
        if impl == "for_loop":
            return torch.optim.Adam(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, foreach=False)
        try:
            return LeanAdam(groups, lr=o.lr, betas=o.betas, eps=o.eps, impl=impl)
        except RuntimeError:  # a torch without fused Adam for this device or dtype
            if o.impl != "auto":
                raise
            return LeanAdam(groups, lr=o.lr, betas=o.betas, eps=o.eps, impl="foreach")
    impl = o.impl if o.impl != "auto" else ("fused" if device.type == "cuda" else "foreach")
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, fused=impl == "fused", foreach=impl == "foreach")


def build_stacked(cfg: DictConfig, params: list[torch.Tensor], lrs: torch.Tensor, device, step: int = 0):
    """An ensemble's optimizer over stacked ``params`` with per-member ``lrs`` ((M, P) float64).
    Adam on CPU: StackedFusedAdam (the single runs' fused kernel) unless optimizer.impl says
    otherwise or this torch lacks the kernel; elsewhere StackedAdam. SGD: StackedSGD."""
    o = cfg.optimizer
    if o.name == "adam":
        if torch.device(device).type == "cpu" and o.impl in ("auto", "fused") and cpu_fused_adam():
            return StackedFusedAdam(params, lrs, o.betas, o.eps, step)
        return StackedAdam(params, lrs, o.betas, o.eps, step)
    if o.name == "sgd":
        return StackedSGD(params, lrs, o.momentum, step)
    raise ConfigError("optimizer.name", f"batched training has no {o.name!r}; use adam or sgd")
