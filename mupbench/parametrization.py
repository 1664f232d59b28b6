"""The parametrization engine: per-parameter init std and learning rate, computed from outside.

Roles are inferred by comparing every parameter of the target model with the same parameter
of the ζ = 1 model (built on the meta device): a dimension that differs grows with width.
The rules (SPEC §1.2) are base-width normalised, so at ζ = 1 every parametrization gives the
same numbers and μP is bitwise SP. Nothing is stored on tensors: the plan is recomputed from
(model, base model, config) whenever it is needed, so it survives checkpoints and wrappers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import torch
from torch import nn

from mupbench.roles import infer_roles

PARAMETRIZATIONS = ("sp", "mup", "ntk", "mf")
OPTIMIZERS = ("adam", "adam_atan2", "sgd")
RULE_FAMILY = {"adam_atan2": "adam"}  # optimizers that take another one's rule rows (Adam-atan2: Adam's lr rules)
EPS_SCALINGS = ("none", "grad", "lr_proportional")  # optimizer.eps_scaling (SPEC-AXES Table 1.1)
WD_MODES = ("coupled", "width_invariant", "independent")  # optimizer.wd_mode (SPEC-AXES Table 2.1)
DEPTH_ALPHAS = (None, 0.5, 1.0)  # parametrization.depth_alpha: no depth rule, depth-μP, CompleteP (SPEC-AXES §3)
DECAYED_KINDS = ("weight", "embedding")  # what weight decay reaches unless optimizer.wd_on_vectors
ATTN_SCALES = ("default", "sp", "mup", "paper")
TOKEN_STD = 0.02  # class token and token embedding (SPEC §1.2), the same in every parametrization


@dataclass(frozen=True)
class ParamPlan:
    """Everything the engine decided about one parameter."""

    name: str
    shape: tuple[int, ...]
    kind: str  # weight | bias | norm_weight | norm_bias | embedding | token
    role: str  # input | hidden | output | scalar
    fan_in: int
    fan_out: int
    base_fan_in: int
    base_fan_out: int
    init: str  # normal | zeros | ones
    init_std: float
    lr_mult: float  # the parameter's learning rate is lr_mult × k (× s(t), the schedule)
    eps_mult: float = 1.0  # its Adam ε is eps_mult × optimizer.eps (optimizer.eps_scaling)
    wd_mult: float = 0.0  # its λ_torch is wd_mult × optimizer.weight_decay (÷ k in wd_mode=independent)
    block: bool = False  # under the model's residual stack (the depth rule's "block" parameters)
    inferred: bool = False  # its kind and fans were decided by mupbench.roles' rule for unknown modules
    tied: tuple[str, ...] = ()  # the other names of this tensor (weight tying: one role, one optimizer entry)


class Fans(NamedTuple):
    """A parameter's fan-in n and fan-out m, and the same at ζ = 1 (n0, m0)."""

    n: int
    m: int
    n0: int
    m0: int


Formula = Callable[[float, Fans], float]  # (c, fans) → a number


def c_over_sqrt_n(c: float, f: Fans) -> float:
    return c / math.sqrt(f.n)  # c/√n


def c_sqrt_n0_over_n(c: float, f: Fans) -> float:
    return c * math.sqrt(f.n0) / f.n  # c·√n0/n: μP's readout


def one(c: float, f: Fans) -> float:
    return 1.0


def n0_over_n(c: float, f: Fans) -> float:
    return f.n0 / f.n


def m_over_m0(c: float, f: Fans) -> float:
    return f.m / f.m0


def sqrt_n0_over_n(c: float, f: Fans) -> float:
    return math.sqrt(f.n0 / f.n)


def sqrt_n_over_n0(c: float, f: Fans) -> float:
    return math.sqrt(f.n / f.n0)


def m0_over_m(c: float, f: Fans) -> float:
    return f.m0 / f.m


def sqrt_m0_over_m(c: float, f: Fans) -> float:
    return math.sqrt(f.m0 / f.m)


class Rule(NamedTuple):
    std: Formula  # init std of a weight matrix (vectors: see INIT_BY_KIND)
    lr: Formula  # learning-rate multiplier: the parameter's lr is this × k
    # the scale of the parameter's gradient at init relative to ζ = 1: its Adam ε under
    # optimizer.eps_scaling=grad (SPEC-AXES §1; tests/test_parametrization_axes.py measures it)
    grad: Formula = one


