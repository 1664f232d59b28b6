"""The analysis over the new axes on constructed sweeps with known optima (sweep_factory): a depth
sweep (the optimum moves −0.5 decades per doubling of depth without a depth rule, not at all with
α = 1) and a width sweep per weight-decay mode (−0.5, 0, +0.25 decades per doubling of ζ): every
axis value is its own group, the optimum per depth is the constructed one, the verdicts over depth
and per wd mode come out as constructed, and the report draws and names them."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sweep_factory import GRID, depth_runs, wd_runs, write_frame

from mupbench import analysis as A
from mupbench.analysis.report import main as report_main

BLOCKS = (2, 4, 8, 16)


@pytest.fixture(scope="module")
def deep():
    return depth_runs(np.random.default_rng(0), blocks=BLOCKS)


def true_optimum(alpha, blocks) -> float:
    return -2.0 + (0.0 if alpha == 1.0 else -0.5) * np.log2(blocks)


def test_every_depth_and_alpha_is_its_own_group(deep):
    stats = A.seed_stats(deep)
    assert len(stats) == 2 * len(BLOCKS) * len(GRID)  # α × blocks × k cells, none merged
    assert (stats["n_runs"] == 8).all()
    t2 = A.table2(deep)
    assert len(t2) == 2 * len(BLOCKS) and t2["depth_alpha"].isna().sum() == len(BLOCKS)


def test_the_optimum_per_depth_is_the_constructed_one(deep):
    opt = A.optimal_lr(deep, "min_val_loss", n_boot=200, axis="blocks")
    assert len(opt) == 2 * len(BLOCKS) and set(opt["blocks"]) == set(BLOCKS)
    for r in opt.itertuples():
        truth = true_optimum(r.depth_alpha, r.blocks)
        assert abs(np.log10(r.lr_fit) - truth) < 0.06, (r.depth_alpha, r.blocks)
        assert np.log10(r.lr_lo) - 0.02 <= truth <= np.log10(r.lr_hi) + 0.02
    drift = A.optimum_drift(opt, axis="blocks").set_index("depth_alpha", drop=False)
    none = drift[drift["depth_alpha"].isna()].iloc[0]
    assert none["slope_per_doubling"] == pytest.approx(-0.5, abs=0.03) and none["n_depths"] == 4
    assert drift.loc[1.0, "slope_per_doubling"] == pytest.approx(0.0, abs=0.03)


def test_the_verdict_over_depth_is_as_constructed(deep):
    v = A.drift_verdicts(deep, "min_val_loss", n_boot=300, axis="blocks")
    assert len(v) == 2 and (v["axis"] == "blocks").all()
    none, one = v[v["depth_alpha"].isna()].iloc[0], v[v["depth_alpha"] == 1.0].iloc[0]
    assert none["verdict"] == "drifts" and none["direction"] == "to smaller k"
    assert none["drift_decades"] == pytest.approx(-1.5, abs=0.08) and (none["blocks_min"], none["blocks_max"]) == (2, 16)
    assert none["drift_lo"] - 0.05 <= -1.5 <= none["drift_hi"] + 0.05  # the CI holds the truth (up to the fit's bias)
    assert one["verdict"] == "transfers" and abs(one["drift_decades"]) < 0.08
    assert "over blocks 2–16" in none["sentence"] and "over blocks 2–16" in one["sentence"]


def test_the_regret_over_depth_is_tuned_at_base_blocks(deep):
    r = A.transfer_regret(deep.assign(base_blocks=4).astype({"base_blocks": "Int64"}), "min_val_loss", n_boot=100,
                          axis="blocks")
    assert set(r["base_blocks"]) == {4} and sorted(set(r["blocks"])) == [2, 8, 16]
    none = r[r["depth_alpha"].isna()].set_index("blocks")
    # tuned at 4 blocks (optimum −3.0), used at 16 (−4.0): 4 grid steps of 0.25 decades to the left
    assert none.loc[16, "shift_steps"] == -4 and none.loc[16, "regret"] == pytest.approx(0.3 * 1.0**2, abs=0.03)
    one = r[r["depth_alpha"] == 1.0]
    assert (one["shift_steps"].abs() <= 1).all() and (one["regret"] < 0.03).all()
    # without base_blocks in the sweep's records: the shallowest depth
    r2 = A.transfer_regret(deep.drop(columns="base_blocks"), "min_val_loss", n_boot=20, axis="blocks")
    assert set(r2["base_blocks"]) == {2}


def test_weight_decay_modes_are_analysed_apart():
    runs = wd_runs(np.random.default_rng(1))
    assert len(A.table2(runs)) == 3
    v = A.drift_verdicts(runs, "min_val_loss", n_boot=300).set_index("wd_mode")
    assert v.loc["coupled", "verdict"] == "drifts" and v.loc["coupled", "direction"] == "to smaller k"
    assert v.loc["coupled", "slope_per_doubling"] == pytest.approx(-0.5, abs=0.04)
    assert v.loc["width_invariant", "verdict"] == "transfers"
    assert v.loc["independent", "slope_per_doubling"] == pytest.approx(0.25, abs=0.04)
    assert v.loc["independent", "verdict"] == "drifts" and v.loc["independent", "direction"] == "to larger k"
    lines = A.report.verdict_lines(A.analyse(runs, n_boot=50, metrics=["min_val_loss"])["transfer"])
    assert len(lines) == 3 and lines[0].startswith("mlp_parabola μP adam wd mode = coupled [min_val_loss]: drifts to smaller k")
    table = A.tables.verdict_table(v.reset_index())
    assert list(table["wd mode"]) == ["coupled", "independent", "width_invariant"] and "λ (wd)" not in table


def test_an_unvaried_sweep_names_no_axis(deep):
    runs = wd_runs(np.random.default_rng(2), shifts={"coupled": 0.0})
    table = A.tables.verdict_table(A.drift_verdicts(runs, n_boot=20))
    assert list(table.columns[:3]) == ["setup", "param", "metric"]
    assert A.analyse(runs, n_boot=20)["transfer_depth"].empty  # no group varies blocks: no depth analysis


@pytest.mark.parametrize("kind", ["depth", "wd"])
def test_the_report_draws_and_names_the_axes(kind, tmp_path, capsys):
    rng = np.random.default_rng(3)
    small = dict(seeds=3, log_k=np.arange(-4.0, -0.9, 0.5))
    runs = (depth_runs(rng, blocks=(2, 4, 8), **small) if kind == "depth"
            else wd_runs(rng, shifts={"coupled": -0.5, "independent": 0.0}, widths=(1, 4), **small))
    out = tmp_path / "report"
    figures = [] if kind == "depth" else ["--no-figures"]  # saving figures is what takes the time
    assert report_main([str(write_frame(tmp_path / "sweep", runs)), "--out", str(out), "--n-boot", "50", *figures]) == 0
    stdout = capsys.readouterr().out
    page = (out / "report.html").read_text()
    names = re.findall(r'<figcaption class="muted">([^<]+)</figcaption>', page)
    shown = A.table2_display(A.table2(A.load_runs(tmp_path / "sweep")))  # Table 2 names the axes that vary
    if kind == "depth":
        assert names == ["transformer_synth_depth", "transformer_synth_depth_optimum"]  # no width figures: one ζ
        for f in ("transfer_depth.csv", "transfer_depth.md", "regret_depth.csv", "optimal_lr_depth.csv",
                  "figures/transformer_synth_depth.png", "figures/transformer_synth_depth_optimum.pdf"):
            assert (out / f).is_file(), f
        for text in ("Does the optimal k transfer across depth?", "α (depth) ∈ {1, none}; blocks ∈ {2, 4, 8}", "<th>α (depth)</th>",
                     "k* (shallowest → deepest)", "Transfer regret across depth"):
            assert text in page, text
        assert "transformer_synth μP adam α (depth) = none [min_val_loss]: drifts to smaller k over blocks 2–8" in stdout
        assert "transformer_synth μP adam α (depth) = 1 [min_val_loss]: transfers over blocks 2–8" in stdout
        assert not (out / "basin_shift.csv").exists()  # one width: no shift over width to speak of
        opt = pd.read_csv(out / "optimal_lr_depth.csv")
        assert len(opt) == 2 * 3 * 2  # α × blocks × metric
        assert list(shown.columns[:4]) == ["setup", "param", "α (depth)", "blocks"] and len(shown) == 6
    else:
        assert names == []
        opt = A.optimal_lr(runs, "min_val_loss", n_boot=0)
        assert list(A.sweep_figures(runs, opt)) == ["mlp_parabola_coupled", "mlp_parabola_coupled_optimum",
                                                     "mlp_parabola_independent", "mlp_parabola_independent_optimum"]
        assert list(shown.columns[:3]) == ["setup", "param", "wd mode"] and len(shown) == 2
        two = pd.concat([runs, runs.assign(weight_decay=1e-4)], ignore_index=True)  # a λ with a dot in it
        stems = list(A.sweep_figures(two, A.optimal_lr(two, "min_val_loss", n_boot=0)))
        assert stems[:2] == ["mlp_parabola_wd0p0001_coupled", "mlp_parabola_wd0p0001_coupled_optimum"]
        assert len(stems) == 8 and not any("." in s for s in stems)
        paths = A.save_figure(A.sweep_figures(two)[stems[0]], tmp_path / "figures" / stems[0])
        assert [p.name for p in paths] == [f"{stems[0]}.png", f"{stems[0]}.pdf"]
        batches = runs[runs["wd_mode"] == "coupled"]  # a setting without a column of its own: a variant
        batches = pd.concat([batches.assign(variant=f"optimizer.betas=[0.9,{b2}], train.batch_size={b}") for b, b2 in
                             ((16, 0.99), (32, 0.999))], ignore_index=True)
        assert set(A.sweep_figures(batches)) == {"mlp_parabola_optimizer-betas=0p9_0p99_train-batch_size=16",
                                                 "mlp_parabola_optimizer-betas=0p9_0p999_train-batch_size=32"}
        assert "wd mode ∈ {coupled, independent}" in page and "<th>wd mode</th>" in page
        assert "Does the optimal k transfer across depth?" not in page and not (out / "transfer_depth.csv").exists()
        assert "mlp_parabola μP adam wd mode = coupled [min_val_loss]: drifts to smaller k over ζ 1–4" in stdout


def test_the_budget_section_appears_only_with_short_runs(tmp_path):
    """A sweep with short runs at the target width (another ``steps``: kept, not deduped) gets the
    budget-matched section, its table and figure; an ordinary sweep does not."""
    rows = []
    for param in ("sp", "mup"):
        for zeta, steps in ((1.0, 1000), (4.0, 1000), (4.0, 25)):
            for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
                for seed in range(4):
                    loss = 1 + 0.1 * (i - 1) ** 2 + 0.01 * seed
                    rows.append({"setup": "mlp_synth", "parametrization": param, "optimizer": "adam",
                                 "width_mult": zeta, "lr": lr, "seed": seed, "status": "completed", "steps": steps,
                                 "steps_done": steps, "min_train_loss": loss, "min_val_loss": loss,
                                 "init_train_loss": 5.0, "init_val_loss": 5.0, "flops_per_step": 100.0 * zeta**2,
                                 "flops_total": 100.0 * zeta**2 * steps})
    runs = A.records.with_axes(pd.DataFrame(rows))
    result = A.analyse(runs, n_boot=20)
    assert len(result["budget"]) and set(result["budget"]["parametrization"]) == {"sp", "mup"}
    assert len(result["table2"]) == 4  # (param × steps): the short runs are a group of their own
    png = next(p for p in A.draw_budget(result["budget"], tmp_path / "budget") if p.suffix == ".png")
    page = A.report._html(A.Sweep(runs=runs), result, {}, ["sweep"], png)
    assert "Budget-matched tuning" in page and page.count("data:image/png;base64,") == 1
    assert "steps ∈ {25, 1000}" in page
    plain = A.analyse(runs[runs["steps"] == 1000], n_boot=20)
    assert plain["budget"].empty
    assert "Budget-matched tuning" not in A.report._html(A.Sweep(runs=runs[runs["steps"] == 1000]), plain, {}, ["s"])


def test_an_axis_that_differs_only_between_setups_is_not_varied():
    """The paper's four setups in one report: the MLP has no blocks, the Transformer 6 — not a
    depth sweep; the report keeps the paper's names. Within a setup, two depths are."""
    mlp = A.records.with_axes(wd_runs(np.random.default_rng(0), shifts={"coupled": 0.0}))
    both = pd.concat([mlp, mlp.assign(setup="transformer_synth", blocks=6)], ignore_index=True).astype({"blocks": "Int64"})
    assert A.varying_axes(both) == ["width_mult"]
    assert list(A.sweep_figures(both)) == ["mlp_parabola", "transformer_synth"]
    assert "blocks" not in A.table2_display(A.table2(both)).columns
    deeper = pd.concat([both, mlp.assign(setup="transformer_synth", blocks=12)], ignore_index=True).astype({"blocks": "Int64"})
    assert A.varying_axes(deeper) == ["blocks", "width_mult"]
