"""The coordinate check (SPEC §6, Figure 1): do a network's coordinates stay the same size as it
gets wider (``coord.axis=width``), or deeper (``coord.axis=depth``: model.blocks, each depth rule of
``coord.depth_alphas``, SPEC-AXES §3)?

For every parametrization × width × seed, train a few steps of the real run (the one assembly
step, :func:`mupbench.assemble.build_run`) and, at chosen steps, record the mean |·| of the network
output, of every module's activation (forward hooks), and of every parameter's value, raw gradient
and actual update ΔW (after minus before the optimizer step). Step t means: the forward and
backward pass on the t-th batch (t = 0: at init), then the update of that step. Over depth it also
records the residual stream (the last block's output, ``activation:stream``), that step's change of
it on the step's batch (``update:stream``: after minus before the update, both in eval mode), and
the change of the branches' sum alone (``update:branches``: the stream less the first block's
input, so without the embedding's own change, which dominates the ViT's stream).

:func:`coord_check` (a tidy DataFrame), :func:`fit_slopes` (the slope of log mean|·| against log
width: 0 = width-stable, 1 = grows like the width), :func:`assert_width_stable` (for pytest),
:func:`run_and_report` (what ``python -m mupbench.coord_check`` does) and
:func:`mupbench.analysis.plot_coord_check`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from mupbench import parametrization as P
from mupbench.assemble import build_run, generator, optimizer_groups, resolve_device
from mupbench.config import CoordCheckOptions, validate
from mupbench.data import load_splits
from mupbench.optim import build_optimizer

KINDS = ("output", "activation", "weight", "grad", "update")
STABLE_KINDS = ("output", "activation")  # Θ(1) under μP by design; what assert_width_stable checks
STREAM, BRANCHES = "stream", "branches"  # over depth: activation:stream, update:stream, update:branches
DEPTH_CHECKED = (f"update:{STREAM}", f"update:{BRANCHES}")  # checked over depth besides output and activations
AXES = ("width", "depth")

PlanHook = Callable[[list], list]  # list[ParamPlan] -> list[ParamPlan]




def _mean_abs(t) -> torch.Tensor | None:
    if isinstance(t, (tuple, list)):
        t = next((x for x in t if isinstance(x, torch.Tensor)), None)
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        return None
    return t.detach().abs().mean()


def _stream_hook(model) -> tuple[dict, list]:
    """Hooks on the model's ``residual_stack``: {"x": the last block's latest output, "in": the
    first block's latest input}."""
    seen: dict = {}
    stack = getattr(model, "residual_stack", None)
    if stack is None:
        return seen, []
    blocks = model.get_submodule(stack)
    return seen, [blocks[-1].register_forward_hook(lambda m, args, out: seen.__setitem__("x", out.detach())),
                  blocks[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("in", args[0].detach()))]


