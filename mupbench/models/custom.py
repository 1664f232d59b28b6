"""Your own model: ``model=custom model.factory=package.module:function``.

The factory is any importable callable ``function(width_mult, spec, **model.kwargs) -> nn.Module``
(``spec``: the dataset's :class:`~mupbench.data.DataSpec`: task, input shape, number of outputs
or vocabulary). It builds a plain module whose growing sizes follow ``width_mult`` (ζ), e.g.
``int(64 * width_mult)`` channels; mupbench builds the same factory's ζ = 1 twin on the meta
device and infers every parameter's role from the two (mupbench.roles). Nothing on the model
changes. Keyword arguments the factory receives when its signature names them:

- ``model.kwargs``: your own options, plain values (numbers, strings, booleans, null, lists).
- ``blocks`` / ``base_blocks``: ``model.blocks`` and ``model.base_blocks`` (default 1), the depth
  keys of the built-in models; with ``parametrization.depth_alpha`` the factory also receives
  ``residual_scale`` (m_L^−α, multiply each residual branch by it) and the model names its
  nn.ModuleList of residual blocks as ``residual_stack = "NAME"`` (as the built-in ViT does).
- ``attn_scale``: the attention logit scale the parametrization wants (SPEC §1.3), a number:
  SP 1/√d_head, μP √(d_head0/d_head)/√d_head. It needs the head count (``model.kwargs.heads``,
  or the factory's default for ``heads``) and ``model.base_width`` = d_model at ζ = 1 (d_model at
  ζ is base_width·ζ). A factory with attention that does not take it keeps its own scale (μP's
  1/d rule is then not applied; ``print_params=true`` says so).
- ``readout_mult``: μP's forward multiplier for a readout tied to the input embedding (1/ζ under
  μP and MF, 1 under SP and NTK; microsoft/mup's MuSharedReadout): multiply the tied readout's
  logits by it. An untied readout needs nothing (its init and lr are scaled).

``model.base_width`` (default 1) is the model's width at ζ = 1: the records' ``width`` column is
base_width·ζ (so it must be an integer) and, for attention, d_model. The factory itself decides
its sizes from ``width_mult``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Dict

import torch
from omegaconf import MISSING, OmegaConf
from torch import nn

from mupbench.models import CHECKS as MODEL_CHECKS
from mupbench.models import ModelConfig
from mupbench.rules import ConfigError, Rule, integer, show

KEY = "model.factory"
CHECKOUT = Path(__file__).resolve().parent.parent.parent  # holds examples/ (model.factory=examples.resnet:build)
EXTRAS = ("attn_scale", "readout_mult", "residual_scale")  # what the engine passes when the signature names them


@dataclass
class Config(ModelConfig):
    name: str = "custom"
    base_width: int = 1  # the width at ζ = 1: the records' width is base_width·ζ; d_model for attn_scale
    factory: str = MISSING  # package.module:function, called as function(width_mult, spec, **kwargs)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # the factory's own options (plain values)
    blocks: int = 1  # depth: passed as blocks= to a factory whose signature names it
    base_blocks: int = 1  # the depth rule's L0 (m_L = blocks / base_blocks), passed as base_blocks= likewise


def _plain(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def _plain_mapping(v: Any) -> bool:
    v = OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
    return isinstance(v, dict) and all(isinstance(k, str) and _plain(x) for k, x in v.items())


CHECKS = {
    **MODEL_CHECKS,
    "factory": Rule("a callable as package.module:function",
                    lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", v) is not None,
                    "e.g. model.factory=examples.resnet:build (importable from the current directory)"),
    "kwargs": Rule("a mapping of option names to plain values (numbers, strings, booleans, null, lists of them)", _plain_mapping,
                   "e.g. +model.kwargs.depth=4"),
    "blocks": integer(ge=1, hint="the factory receives it as blocks= when its signature names it"),
    "base_blocks": integer(ge=1, hint="L0, the depth at which a depth rule equals plain μP"),
}
TAKES = "whatever its factory accepts"


def accepts(spec) -> bool:
    return True  # the factory decides (a factory that cannot take the data fails in check)


def load_factory(path: str, key: str = KEY) -> Callable:
    """The callable ``package.module:function`` names, importable from sys.path or the current directory."""
    module_name, _, attr = path.partition(":")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # a console script's sys.path lacks the directory it ran in; examples.* live in the checkout
            top = module_name.split(".")[0]
            extra = [d for d in (os.getcwd(), str(CHECKOUT))
                     if d not in sys.path and ((Path(d) / top).is_dir() or (Path(d) / f"{top}.py").is_file())]
            if not extra or e.name != top:
                raise
            sys.path.extend(extra)
            module = importlib.import_module(module_name)
        fn = module
        for part in attr.split("."):
            fn = getattr(fn, part)
    except Exception as e:  # noqa: BLE001 — any import failure is the user's factory's
        raise ConfigError(key, f"cannot import {path} ({type(e).__name__}: {e}); give an importable package.module:function "
                               f"(run from the directory that holds the package, or put it on PYTHONPATH)") from None
    if not callable(fn):
        raise ConfigError(key, f"{path} is a {type(fn).__name__} object, not a callable; name a function function(width_mult, spec, **kwargs)")
    return fn


def _signature(fn: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def takes(fn: Callable, name: str) -> bool:
    sig = _signature(fn)
    return sig is not None and name in sig.parameters


def _kwargs(cfg, fn: Callable) -> dict:
    kw = OmegaConf.to_container(cfg.kwargs) if OmegaConf.is_config(cfg.kwargs) else dict(cfg.kwargs or {})
    for key in ("blocks", "base_blocks", *EXTRAS):
        if key in kw:
            raise ConfigError(f"model.kwargs.{key}", f"{key} is set by mupbench, not by model.kwargs"
                                                     + (f"; use model.{key}={show(kw[key])}" if key in ("blocks", "base_blocks") else ""))
        if key in ("blocks", "base_blocks") and takes(fn, key):
            kw[key] = cfg[key]
    return kw


def attention_heads(cfg, fn: Callable) -> int | None:
    """The head count for ``attn_scale``: model.kwargs.heads, else the factory's default for ``heads``."""
    heads = (cfg.kwargs or {}).get("heads")
    sig = _signature(fn)
    if heads is None and sig is not None and "heads" in sig.parameters:
        default = sig.parameters["heads"].default
        heads = None if default is inspect.Parameter.empty else default
    return heads


