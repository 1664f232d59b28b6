"""Your own data: ``dataset=custom dataset.factory=package.module:function``.

The factory is any importable callable ``function(**dataset.kwargs)`` (it also receives
``split_seed`` and ``root`` when its signature names them) that returns a mapping::

    {"task": "regression" | "classification" | "lm",
     "train": ..., "val": ..., "test": ...,
     # optional:
     "num_outputs": int,   # classes (default: the largest label + 1) or regression targets
     "context": int,       # lm only, required: tokens per training window
     "vocab": int,         # lm only (default: the largest token id + 1)
     "info": dict}         # provenance kept in the run's record

Splits: for regression and classification a pair ``(x, y)`` of tensors (rows first) or a small
``torch.utils.data.Dataset`` of ``(x, y)`` items (stacked into tensors once); for lm a 1-D
tensor of token ids (or a Dataset of ids). Inputs become float32, labels and ids int64, a 1-D
regression target one column. The result is cached per process (validation, print_params and
the run call the factory once), moved to the run's device, and from there on the samplers,
losses, evaluation and records treat it as any built-in dataset.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict

import torch
from omegaconf import MISSING, OmegaConf

from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DatasetConfig, DataSpec, Splits
from mupbench.models.custom import CHECKS as MODEL_CUSTOM_CHECKS
from mupbench.models.custom import load_factory, takes
from mupbench.rules import ConfigError

KEY = "dataset.factory"
TASKS = ("regression", "classification", "lm")


@dataclass
class Config(DatasetConfig):
    name: str = "custom"
    factory: str = MISSING  # package.module:function, called as function(**kwargs)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # the factory's own options (plain values)


CHECKS = {**DATA_CHECKS, "factory": MODEL_CUSTOM_CHECKS["factory"], "kwargs": MODEL_CUSTOM_CHECKS["kwargs"]}
_CACHE: dict[str, tuple[DataSpec, tuple, tuple, tuple, dict]] = {}


def _materialise(split: Any, name: str, n_items: int) -> tuple[torch.Tensor, ...]:
    """A split as a tuple of CPU tensors: tensors as given, a Dataset's items stacked."""
    if isinstance(split, torch.Tensor):
        split = (split,)
    if isinstance(split, torch.utils.data.Dataset) and not isinstance(split, (tuple, list)):
        try:
            items = [split[i] for i in range(len(split))]
        except Exception as e:  # noqa: BLE001
            raise ConfigError(KEY, f"the {name} Dataset cannot be read item by item ({type(e).__name__}: {e})") from None
        if not items:
            raise ConfigError(KEY, f"the {name} split is empty")
        items = [it if isinstance(it, (tuple, list)) else (it,) for it in items]
        split = tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(len(items[0])))
    if not isinstance(split, (tuple, list)) or len(split) != n_items or not all(isinstance(t, torch.Tensor) for t in split):
        want = "a 1-D tensor of token ids" if n_items == 1 else "a pair (x, y) of tensors or a Dataset of (x, y) items"
        raise ConfigError(KEY, f"the {name} split is a {type(split).__name__}; give {want}")
    if n_items == 2 and split[0].shape[0] != split[1].shape[0]:
        raise ConfigError(KEY, f"the {name} split has {split[0].shape[0]} inputs but {split[1].shape[0]} targets")
    return tuple(t.detach().cpu() for t in split)


def _key(cfg) -> str:
    kw = OmegaConf.to_container(cfg.kwargs) if OmegaConf.is_config(cfg.kwargs) else dict(cfg.kwargs or {})
    return json.dumps([cfg.factory, kw, cfg.split_seed, cfg.root], sort_keys=True, default=str)


def _call(cfg) -> tuple[DataSpec, tuple, tuple, tuple, dict]:
    key = _key(cfg)
    if key in _CACHE:
        return _CACHE[key]
    fn = load_factory(cfg.factory, KEY)
    kw = OmegaConf.to_container(cfg.kwargs) if OmegaConf.is_config(cfg.kwargs) else dict(cfg.kwargs or {})
    for extra in ("split_seed", "root"):
        if takes(fn, extra) and cfg.get(extra) is not None:
            kw[extra] = cfg[extra]
    try:
        inspect.signature(fn).bind(**kw)
    except TypeError as e:
        raise ConfigError(KEY, f"{cfg.factory}(**dataset.kwargs) cannot take {sorted(kw)} ({e})") from None
    except ValueError:
        pass  # no signature to read (a builtin): just call it
    try:
        out = fn(**kw)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 — the user's code: one line saying what
        raise ConfigError(KEY, f"{cfg.factory}() raised {type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from None
    if not isinstance(out, Mapping) or not {"task", "train", "val", "test"} <= set(out):
        raise ConfigError(KEY, f"{cfg.factory} returned a {type(out).__name__}; return a dict with task, train, val and test")
    task = out["task"]
    if task not in TASKS:
        raise ConfigError(KEY, f"{cfg.factory} returned task={task!r}; use one of {', '.join(TASKS)}")
    n_items = 1 if task == "lm" else 2
    splits = [_materialise(out[s], s, n_items) for s in ("train", "val", "test")]
    info = {"source": f"{cfg.factory} (dataset=custom)", **dict(out.get("info") or {})}
    if task == "lm":
        splits = [(ids.reshape(-1).long(),) for (ids,) in splits]
        if not isinstance(out.get("context"), int) or out["context"] < 1:
            raise ConfigError(KEY, f"{cfg.factory} returned an lm dataset without an integer context (tokens per window)")
        vocab = out.get("vocab") or 1 + max(int(ids.max()) for (ids,) in splits)
        for name, (ids,) in zip(("train", "val", "test"), splits):
            if ids.numel() <= out["context"]:
                raise ConfigError(KEY, f"the {name} split's {ids.numel()} tokens do not fill one window of context {out['context']} (+1)")
        spec = DataSpec("lm", (out["context"],), int(vocab))
    else:
        fix = (lambda x, y: (x.float(), y.long())) if task == "classification" else \
              (lambda x, y: (x.float(), y.float().reshape(len(y), -1)))
        splits = [fix(*s) for s in splits]
        if task == "classification":
            default = 1 + max(int(s[1].max()) for s in splits)
        else:
            default = splits[0][1].shape[1]
        spec = DataSpec(task, tuple(splits[0][0].shape[1:]), int(out.get("num_outputs") or default))
    info["sizes"] = {n: int(s[0].shape[0]) for n, s in zip(("train", "val", "test"), splits)}
    _CACHE[key] = (spec, *splits, info)
    return _CACHE[key]


def spec(cfg) -> DataSpec:
    if OmegaConf.is_missing(cfg, "factory") if OmegaConf.is_config(cfg) else cfg.factory == MISSING:
        return DataSpec("none", (), 0)  # no factory given (listing what fits a model): nothing fits
    return _call(cfg)[0]


def rows(cfg) -> tuple[int, int] | None:
    s, train, val, _, _ = _call(cfg)
    return None if s.task == "lm" else (train[0].shape[0], val[0].shape[0])


def load(cfg, device: torch.device) -> Splits:
    s, train, val, test, info = _call(cfg)
    to = lambda ts: tuple(t.to(device) for t in ts)  # noqa: E731
    return Splits(s, to(train), to(val), to(test), dict(info))