@torch.no_grad()
def _probe(model, x, seen: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(the stream, the branches' sum: the stream less the stack's input) on ``x`` in eval mode (no
    dropout, no random draws), the model left in train mode."""
    model.eval()
    try:
        model(x)
    finally:
        model.train()
    return seen["x"].clone(), seen["x"] - seen["in"]


def _one_run(cfg: DictConfig, steps: list[int], splits, plan_hook: PlanHook | None, stream: bool = False) -> list[dict]:
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
    seen, more = _stream_hook(model) if stream else ({}, [])
    handles += more
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
                if more:
                    records.append((step, "activation", STREAM, seen["x"].abs().mean()))
                    recording[0] = False  # the probes leave the step's activations as they are
                    s0, b0 = _probe(model, x, seen)
            run.optimizer.step()
            if more and step in steps:
                s1, b1 = _probe(model, x, seen)
                records += [(step, "update", STREAM, (s1 - s0).abs().mean()), (step, "update", BRANCHES, (b1 - b0).abs().mean())]
            if step not in steps:
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
    plan = {e.name: e for e in run.plan}
    rows = [{"step": s, "kind": k, "name": n, "role": plan[n].role if k in ("weight", "grad", "update") and n in plan else None,
             "value": v} for (s, k, n, _), v in zip(records, values)]
    if stream:  # over depth: which parameters are the blocks' weight matrices (figure1_coords picks one)
        for r in rows:
            e = plan.get(r["name"]) if r["kind"] in ("weight", "grad", "update") else None
            r["block_matrix"] = e is not None and e.block and e.kind == "weight"
    return rows


def rule_label(alpha) -> str:
    """A depth rule as coord.depth_alphas spells it: null (no depth rule), 0.5, 1."""
    return "null" if alpha is None else f"{float(alpha):g}"


def points(cfg: DictConfig, axis: str, values: list, params: list[str], alphas: list) -> list[tuple[dict, DictConfig]]:
    """The runs of one check, without seeds: (its labels, its config) per parametrization × axis
    value — the widths (model.width_mult), or over depth each depth rule × model.blocks."""
    out = []
    for param in params:
        for alpha in (alphas if axis == "depth" else [cfg.parametrization.get("depth_alpha")]):
            for v in values:
                c = cfg.copy()
                c.parametrization.name = param
                if axis == "width":
                    c.model.width_mult = float(v)
                    labels = {"parametrization": param, "width_mult": float(v)}
                else:
                    c.parametrization.depth_alpha, c.model.blocks = alpha, int(v)
                    labels = {"parametrization": param, "depth_alpha": rule_label(alpha), "blocks": int(v),
                              "width_mult": float(c.model.width_mult)}
                out.append(({**labels, "width": int(round(c.model.base_width * c.model.width_mult))}, c))
    return out


def coord_check(cfg: DictConfig, widths: Iterable[float] | None = None, steps: Iterable[int] | None = None,
                seeds: Iterable[int] | None = None, parametrizations: Iterable[str] | None = None,
                plan_hook: PlanHook | None = None, axis: str | None = None, blocks: Iterable[int] | None = None,
                depth_alphas: Iterable | None = None) -> pd.DataFrame:
    """Mean |·| of every coordinate over parametrizations × widths × seeds × steps, or with
    ``axis="depth"`` over parametrizations × depth rules (``depth_alphas``) × ``blocks`` × seeds × steps.

    ``cfg`` is a composed run config (e.g. :func:`mupbench.config.compose`); the lists default to
    ``cfg.coord`` when it has one (conf/coord_check.yaml). ``plan_hook`` may rewrite the plan
    (init std, lr_mult) after assembly, to check a deliberately altered parametrization.
    Returns a tidy frame: parametrization, width_mult, width (over depth: parametrization,
    depth_alpha, blocks, width_mult, width), seed, step, kind (output | activation | weight | grad |
    update), name (module or parameter), role (a parameter's input | hidden | output | scalar),
    (over depth: block_matrix, whether it is a block's weight matrix), coord (``kind:name``, or
    ``output``), value.
    """
    opts = cfg.get("coord") or OmegaConf.structured(CoordCheckOptions)
    axis = axis or opts.get("axis", "width")
    values = list(widths or opts.widths) if axis == "width" else list(blocks or opts.blocks)
    alphas = list(depth_alphas if depth_alphas is not None else opts.get("depth_alphas", [None]))
    steps = sorted(set(steps if steps is not None else opts.steps))
    seeds = list(seeds if seeds is not None else opts.seeds)
    params = list(parametrizations or opts.parametrizations)
    splits = load_splits(cfg.dataset, resolve_device(cfg.train.device))  # loaded once, shared
    rows = []
    for labels, c in points(cfg, axis, values, params, alphas):
        for seed in seeds:
            c.seed = int(seed)
            validate(c)
            for r in _one_run(c, steps, splits, plan_hook, stream=axis == "depth"):
                rows.append({**labels, "seed": int(seed), **r})
    df = pd.DataFrame(rows)
    df["coord"] = np.where(df["kind"] == "output", "output", df["kind"] + ":" + df["name"])
    return df


def axis_of(df: pd.DataFrame) -> tuple[str, tuple[str, ...], str]:
    """(the x column, the labels of one curve, the count column) of a frame of :func:`coord_check`."""
    if "blocks" in df.columns:
        return "blocks", ("parametrization", "depth_alpha"), "n_blocks"
    return "width", ("parametrization",), "n_widths"


def fit_slopes(df: pd.DataFrame, by=None) -> pd.DataFrame:
    """Per ``by`` group (default: parametrization [, depth_alpha], coord, step): the least-squares
    slope of log mean|·| (averaged over seeds) against log width — the exponent a in mean|·| ∝
    width^a — or over depth against log blocks, with the number of widths (blocks) it rests on."""
    x, labels, count = axis_of(df)
    by = list(by or (*labels, "coord", "step"))
    mean = df.groupby([*by, "kind", x], observed=True, sort=True)["value"].mean().reset_index()
    rows = []
    for key, g in mean.groupby(by, observed=True, sort=True):
        g = g[g["value"] > 0]
        slope = np.polyfit(np.log(g[x]), np.log(g["value"]), 1)[0] if g[x].nunique() > 1 else np.nan
        rows.append({**dict(zip(by, key)), "kind": g["kind"].iloc[0] if len(g) else None, "slope": slope,
                     count: g[x].nunique()})
    return pd.DataFrame(rows)


def checked(slopes: pd.DataFrame) -> pd.DataFrame:
    """The slopes the pass/fail verdict reads: output and activations; over depth also the stream's
    update, only the depth rules (no depth rule is the reference that grows) and only coordinates
    that every depth has (block i of 8 and block i of 16 sit at different relative depths)."""
    if "depth_alpha" not in slopes.columns:
        return slopes[slopes["kind"].isin(STABLE_KINDS)]
    sel = slopes[slopes["kind"].isin(STABLE_KINDS) | slopes["coord"].isin(DEPTH_CHECKED)]
    return sel[(sel["depth_alpha"] != "null") & (sel["n_blocks"] == slopes["n_blocks"].max())]


def _curve(r) -> str:
    return r.parametrization + (f" α={r.depth_alpha}" if getattr(r, "depth_alpha", None) is not None else "")


def assert_width_stable(df: pd.DataFrame, max_slope: float = 0.25, kinds=STABLE_KINDS, steps=None,
                        parametrization: str | None = None) -> pd.DataFrame:
    """Assert that no coordinate of ``kinds`` (at ``steps``, of ``parametrization``; default all)
    grows with width (over depth: with blocks) faster than x^max_slope. Raises AssertionError
    naming the worst ones; returns the slopes that were checked."""
    sel = df[df["kind"].isin(kinds)]
    if steps is not None:
        sel = sel[sel["step"].isin(list(steps))]
    if parametrization is not None:
        sel = sel[sel["parametrization"] == parametrization]
    if sel.empty:
        raise AssertionError(f"no coordinates of kinds {tuple(kinds)} to check")
    slopes = fit_slopes(sel)
    if "n_blocks" in slopes.columns:  # over depth: the coordinates every depth has (see checked)
        slopes = slopes[slopes["n_blocks"] == slopes["n_blocks"].max()]
    if not slopes["slope"].notna().any():
        raise AssertionError("too few widths with a non-zero value to fit a slope")
    bad = slopes[slopes["slope"] > max_slope].sort_values("slope", ascending=False)
    if len(bad):
        axis = "depth" if "depth_alpha" in slopes.columns else "width"
        worst = ", ".join(f"{_curve(r)} {r.coord} @ step {r.step}: {r.slope:.2f}" for r in bad.head(5).itertuples())
        raise AssertionError(f"{len(bad)} coordinate(s) grow with {axis} (slope > {max_slope}): {worst}")
    return slopes


def figure1_coords(df: pd.DataFrame, layer: str | None = None) -> list[str]:
    """The paper's Figure 1 panels: the output, and the update, raw gradient and weight of
    ``layer`` (default: the last hidden-role weight matrix). Over depth: the output, the stream,
    its update and the branches' update, and the update of ``layer`` (default: the last block weight matrix that every
    depth has)."""
    if "blocks" in df.columns:
        if layer is None:
            upd = df[(df["kind"] == "update") & df["block_matrix"].fillna(False).astype(bool)]
            every = upd.groupby("name", sort=False)["blocks"].nunique()
            every = every[every == df["blocks"].nunique()].index.tolist()
            if not every:
                raise ValueError("no block weight matrix at every depth (does the model name its residual_stack?)")
            layer = every[-1]
        return ["output", f"activation:{STREAM}", *DEPTH_CHECKED, f"update:{layer}"]
    if layer is None:
        hidden = df.loc[(df["kind"] == "weight") & (df["role"] == "hidden"), "name"].drop_duplicates()
        hidden = [n for n in hidden if n.endswith("weight")]
        if not hidden:
            raise ValueError("the model has no hidden weight matrix (does its width grow with ζ?)")
        layer = hidden[-1]
    return ["output", f"update:{layer}", f"grad:{layer}", f"weight:{layer}"]


def figure_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(the frame :func:`mupbench.analysis.plot_coord_check` draws, its x column): over depth one
    row of panels per parametrization × depth rule, x = blocks."""
    if "blocks" not in df.columns:
        return df, "width_mult"
    from mupbench.analysis.figures import PARAM_NAMES

    names = {a: "no depth rule" if a == "null" else f"α = {a}" for a in df["depth_alpha"].unique()}
    label = df["parametrization"].map(lambda p: PARAM_NAMES.get(p, p)) + ", " + df["depth_alpha"].map(names)
    return df.assign(parametrization=label), "blocks"


def run_and_report(cfg: DictConfig, out: Path) -> pd.DataFrame:
    """What the entrypoint does: run, write coord.csv / slopes.csv / figure1.{png,pdf}, print."""
    from mupbench.analysis.figures import plot_coord_check, save_figure

    df = coord_check(cfg)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "coord.csv", index=False)
    slopes = fit_slopes(df)
    slopes.to_csv(out / "slopes.csv", index=False)
    coords = figure1_coords(df)
    frame, x = figure_frame(df)
    save_figure(plot_coord_check(frame, coords, x=x), out / "figure1")
    depth = "depth_alpha" in slopes.columns
    columns = ["parametrization", "depth_alpha"] if depth else "parametrization"
    table = slopes[slopes["coord"].isin(coords)].pivot_table(index=["coord", "step"], columns=columns, values="slope")
    over = (f"log blocks over model.blocks = {', '.join(str(b) for b in cfg.coord.blocks)}" if depth else
            f"log width (0 = stable, 1 = ∝ width) over ζ = {', '.join(f'{w:g}' for w in cfg.coord.widths)}")
    print(f"slope of log mean|·| vs {over}:")
    print(table.round(3).to_string())
    what = "output/activation/stream/branches-update" if depth else "output/activation"
    for key, worst in checked(slopes).groupby(columns)["slope"].max().items():
        name = " α=".join(key) if depth else key
        verdict = "stable" if worst <= cfg.coord.max_slope else f"GROWS with {'depth' if depth else 'width'}"
        print(f"{name}: largest {what} slope {worst:.3f} -> {verdict} (max_slope {cfg.coord.max_slope})")
    if depth:
        for r in slopes[(slopes["depth_alpha"] == "null") & slopes["coord"].isin(DEPTH_CHECKED)].itertuples():
            print(f"{r.parametrization} without a depth rule (the reference, not checked): {r.coord} slope {r.slope:.3f} @ step {r.step}")
    print(f"coord check: {out}")
    return df