def scales(cfg) -> dict:
    """The numbers the factory takes from the run's parametrization (``attn_scale``, ``readout_mult``)."""
    from mupbench import parametrization as P

    m = cfg.model
    fn = load_factory(m.factory)
    out = {}
    if takes(fn, "attn_scale"):
        heads, d0 = attention_heads(m, fn), m.base_width
        d = round(d0 * m.width_mult)
        out["attn_scale"] = P.attention_scale(cfg.parametrization.attn_scale, cfg.parametrization.name, d // heads, d0 // heads, d)
    if takes(fn, "readout_mult"):
        out["readout_mult"] = 1.0 / m.width_mult if cfg.parametrization.name in ("mup", "mf") else 1.0
    return out


def _call(fn: Callable, cfg, spec, extras: dict) -> nn.Module:
    kw = _kwargs(cfg, fn)
    extras = {k: v for k, v in extras.items() if takes(fn, k)}
    call = f"{cfg.factory}(width_mult={cfg.width_mult:g}, spec, {', '.join(f'{k}={show(v)}' for k, v in {**kw, **extras}.items())})"
    sig = _signature(fn)
    if sig is not None:
        try:
            sig.bind(float(cfg.width_mult), spec, **kw, **extras)
        except TypeError as e:
            raise ConfigError(KEY, f"{call.replace(', )', ')')} does not fit its signature {cfg.factory}{sig} ({e}); "
                                   f"the factory is function(width_mult, spec, **model.kwargs)") from None
    try:
        model = fn(float(cfg.width_mult), spec, **kw, **extras)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 — the user's code: one line saying where and what
        fractional = any(w in str(e) for w in ("tuple of ints", "SymInt", "cannot be interpreted as an integer", "must be an integer", "not an integer"))
        hint = ("sizes must be integers: round them in the factory, e.g. int(64 * width_mult), or pick a width_mult "
                "that makes them whole" if fractional else "fix the factory or its model.kwargs")
        raise ConfigError("model.width_mult" if fractional else KEY,
                          f"{call.replace(', )', ')')} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; {hint}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(KEY, f"{cfg.factory} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def build(cfg, spec, _attn: float | None = None, **extras) -> nn.Module:
    """The factory's model at ``cfg.width_mult``: the engine passes ``scales(cfg)`` (and the depth
    rule's ``residual_scale``) as ``extras``; the built-ins' attention argument is unused."""
    return _call(load_factory(cfg.factory), cfg, spec, extras)


def check(cfg, spec) -> None:
    """Build the model at ζ and at ζ = 1 on the meta device and infer every role: a factory that
    cannot be imported or called, returns no Module, or builds another structure at another
    width is one ConfigError here, before any work."""
    from mupbench.models import scaled
    from mupbench.roles import infer_roles

    fn = load_factory(cfg.factory)
    if takes(fn, "attn_scale"):
        heads = attention_heads(cfg, fn)
        if not isinstance(heads, int) or heads < 1:
            raise ConfigError("model.kwargs.heads", f"{cfg.factory} takes attn_scale, which needs the head count: set "
                                                    f"+model.kwargs.heads=N (or give the factory's heads a default)")
        for zeta in (1.0, cfg.width_mult):
            d = cfg.base_width * zeta
            if d != int(d) or int(d) % heads:
                raise ConfigError("model.base_width", f"{cfg.factory} takes attn_scale: model.base_width must be d_model at "
                                                      f"ζ = 1 and base_width·ζ = {d:g} must split into {heads} heads")
    try:
        scaled(cfg.base_width, cfg.width_mult)
    except ConfigError as e:
        raise ConfigError(e.key, f"{str(e).split(': ', 1)[1]}; or set model.base_width to your model's width at ζ = 1 "
                                 f"(the records' width is base_width·ζ)") from None
    extras = dict.fromkeys(EXTRAS, 1.0)  # numbers only: they change no shape
    base_cfg = cfg.copy()
    base_cfg.width_mult = 1.0
    with torch.device("meta"):
        model, base = _call(fn, cfg, spec, extras), _call(fn, base_cfg, spec, extras)
    infer_roles(model, base, key=KEY)


def notes(cfg, model: nn.Module) -> list[str]:
    """print_params' warnings: what mupbench cannot do for this model as written."""
    fn = load_factory(cfg.factory)
    out = []
    attention = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower()]
    if attention and not takes(fn, "attn_scale"):
        out.append(f"warning: {attention[0]} looks like attention, but {cfg.factory} takes no attn_scale: μP's 1/d_head logit "
                   f"scale is not applied; add an attn_scale=None parameter to the factory and scale the logits by it "
                   f"(SPEC §1.3), with +model.kwargs.heads=N and model.base_width=d_model at ζ = 1")
    params = {n for n, _ in model.named_parameters()}
    tied = [n for n, m in model.named_modules() for pn, p in m.named_parameters(recurse=False)
            if isinstance(m, nn.Linear) and f"{n}.{pn}" not in params]
    if tied and not takes(fn, "readout_mult"):
        out.append(f"warning: {tied[0]} shares its weight with another module (tied): μP needs its logits × 1/ζ; "
                   f"add a readout_mult=1.0 parameter to the factory and multiply the tied readout's output by it")
    return out