# SPEC §1.2, base-width normalised (every formula is 1, or c/√n0, at ζ = 1), one row per role.
# Roles (SPEC §1.1): input = fan-in fixed, fan-out grows (also every width-sized vector: biases,
# LayerNorm, class token, embedding table); hidden = both grow; output = fan-in grows (readout);
# scalar = neither grows (e.g. the readout's bias).
RULES: dict[tuple[str, str], dict[str, Rule]] = {
    ("sp", "adam"): {  # the readout's c/√n makes the backward signal into the width-n stream Θ(ζ^-½)
        "input": Rule(c_over_sqrt_n, one, sqrt_m0_over_m),
        "hidden": Rule(c_over_sqrt_n, one, sqrt_n0_over_n),
        "output": Rule(c_over_sqrt_n, one, one),
        "scalar": Rule(c_over_sqrt_n, one, one),
    },
    ("sp", "sgd"): {
        "input": Rule(c_over_sqrt_n, one, sqrt_m0_over_m),
        "hidden": Rule(c_over_sqrt_n, one, sqrt_n0_over_n),
        "output": Rule(c_over_sqrt_n, one, one),
        "scalar": Rule(c_over_sqrt_n, one, one),
    },
    ("mup", "adam"): {  # the Θ(1/n) readout makes every gradient upstream of it Θ(1/ζ) (SPEC-AXES Table 1.1)
        "input": Rule(c_over_sqrt_n, one, m0_over_m),
        "hidden": Rule(c_over_sqrt_n, n0_over_n, n0_over_n),
        "output": Rule(c_sqrt_n0_over_n, n0_over_n, one),
        "scalar": Rule(c_over_sqrt_n, one, one),
    },
    ("mup", "sgd"): {  # the paper's Table 1
        "input": Rule(c_over_sqrt_n, m_over_m0, m0_over_m),
        "hidden": Rule(c_over_sqrt_n, one, n0_over_n),
        "output": Rule(c_sqrt_n0_over_n, n0_over_n, one),
        "scalar": Rule(c_over_sqrt_n, m_over_m0, one),
    },
    ("ntk", "adam"): {  # the authors' code: init as SP, every lr × √(n0/n)
        "input": Rule(c_over_sqrt_n, sqrt_n0_over_n, sqrt_m0_over_m),
        "hidden": Rule(c_over_sqrt_n, sqrt_n0_over_n, sqrt_n0_over_n),
        "output": Rule(c_over_sqrt_n, sqrt_n0_over_n, one),
        "scalar": Rule(c_over_sqrt_n, sqrt_n0_over_n, one),
    },
    ("mf", "adam"): {  # the authors' code: init as SP but the readout as μP
        "input": Rule(c_over_sqrt_n, sqrt_n_over_n0, m0_over_m),
        "hidden": Rule(c_over_sqrt_n, sqrt_n_over_n0, n0_over_n),
        "output": Rule(c_sqrt_n0_over_n, one, one),
        "scalar": Rule(c_over_sqrt_n, sqrt_n_over_n0, one),
    },
}
# vectors and tables are initialised by kind, the same in every parametrization
INIT_BY_KIND = {"bias": ("zeros", 0.0), "norm_bias": ("zeros", 0.0), "norm_weight": ("ones", 0.0),
                "embedding": ("normal", TOKEN_STD), "token": ("normal", TOKEN_STD)}


def rule(param: str, optimizer: str, role: str) -> Rule:
    optimizer = RULE_FAMILY.get(optimizer, optimizer)
    if (param, optimizer) not in RULES:
        raise ValueError(f"parametrization {param!r} has no rule for optimizer={optimizer}; use optimizer=adam")
    return RULES[param, optimizer][role]


def residual_parameters(model: nn.Module) -> set[str]:
    """The names of the parameters inside the model's residual blocks: those under the ModuleList
    the model names as its ``residual_stack`` (the ViT's and the Transformer's ``blocks``); none
    for a model that declares no stack."""
    stack = getattr(model, "residual_stack", None)
    if stack is None:
        return set()
    blocks = model.get_submodule(stack)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"{type(model).__name__}.residual_stack names {stack!r}, which is not an nn.ModuleList")
    return {f"{stack}.{name}" for name, _ in blocks.named_parameters()}


