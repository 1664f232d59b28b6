"""Parameter roles, inferred from shapes (SPEC §1.1): the model beside its ζ = 1 twin.

Every parameter of the model is paired by name with the twin's; each has a *kind* (what the
tensor is: weight matrix, bias, norm gain/shift, embedding table, free token) and a fan-in and
fan-out read from the module that owns it. A fan that differs between the two models grows with
width, and which fans grow decides the role (input / hidden / output / scalar). Nothing is stored
on tensors and the model is never changed.

How each parameter is read (``inferred`` marks the ones a documented rule decides, because the
owning module does not say; ``print_params=true`` shows them as ``(inferred)``):

- ``nn.Linear`` and its subclasses, ``nn.Conv1d/2d/3d``: weight (out, in, *kernel): fan-in =
  in (× the kernel area with ``parametrization.kernel_fan_in``), fan-out = out.
  ``nn.ConvTranspose1d/2d/3d``: weight (in, out, *kernel), read the other way round.
- ``nn.MultiheadAttention``: ``in_proj_weight`` (3d × d) and ``q/k/v_proj_weight`` in Linear's
  (out, in) layout (torch documents them so): both grow, so hidden; ``out_proj`` is a Linear.
- ``nn.Embedding`` / ``nn.EmbeddingBag``: a V×d table, fan-in V, fan-out d (input role).
- every norm layer (LayerNorm, RMSNorm, GroupNorm, BatchNorm*/InstanceNorm* and SyncBatchNorm):
  gain ``weight`` (init 1) and shift ``bias`` (init 0), fan-in 1. Their running statistics are
  buffers: not parameters, no role, never re-initialised.
- any other parameter (a module the engine does not know, or a free ``nn.Parameter``), inferred:
  a 0-/1-D one named like a gain (weight, gain, gamma, scale, g) is a norm gain (init 1), any
  other 0-/1-D one a bias (init 0); a tensor of ≥ 2 dims whose first dimension is 1 (a class token
  (1, 1, d), a learned position table (1, T, d)) is a free token (N(0, 0.02), fan-in 1); any other
  matrix is a weight in PyTorch's Linear/Conv layout (out, in, *kernel): so a (V, d) matrix whose
  d grows is a readout (output), a (d, k) one whose d grows an input layer and a (d, d) one
  hidden. A lookup table kept as a raw matrix would be read as a readout: make it an
  ``nn.Embedding``, or give it a leading dimension of 1.
- a tensor used by several modules (weight tying, e.g. a token embedding reused as the LM head)
  is one parameter with one role and one optimizer entry: the role its first owner gives it, in
  ``model.named_parameters()`` order, under that name; ``tied`` lists its other names. For a
  tied embedding/readout, register the embedding first (role input) and scale the readout's
  logits by the ``readout_mult`` the custom-model factory receives (μP's 1/ζ readout multiplier,
  microsoft/mup's MuSharedReadout form).

A structure that differs between the model and its twin (a parameter at one width only, a
different number of dimensions, a dimension that shrinks, a tensor tied at one width only) is a
ConfigError naming the parameter and what to change.
"""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Iterable

import torch
from torch import nn

from mupbench.rules import ConfigError

MATRIX_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORM_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)
EMBEDDING_MODULES = (nn.Embedding, nn.EmbeddingBag)
MHA_MATRICES = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
GAIN_NAMES = ("weight", "gain", "gamma", "scale", "g")


# What the shapes say about one parameter: kind (weight | bias | norm_weight | norm_bias |
# embedding | token), role (input | hidden | output | scalar), its fans at this width and at ζ = 1,
# whether the rule for unknown modules decided it (inferred), and its other names (weight tying).
ParamRole = namedtuple("ParamRole", "name shape kind role fan_in fan_out base_fan_in base_fan_out inferred tied")


def kind_and_fans(module: nn.Module, pname: str, p: torch.Tensor, kernel_fan_in: bool) -> tuple[str, int, int, bool]:
    """The parameter's kind, (fan-in, fan-out) and whether a rule inferred them (module docstring)."""
    kernel = math.prod(p.shape[2:]) if kernel_fan_in and p.dim() > 2 else 1
    if isinstance(module, MATRIX_MODULES) and pname == "weight":
        return "weight", p.shape[1] * kernel, p.shape[0], False
    if isinstance(module, TRANSPOSED_MODULES) and pname == "weight":
        return "weight", p.shape[0] * kernel, p.shape[1], False
    if isinstance(module, nn.MultiheadAttention) and pname in MHA_MATRICES:
        return "weight", p.shape[1], p.shape[0], False
    if isinstance(module, EMBEDDING_MODULES) and pname == "weight":
        return "embedding", p.shape[0], p.shape[1], False  # a V×d table: fan-in V, fan-out d
    if isinstance(module, NORM_MODULES) and pname in ("weight", "bias"):
        return ("norm_weight" if pname == "weight" else "norm_bias"), 1, p.numel(), False
    known = pname == "bias" or (isinstance(module, nn.MultiheadAttention) and pname == "in_proj_bias")
    if p.dim() <= 1:
        if not known and pname.lower() in GAIN_NAMES:
            return "norm_weight", 1, p.numel(), True
        return "bias", 1, p.numel(), not known
    if p.shape[0] == 1:
        return "token", 1, p.numel(), True  # a free parameter such as a class token
    return "weight", p.shape[1] * kernel, p.shape[0], True  # PyTorch's (out, in, *kernel) layout


