"""Synthetic sweeps with known answers, shared by the tests in tests/analysis/.

1. :func:`make_sweep` writes run dirs (``result.json`` + ``metrics.csv``, as the trainer does) of
   setup "mlp_synth", Adam, ζ ∈ {1, 2, 4, 8}, log10 k ∈ {-4, -3.5, -3, -2.5, -2}, seeds 0–2, whose
   seed-mean train loss is exactly exp((log10 k − x0)² − 0.1·log2 ζ), seed offsets ×(0.9, 1.0, 1.1)
   (std = 0.1 × mean), val loss = 2 × train loss:
   - SP: x0 = −2.5 − 0.5·log2 ζ (the optimum drifts 0.5 decades left per doubling; at ζ = 8 it sits
     on the grid's edge), 3 diverged runs (ζ = 4: 1, ζ = 8: 2, all at k = 1e-2, with a tempting tiny
     loss);
   - μP: x0 = −2.8 at every width (between grid points: only the fit finds it), one failed run, one
     run missing altogether;
   plus two unfinished run dirs (metrics.csv only; train.log only) and one unreadable result.json.
2. :func:`parabola_runs` builds a runs frame in memory (no files) for the statistical tests: loss =
   1 + a·(log10 k − c_ζ)² + a seed offset per (ζ, seed) + independent noise per run, with the centre
   c_ζ = centre + shift·log2 ζ moving by a known amount per doubling.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mupbench import analysis as A

WIDTHS = [1, 2, 4, 8]
LOG_K = [-4.0, -3.5, -3.0, -2.5, -2.0]
SEED_FACTOR = {0: 0.9, 1: 1.0, 2: 1.1}
DIVERGED = {("sp", 4, -2.0, 2), ("sp", 8, -2.0, 0), ("sp", 8, -2.0, 1)}
FAILED = {("mup", 2, -3.0, 1)}
MISSING = {("mup", 4, -4.0, 2)}
INIT_TRAIN, INIT_VAL = 5.0, 6.0  # the step-0 row of every fabricated metrics.csv


def x0(param: str, zeta: float) -> float:
    return -2.5 - 0.5 * math.log2(zeta) if param == "sp" else -2.8


def base_loss(param: str, zeta: float, log_k: float) -> float:
    return math.exp((log_k - x0(param, zeta)) ** 2 - 0.1 * math.log2(zeta))


def write_run(run_dir: Path, *, status="completed", param="sp", zeta=1.0, lr=1e-3, seed=0, train=1.0,
              val=2.0, setup="mlp_synth", optimizer="adam", steps=100, error=None, diverged_step=None,
              finished_at="2025-01-01T00:00:00", fingerprint=None, **extra) -> Path:
    """Fabricate a run dir as train.py writes it: result.json + metrics.csv."""
    run_dir.mkdir(parents=True, exist_ok=True)
    model, dataset = setup.split("_", 1)
    record = {
        "status": status, "setup": setup, "model": model, "dataset": dataset, "parametrization": param,
        "optimizer": optimizer, "width_mult": float(zeta), "width": int(16 * zeta), "lr": lr, "seed": seed,
        "num_params": 433, "steps": steps, "steps_done": steps if status == "completed" else steps // 2,
        "min_train_loss": train, "min_val_loss": val, "final_train_loss": train, "final_val_loss": val,
        "diverged_step": diverged_step, "wall_time_s": 1.5, "steps_per_s": 66.0, "error": error,
        "config": {"model": {"name": model, "width_mult": zeta}, "optimizer": {"name": optimizer, "lr": lr}},
        "env": {"python": "3.12", "torch": "2.13", "mupbench": "0.1.0", "device": "cpu"},
        "started_at": "2025-01-01T00:00:00", "finished_at": finished_at,
        "fingerprint": fingerprint or f"fp-{setup}-{param}-{steps}", **extra,
    }
    (run_dir / "result.json").write_text(json.dumps(record))
    pd.DataFrame({"step": [0, 50], "train_loss": [INIT_TRAIN, train], "val_loss": [INIT_VAL, val],
                  "elapsed_s": [0.0, 1.0]}).to_csv(run_dir / "metrics.csv", index=False)
    return run_dir


def make_sweep(root: Path) -> Path:
    """The synthetic sweep of the module docstring, under misleading directory names."""
    i = 0
    for param in ("sp", "mup"):
        for zeta in WIDTHS:
            for log_k in LOG_K:
                for seed, factor in SEED_FACTOR.items():
                    key = (param, zeta, log_k, seed)
                    if key in MISSING:
                        continue
                    i += 1
                    # the names lie on purpose: analysis must read the records, never the names
                    run_dir = root / f"mup_zeta99_lr1_seed7_{i:03d}"
                    loss = base_loss(param, zeta, log_k) * factor
                    if key in DIVERGED:
                        write_run(run_dir, status="diverged", param=param, zeta=zeta, lr=10**log_k, seed=seed,
                                  train=1e-6, val=1e-6, diverged_step=42)
                    elif key in FAILED:
                        write_run(run_dir, status="failed", param=param, zeta=zeta, lr=10**log_k, seed=seed,
                                  train=None, val=None, error="RuntimeError: boom")
                    else:
                        write_run(run_dir, param=param, zeta=zeta, lr=10**log_k, seed=seed, train=loss, val=2 * loss)
    unfinished = root / "interrupted"
    unfinished.mkdir()
    (unfinished / "metrics.csv").write_text("step,train_loss,val_loss,elapsed_s\n0,1.0,1.0,0.0\n")
    started = root / "started"  # killed before its first checkpoint: only Hydra's job log
    started.mkdir()
    (started / "train.log").write_text("[mupbench][INFO] - step 0/100\n")
    broken = root / "broken"
    broken.mkdir()
    (broken / "result.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def runs(sweep_dir) -> pd.DataFrame:
    return A.load_runs(sweep_dir)


# ---- in-memory parabola sweeps ------------------------------------------------------------------

GRID = np.round(np.arange(-4.0, -0.99, 0.25), 10)  # log10 k, 13 points, step 0.25 decades


def parabola_runs(rng, shift: float, widths=(1, 2, 4, 8), seeds: int = 8, centre: float = -2.5, curvature: float = 0.3,
                  seed_sd: float = 0.02, noise_sd: float = 0.01, log_k=GRID, param: str = "mup",
                  setup: str = "mlp_parabola") -> tuple[pd.DataFrame, np.ndarray]:
    """(runs, true seed-mean loss [ζ, k]): see the module docstring. Both min losses hold the
    loss; every run completed; the loss at init is 10."""
    widths, log_k = np.asarray(widths, float), np.asarray(log_k, float)
    centres = centre + shift * np.log2(widths)
    true = 1 + curvature * (log_k[None, :] - centres[:, None]) ** 2  # (W, K)
    W, K = true.shape
    loss = true[:, None, :] + seed_sd * rng.standard_normal((W, seeds, 1)) + noise_sd * rng.standard_normal((W, seeds, K))
    w, s, k = (a.ravel() for a in np.meshgrid(np.arange(W), np.arange(seeds), np.arange(K), indexing="ij"))
    runs = pd.DataFrame({
        "setup": setup, "parametrization": param, "optimizer": "adam", "width_mult": widths[w], "lr": 10 ** log_k[k],
        "seed": s, "status": "completed", "min_train_loss": loss.ravel(), "min_val_loss": loss.ravel(),
        "init_train_loss": 10.0, "init_val_loss": 10.0,
    })
    return runs, true


# ---- sweeps over the new axes (depth, weight-decay mode) ------------------------------------------


def depth_runs(rng, shifts=None, blocks=(2, 4, 8, 16), base_blocks: int = 2, centre: float = -2.0, **kw) -> pd.DataFrame:
    """A depth sweep in memory: :func:`parabola_runs` with the depth (``blocks``) in the place of ζ, at
    ζ = 1, one curve family per depth rule α (``shifts``: α (None = no depth rule) -> the optimum's
    move in decades per doubling of depth); the optimum at depth b is centre + shift·log2 b."""
    shifts = {None: -0.5, 1.0: 0.0} if shifts is None else shifts
    frames = []
    for alpha, shift in shifts.items():
        runs, _ = parabola_runs(rng, shift, widths=blocks, centre=centre, setup="transformer_synth", **kw)
        frames.append(runs.rename(columns={"width_mult": "blocks"}).assign(
            width_mult=1.0, depth_alpha=math.nan if alpha is None else alpha, base_blocks=base_blocks))
    out = pd.concat(frames, ignore_index=True)
    return out.astype({"blocks": "Int64", "base_blocks": "Int64"})


def wd_runs(rng, shifts=None, widths=(1, 2, 4, 8), centre: float = -2.5, **kw) -> pd.DataFrame:
    """A width sweep per weight-decay mode (``shifts``: mode -> decades per doubling of ζ), λ = 0.1."""
    shifts = {"coupled": -0.5, "width_invariant": 0.0, "independent": 0.25} if shifts is None else shifts
    frames = [parabola_runs(rng, shift, widths=widths, centre=centre, **kw)[0].assign(wd_mode=mode, weight_decay=0.1)
              for mode, shift in shifts.items()]
    return pd.concat(frames, ignore_index=True)


def write_frame(root: Path, runs: pd.DataFrame) -> Path:
    """Write a runs frame (as :func:`depth_runs` / :func:`wd_runs` build) as run dirs, the axes in
    each record's config as the trainer writes it."""
    for i, r in enumerate(runs.to_dict("records")):
        config = {"model": {"name": r["setup"].split("_")[0], "width_mult": r["width_mult"]},
                  "optimizer": {"name": "adam", "lr": r["lr"], "weight_decay": r.get("weight_decay", 0.0),
                                "wd_mode": r.get("wd_mode", "coupled")},
                  "parametrization": {"name": r["parametrization"]}}
        if "blocks" in r:
            config["model"].update(blocks=int(r["blocks"]), base_blocks=int(r["base_blocks"]))
            config["parametrization"]["depth_alpha"] = None if pd.isna(r["depth_alpha"]) else r["depth_alpha"]
        write_run(root / f"run{i:04d}", param=r["parametrization"], zeta=r["width_mult"], lr=r["lr"], seed=int(r["seed"]),
                  train=r["min_train_loss"], val=r["min_val_loss"], setup=r["setup"], config=config, fingerprint=f"fp{i}")
    return root