@dataclass(frozen=True)
class Axes:
    """The per-parameter options beyond the paper's protocol (SPEC-AXES §1–§3); the defaults are
    the paper's (every multiplier below is then exactly 1, or the decay 0)."""

    eps_scaling: str = "none"  # none | grad | lr_proportional
    wd_mode: str = "coupled"  # coupled | width_invariant | independent
    wd_on_vectors: bool = False  # biases, norms and free tokens decay too
    depth_alpha: float | None = None  # None: no depth rule; 0.5 depth-μP; 1.0 CompleteP
    depth_mult: float = 1.0  # m_L = blocks / base_blocks
    depth_wd_follows_lr: bool = False  # wd_mode=independent: block decay × the block lr's m_L^(α−1) (SPEC-AXES §3, item 3)


def residual_scale(axes: Axes) -> float:
    """The residual branches' multiplier m_L^−α (1.0 without a depth rule or at the base depth)."""
    if axes.depth_alpha is None or axes.depth_mult == 1.0:
        return 1.0
    return axes.depth_mult ** -axes.depth_alpha


def _axes_mults(axes: Axes, param: str, kind: str, block: bool, width_lr: float, grad: float) -> tuple[float, float, float]:
    """(lr, ε, λ_torch) multipliers of one parameter (SPEC-AXES Tables 1.1, 2.1, 3.1); the width
    lr multiplier and gradient scale come from the rule row."""
    lr_mult = width_lr
    depth = axes.depth_alpha is not None and block and param != "sp" and axes.depth_mult != 1.0
    if depth:  # Table 3.1: block weights, biases and norms; SP takes the residual multiplier only
        lr_mult = width_lr * axes.depth_mult ** (axes.depth_alpha - 1)
    eps_mult = 1.0
    if axes.eps_scaling == "grad":
        eps_mult = grad * axes.depth_mult ** -axes.depth_alpha if depth else grad
    elif axes.eps_scaling == "lr_proportional":
        eps_mult = lr_mult
    wd_mult = 0.0
    if kind in DECAYED_KINDS or axes.wd_on_vectors:
        wd_mult = {"coupled": 1.0, "width_invariant": 1.0 / width_lr, "independent": 1.0 / lr_mult}[axes.wd_mode]
        if depth and axes.wd_mode == "independent" and axes.depth_wd_follows_lr:
            # CompleteP exact: per-step decay s·λ·m_L^(α−1), i.e. λ_torch = λ·m_L^(α−1)/(k·ρ_r)
            wd_mult = axes.depth_mult ** (axes.depth_alpha - 1) / lr_mult
    return lr_mult, eps_mult, wd_mult


def make_plan(
    model: nn.Module, base_model: nn.Module, param: str, optimizer: str, init_scale: float, kernel_fan_in: bool = False,
    axes: Axes = Axes(),
) -> list[ParamPlan]:
    """Decide the init, learning-rate, ε and weight-decay multipliers of every parameter of ``model``.

    ``base_model`` is the same architecture at ζ = 1 (meta device is fine: only shapes are read).
    """
    if param not in PARAMETRIZATIONS:
        raise ValueError(f"unknown parametrization {param!r}; choose one of {PARAMETRIZATIONS}")
    blocks = residual_parameters(model)
    plan = []
    for e in infer_roles(model, base_model, kernel_fan_in):  # mupbench.roles: kinds, fans and roles from shapes
        name, kind = e.name, e.kind
        r, fans = rule(param, optimizer, e.role), Fans(e.fan_in, e.fan_out, e.base_fan_in, e.base_fan_out)
        init, std = ("normal", r.std(init_scale, fans)) if kind == "weight" else INIT_BY_KIND[kind]
        lr_mult, eps_mult, wd_mult = _axes_mults(axes, param, kind, name in blocks, r.lr(init_scale, fans), r.grad(init_scale, fans))
        plan.append(ParamPlan(name, e.shape, kind, e.role, *fans, init, std, lr_mult, eps_mult, wd_mult, name in blocks,
                              e.inferred, e.tied))
    return plan


