"""Which points of a sweep train together: points that differ only in ``seed`` and
``optimizer.lr`` form one group (one stacked ensemble, ``mupbench.lifecycle.run_group``).

Composing one point of a multirun costs Hydra about half a second (it reads every YAML file
again): more than training a small network. Points that differ only in plain seed and k values
are therefore composed once per group; the others copy that config and set the two keys, and
their run dirs come from the overrides as Hydra would name them (``rundirs.run_dir_function``).
"""

from __future__ import annotations

import copy
import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mupbench.records import ensemble_key
from mupbench.sweep.rundirs import run_dir_function, task_and_run_dir

BATCHED_KEYS = ("seed", "optimizer.lr")  # the axes a group may vary along


def group_indices(cfgs: Sequence[DictConfig], lrs: bool = True) -> list[list[int]]:
    """Indices of ``cfgs`` grouped by what one ensemble shares (``records.ensemble_key``: the whole
    config except the seed, and k if ``lrs``), groups in order of first appearance."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, cfg in enumerate(cfgs):
        groups[ensemble_key(cfg, lrs)].append(i)
    return list(groups.values())


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
