"""The coordinate check (SPEC §6, Figure 1): do a network's coordinates stay the same size as it
gets wider?

For every parametrization × width × seed, train a few steps of the real run (the one assembly
step, :func:`mupbench.assemble.build_run`) and, at chosen steps, record the mean |·| of the network
output, of every module's activation (forward hooks), and of every parameter's value, raw gradient
and actual update ΔW (after minus before the optimizer step). Step t means: the forward and
backward pass on the t-th batch (t = 0: at init), then the update of that step.

:func:`coord_check` (a tidy DataFrame), :func:`fit_slopes` (the slope of log mean|·| against log
width: 0 = width-stable, 1 = grows like the width), :func:`assert_width_stable` (for pytest),
:func:`run_and_report` (what ``python -m mupbench.coord_check`` does) and
:func:`mupbench.analysis.plot_coord_check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional

import numpy as np
import pandas as pd
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from mupbench import parametrization as P
from mupbench.assemble import build_run, generator, optimizer_groups, resolve_device
from mupbench.config import Config, validate
from mupbench.data import load_splits
from mupbench.optim import build_optimizer

KINDS = ("output", "activation", "weight", "grad", "update")
STABLE_KINDS = ("output", "activation")  # Θ(1) under μP by design; what assert_width_stable checks

PlanHook = Callable[[list], list]  # list[ParamPlan] -> list[ParamPlan]


@dataclass
class CoordCheckOptions:
    widths: List[float] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    steps: List[int] = field(default_factory=lambda: [0, 3, 6, 9, 12])  # record at these steps
    seeds: List[int] = field(default_factory=lambda: [0])
    parametrizations: List[str] = field(default_factory=lambda: ["sp", "mup"])
    max_slope: float = 0.25  # the slope above which a coordinate counts as growing with width
    out: Optional[str] = None  # where to write; None = the Hydra run dir


@dataclass
class CoordCheckConfig(Config):
    coord: CoordCheckOptions = field(default_factory=CoordCheckOptions)


ConfigStore.instance().store(name="coord_check_schema", node=CoordCheckConfig)


def _mean_abs(t) -> torch.Tensor | None:
    if isinstance(t, (tuple, list)):
        t = next((x for x in t if isinstance(x, torch.Tensor)), None)
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        return None
    return t.detach().abs().mean()


def _one_run(cfg: DictConfig, steps: list[int], splits, plan_hook: PlanHook | None) -> list[dict]:
    run = build_run(cfg, splits=splits)
    model = run.model
    if plan_hook is not None:  # a deliberately altered parametrization: re-init and new optimizer
        run.plan = plan_hook(run.plan)
        P.initialize(model, run.plan, generator(run.device, cfg.seed, "init"))
        run.optimizer = build_optimizer(cfg, optimizer_groups(cfg, model, run.plan), run.device)
    params = dict(model.named_parameters())
    recording, acts = [False], {}

    def hook(name):
        def fn(module, args, out):
            if recording[0] and (v := _mean_abs(out)) is not None:
                acts[name] = v
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n and not list(m.children())]
    records: list[tuple[int, str, str, torch.Tensor]] = []
    model.train()
    try:
        for step in range(max(steps) + 1):
            recording[0], acts = step in steps, {}
            x, y = run.train_sampler.next()
            out = model(x)
            loss = run.loss_fn(out, y)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recording[0]:
                before = {n: p.detach().clone() for n, p in params.items()}
            run.optimizer.step()
            if not recording[0]:
                continue
            records.append((step, "output", "output", out.detach().abs().mean()))
            records += [(step, "activation", n, v) for n, v in acts.items()]
            for n, p in params.items():
                records.append((step, "weight", n, before[n].abs().mean()))
                if p.grad is not None:
                    records.append((step, "grad", n, p.grad.detach().abs().mean()))
                records.append((step, "update", n, (p.detach() - before[n]).abs().mean()))
    finally:
        for h in handles:
            h.remove()
    values = torch.stack([r[3].float() for r in records]).cpu().tolist()  # one host sync per run
    roles = {e.name: e.role for e in run.plan}
    return [{"step": s, "kind": k, "name": n, "role": roles.get(n) if k in ("weight", "grad", "update") else None, "value": v}
            for (s, k, n, _), v in zip(records, values)]


def coord_check(cfg: DictConfig, widths: Iterable[float] | None = None, steps: Iterable[int] | None = None,
                seeds: Iterable[int] | None = None, parametrizations: Iterable[str] | None = None,
                plan_hook: PlanHook | None = None) -> pd.DataFrame:
    """Mean |·| of every coordinate over parametrizations × widths × seeds × steps.

    ``cfg`` is a composed run config (e.g. :func:`mupbench.config.compose`); the lists default to
    ``cfg.coord`` when it has one (conf/coord_check.yaml). ``plan_hook`` may rewrite the plan
    (init std, lr_mult) after assembly, to check a deliberately altered parametrization.
    Returns a tidy frame: parametrization, width_mult, width, seed, step, kind (output |
    activation | weight | grad | update), name (module or parameter), role (a parameter's
    input | hidden | output | scalar), coord (``kind:name``, or ``output``), value.
    """
    opts = cfg.get("coord") or OmegaConf.structured(CoordCheckOptions)
    widths = list(widths or opts.widths)
    steps = sorted(set(steps if steps is not None else opts.steps))
    seeds = list(seeds if seeds is not None else opts.seeds)
    params = list(parametrizations or opts.parametrizations)
    splits = load_splits(cfg.dataset, resolve_device(cfg.train.device))  # loaded once, shared
    rows = []
    for param in params:
        for zeta in widths:
            for seed in seeds:
                c = cfg.copy()
                c.parametrization.name, c.model.width_mult, c.seed = param, float(zeta), int(seed)
                validate(c)
                width = int(round(c.model.base_width * zeta))
                for r in _one_run(c, steps, splits, plan_hook):
                    rows.append({"parametrization": param, "width_mult": float(zeta), "width": width, "seed": int(seed), **r})
    df = pd.DataFrame(rows)
    df["coord"] = np.where(df["kind"] == "output", "output", df["kind"] + ":" + df["name"])
    return df


def fit_slopes(df: pd.DataFrame, by=("parametrization", "coord", "step")) -> pd.DataFrame:
    """Per ``by`` group: the least-squares slope of log mean|·| (averaged over seeds) against log
    width — the exponent a in mean|·| ∝ width^a — with the number of widths it rests on."""
    by = list(by)
    mean = df.groupby([*by, "kind", "width"], observed=True, sort=True)["value"].mean().reset_index()
    rows = []
    for key, g in mean.groupby(by, observed=True, sort=True):
        g = g[g["value"] > 0]
        slope = np.polyfit(np.log(g["width"]), np.log(g["value"]), 1)[0] if g["width"].nunique() > 1 else np.nan
        rows.append({**dict(zip(by, key)), "kind": g["kind"].iloc[0] if len(g) else None, "slope": slope,
                     "n_widths": g["width"].nunique()})
    return pd.DataFrame(rows)


def assert_width_stable(df: pd.DataFrame, max_slope: float = 0.25, kinds=STABLE_KINDS, steps=None,
                        parametrization: str | None = None) -> pd.DataFrame:
    """Assert that no coordinate of ``kinds`` (at ``steps``, of ``parametrization``; default all)
    grows with width faster than width^max_slope. Raises AssertionError naming the worst ones;
    returns the slopes that were checked."""
    sel = df[df["kind"].isin(kinds)]
    if steps is not None:
        sel = sel[sel["step"].isin(list(steps))]
    if parametrization is not None:
        sel = sel[sel["parametrization"] == parametrization]
    if sel.empty:
        raise AssertionError(f"no coordinates of kinds {tuple(kinds)} to check")
    slopes = fit_slopes(sel)
    if not slopes["slope"].notna().any():
        raise AssertionError("too few widths with a non-zero value to fit a slope")
    bad = slopes[slopes["slope"] > max_slope].sort_values("slope", ascending=False)
    if len(bad):
        worst = ", ".join(f"{r.parametrization} {r.coord} @ step {r.step}: {r.slope:.2f}" for r in bad.head(5).itertuples())
        raise AssertionError(f"{len(bad)} coordinate(s) grow with width (slope > {max_slope}): {worst}")
    return slopes


def figure1_coords(df: pd.DataFrame, layer: str | None = None) -> list[str]:
    """The paper's Figure 1 panels: the output, and the update, raw gradient and weight of
    ``layer`` (default: the last hidden-role weight matrix)."""
    if layer is None:
        hidden = df.loc[(df["kind"] == "weight") & (df["role"] == "hidden"), "name"].drop_duplicates()
        hidden = [n for n in hidden if n.endswith("weight")]
        if not hidden:
            raise ValueError("the model has no hidden weight matrix (does its width grow with ζ?)")
        layer = hidden[-1]
    return ["output", f"update:{layer}", f"grad:{layer}", f"weight:{layer}"]


def run_and_report(cfg: DictConfig, out: Path) -> pd.DataFrame:
    """What the entrypoint does: run, write coord.csv / slopes.csv / figure1.{png,pdf}, print."""
    from mupbench.analysis.figures import plot_coord_check, save_figure

    df = coord_check(cfg)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "coord.csv", index=False)
    slopes = fit_slopes(df)
    slopes.to_csv(out / "slopes.csv", index=False)
    coords = figure1_coords(df)
    save_figure(plot_coord_check(df, coords), out / "figure1")
    table = slopes[slopes["coord"].isin(coords)].pivot_table(index=["coord", "step"], columns="parametrization", values="slope")
    print(f"slope of log mean|·| vs log width (0 = stable, 1 = ∝ width) over ζ = {', '.join(f'{w:g}' for w in cfg.coord.widths)}:")
    print(table.round(3).to_string())
    stable = slopes[slopes["kind"].isin(STABLE_KINDS)].groupby("parametrization")["slope"].max()
    for param, worst in stable.items():
        verdict = "stable" if worst <= cfg.coord.max_slope else "GROWS with width"
        print(f"{param}: largest output/activation slope {worst:.3f} -> {verdict} (max_slope {cfg.coord.max_slope})")
    print(f"coord check: {out}")
    return df