def role_of(grows_in: bool, grows_out: bool) -> str:
    return {(False, True): "input", (True, True): "hidden", (True, False): "output", (False, False): "scalar"}[
        (grows_in, grows_out)
    ]


def owned_parameters(model: nn.Module) -> Iterable[tuple[str, nn.Module, str, torch.Tensor]]:
    """(full name, owning module, local name, tensor) of every parameter, a tied tensor once per owner."""
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for pname, p in module.named_parameters(recurse=False):
            yield (f"{mod_name}.{pname}" if mod_name else pname), module, pname, p


def _first_owners(model: nn.Module, kernel_fan_in: bool) -> dict[str, tuple[torch.Tensor, tuple, tuple[str, ...]]]:
    """name → (tensor, (kind, fan_in, fan_out, inferred) by its first owner, its other names),
    one entry per distinct tensor under its ``model.named_parameters()`` name."""
    canonical = {id(p): name for name, p in model.named_parameters()}
    out: dict[str, list] = {}
    for name, module, pname, p in owned_parameters(model):
        first = canonical[id(p)]
        if first not in out:
            out[first] = [p, kind_and_fans(module, pname, p, kernel_fan_in), []]
        if name != first and name not in out[first][2]:
            out[first][2].append(name)
    return {n: (p, kf, tuple(others)) for n, (p, kf, others) in out.items()}


def infer_roles(model: nn.Module, base_model: nn.Module, kernel_fan_in: bool = False, key: str = "model") -> list[ParamRole]:
    """The role of every distinct parameter of ``model`` (in ``named_parameters()`` order) from its
    ζ = 1 twin ``base_model`` (shapes only: the meta device is fine). A structure mismatch is a
    ConfigError under ``key`` (the config key that builds the model)."""
    ours, theirs = _first_owners(model, kernel_fan_in), _first_owners(base_model, kernel_fan_in)
    fix = "the model must have the same parameters at every width, only their sizes may change with width_mult"
    for name in [n for n in ours if n not in theirs] + [n for n in theirs if n not in ours]:
        other = theirs if name in ours else ours
        alias = {t: n for n, (_, _, ts) in other.items() for t in ts}
        if name in alias:  # a separate tensor on one side, tied on the other
            tied_here = name not in ours
            raise ConfigError(key, f"parameter {alias[name]} is tied to {name} {'at this width but not' if tied_here else 'at ζ = 1 but not'} "
                                   f"{'at ζ = 1' if tied_here else 'at this width'}; tie the same tensors at every width")
        where = "at this width but not at ζ = 1" if name in ours else "at ζ = 1 but not at this width"
        raise ConfigError(key, f"parameter {name} exists {where}; {fix}")
    roles = []
    for name, (p, (kind, n, m, inferred), tied) in ours.items():
        p0, (kind0, n0, m0, _), tied0 = theirs[name]
        if p.dim() != p0.dim() or kind != kind0:
            raise ConfigError(key, f"parameter {name} is {tuple(p.shape)} at this width but {tuple(p0.shape)} at ζ = 1; {fix}")
        if set(tied) != set(tied0):
            raise ConfigError(key, f"parameter {name} is tied to {list(tied) or 'nothing'} at this width but to "
                                   f"{list(tied0) or 'nothing'} at ζ = 1; tie the same tensors at every width")
        shrinks = [d for d, (a, b) in enumerate(zip(p.shape, p0.shape)) if a < b]
        if shrinks:
            d = shrinks[0]
            raise ConfigError(key, f"parameter {name} has dimension {d} of size {p.shape[d]} at this width but {p0.shape[d]} "
                                   f"at ζ = 1: sizes must grow (or stay) as width_mult grows")
        roles.append(ParamRole(name, tuple(p.shape), kind, role_of(n != n0, m != m0), n, m, n0, m0, inferred, tied))
    return roles