def torch_weight_decay(entry: ParamPlan, weight_decay: float, wd_mode: str, k: float) -> float:
    """λ_torch of torch AdamW for one parameter at base lr ``k`` (SPEC-AXES Table 2.1): single
    runs' groups and ensembles' per-member decay both come from here."""
    if not weight_decay or not entry.wd_mult:
        return 0.0
    return weight_decay * entry.wd_mult / k if wd_mode == "independent" else weight_decay * entry.wd_mult


@torch.no_grad()
def initialize(model: nn.Module, plan: list[ParamPlan], generator: torch.Generator) -> None:
    """Overwrite every parameter from the plan, in plan order, drawing from ``generator``
    (which lives on the parameters' device)."""
    params = dict(model.named_parameters())
    for entry in plan:
        p = params[entry.name]
        if entry.init == "normal":
            p.normal_(0.0, entry.init_std, generator=generator)
        elif entry.init == "ones":
            p.fill_(1.0)
        else:
            p.zero_()


def param_groups(model: nn.Module, plan: list[ParamPlan], lr: float, eps: float | None = None, weight_decay: float = 0.0,
                 wd_mode: str = "coupled") -> list[dict]:
    """torch.optim parameter groups: one per distinct (learning rate, ε, λ_torch) (fewer groups,
    faster foreach). Without ``eps`` the groups take the optimizer's."""
    params = dict(model.named_parameters())
    groups: dict[tuple, dict] = {}
    for entry in plan:
        wd = torch_weight_decay(entry, weight_decay, wd_mode, lr)
        g = groups.setdefault((entry.lr_mult, entry.eps_mult, wd), {"params": [], "names": [], "lr": lr * entry.lr_mult,
                                                                    "lr_mult": entry.lr_mult})
        if eps is not None:
            g["eps"] = eps * entry.eps_mult
        if wd:
            g["weight_decay"] = wd
        g["params"].append(params[entry.name])
        g["names"].append(entry.name)
    return list(groups.values())


def attention_scale(rule: str, param: str, d_head: int, d_head0: int, d_model: int) -> float:
    """The attention logit scale (SPEC §1.3).

    ``default`` follows the parametrization: SP 1/√d_head; μP (and MF, NTK) the base-equivalent
    √d_head0/d_head, which equals SP at ζ = 1. ``paper`` replicates the paper's code: SP
    1/√d_head, the others 1/d_model. ``sp`` and ``mup`` force one form for every parametrization.
    """
    if rule == "default":
        rule = "sp" if param == "sp" else "mup"
    if rule == "paper" and param == "sp":
        rule = "sp"
    if rule == "sp":
        return 1.0 / math.sqrt(d_head)
    if rule == "mup":
        # √(d_head0/d_head)/√d_head, not √d_head0/d_head: the same number, but at ζ = 1 it is
        # 1.0/√d_head to the last bit, the SP value (√8/8 and 1/√8 are different doubles)
        return math.sqrt(d_head0 / d_head) / math.sqrt(d_head)
    if rule == "paper":
        return 1.0 / d_model
    raise ValueError(f"unknown attention scale {rule!r}; choose one of {ATTN_SCALES}")


def format_plan(plan: list[ParamPlan], lr: float, eps: float | None = None, weight_decay: float | None = None,
                wd_mode: str = "coupled") -> str:
    """The per-parameter table: name, shape, role, init, learning rate (at s = 1), and when
    ``eps`` or ``weight_decay`` is given, each parameter's Adam ε ("—": an ε-free optimizer) and λ_torch."""
    axes = eps is not None or weight_decay is not None
    rows = [("parameter", "shape", "kind", "role", "fan_in", "fan_out", "init", "lr", *(("eps", "wd") if axes else ()))]
    for e in plan:
        init = f"N(0, {e.init_std:.4g})" if e.init == "normal" else e.init
        extra = ("—" if eps is None else f"{eps * e.eps_mult:.4g}",
                 f"{torch_weight_decay(e, weight_decay or 0.0, wd_mode, lr):.4g}") if axes else ()
        role = e.role + (" (inferred)" if e.inferred else "") + (f" (tied: {', '.join(e.tied)})" if e.tied else "")
        rows.append((e.name, "×".join(map(str, e.shape)), e.kind, role, str(e.fan_in), str(e.fan_out), init, f"{lr * e.lr_mult:.4g}", *extra))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
