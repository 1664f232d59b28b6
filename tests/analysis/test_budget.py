"""mupbench.analysis.budget (SPEC-AXES §6.2): the arms' selections, regrets and costs on constructed
runs frames with a known answer, an arm that cannot be afforded, the diverged-cell convention, the
bootstrap CI's coverage over replications; and the budget presets: their short runs' steps follow
from each preset's own grid, and every preset × arm composes and validates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mupbench.analysis import budget as B

LRS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]  # K, grid index 0..4; centre-out order 2, 1, 3, 0, 4
T, ZB, ZT = 1000, 1.0, 4.0
FPS = {ZB: 100.0, ZT: 1600.0}  # flops_per_step ∝ ζ²: U / C(ζ_b, T) = 16
SHORT = {0.25: 6, 0.5: 12, 1.0: 25, 2.0: 50}  # ⌊β·1000 / (5·8)⌋ with R = 8


def frame(centres: dict, seeds=8, curvature=0.1, offsets=None, noise=0.0, rng=None, param_centres=None) -> pd.DataFrame:
    """Runs of both parametrizations: loss = 1 + curvature·(i − c)² + offset_seed (+ noise per run),
    i the grid index of k, c = ``centres[slice]`` for slice 'base', 'target' or a short step count
    (``param_centres[p]`` overrides per parametrization); flops_per_step = FPS[ζ]."""
    offsets = np.zeros(seeds) if offsets is None else np.asarray(offsets, float)
    rows = []
    for p in ("sp", "mup"):
        c = {**centres, **(param_centres or {}).get(p, {})}
        slices = [("base", ZB, T), ("target", ZT, T)] + [(s, ZT, s) for s in SHORT.values()]
        for name, zeta, steps in slices:
            for i, lr in enumerate(LRS):
                for s in range(seeds):
                    loss = 1 + curvature * (i - c[name]) ** 2 + offsets[s] + (rng.normal(0, noise) if noise else 0.0)
                    rows.append({"setup": "mlp_synth", "parametrization": p, "optimizer": "adam", "width_mult": zeta,
                                 "lr": lr, "seed": s, "status": "completed", "steps": steps, "steps_done": steps,
                                 "min_val_loss": loss, "init_val_loss": 5.0, "flops_per_step": FPS[zeta],
                                 "flops_total": FPS[zeta] * steps})
    return pd.DataFrame(rows)


# the base optimum on K's edge, the target's one step in, the short runs' optimum moving with T_s
CENTRES = {"base": 4, "target": 3, 6: 0, 12: 4, 25: 1, 50: 3}


def rows_of(table, param, kind):
    return table[(table["parametrization"] == param) & (table["kind"] == kind)].set_index("beta")


def test_selections_regrets_and_costs_equal_the_hand_computed_values():
    offsets = np.linspace(-0.02, 0.02, 8)  # a seed offset shared by every k and slice: the argmins never move
    t = B.budget_comparison(frame(CENTRES, offsets=offsets), n_boot=300)
    U, Cb, R = FPS[ZT] * T, FPS[ZB] * T, 8
    target = lambda i: 1 + 0.1 * (i - 3) ** 2
    for p in ("sp", "mup"):
        tr, sh, orc = rows_of(t, p, "transfer"), rows_of(t, p, "short"), rows_of(t, p, "oracle")
        assert list(tr["arm"].unique()) == [{"sp": "SP-naive", "mup": "μT"}[p]]
        assert list(sh["arm"].unique()) == [{"sp": "SP-short", "mup": "μP-short"}[p]]
        # μT / SP-naive: n_A = ⌊β·16/8⌋ = 0, 1, 2, 4 points from the centre out
        assert tr["n_points"].to_dict() == {0.25: 0, 0.5: 1, 1.0: 2, 2.0: 4}
        assert not tr.loc[0.25, "affordable"] and np.isnan(tr.loc[0.25, "loss"]) and np.isnan(tr.loc[0.25, "lr_selected"])
        # {2} → 1e-2; {2, 1} → 1e-2; {2, 1, 3, 0} → 1e-1 (the base optimum, index 4, is not searched)
        assert tr.loc[[0.5, 1.0, 2.0], "lr_selected"].tolist() == pytest.approx([1e-2, 1e-2, 1e-1])
        assert tr.loc[[0.5, 1.0, 2.0], "regret"].tolist() == pytest.approx([0.1, 0.1, 0.0])
        assert tr.loc[[0.5, 1.0, 2.0], "loss"].tolist() == pytest.approx([target(2), target(2), target(3)])
        assert tr.loc[[0.5, 1.0, 2.0], "tuning_per_U"].tolist() == pytest.approx([0.5, 1.0, 2.0])  # n_A·R·C_b / U
        assert tr.loc[[0.5, 1.0, 2.0], "total_per_U"].tolist() == pytest.approx([1.5, 2.0, 3.0])
        assert tr.loc[[0.5, 1.0, 2.0], "tuning_flops"].tolist() == pytest.approx([n * R * Cb for n in (1, 2, 4)])
        # short runs: T_s = 6, 12, 25, 50 pick indices 0, 4, 1, 3
        assert sh["short_steps"].tolist() == [6, 12, 25, 50]
        assert sh["lr_selected"].tolist() == pytest.approx([1e-4, 1.0, 1e-3, 1e-1])
        assert sh["regret"].tolist() == pytest.approx([0.9, 0.1, 0.4, 0.0])
        assert sh["tuning_per_U"].tolist() == pytest.approx([0.24, 0.48, 1.0, 2.0])  # 40 runs × T_s / T
        assert sh["total_per_U"].tolist() == pytest.approx([1.24, 1.48, 2.0, 3.0])
        assert (orc["lr_selected"] == 0.1).all() and orc["regret"].tolist() == [0.0]
        assert orc["tuning_per_U"].tolist() == orc["total_per_U"].tolist() == [40.0]  # |K|·R·U
        assert np.isnan(orc.index).all() and (t["flops_unit"] == U).all()
        # the seed offset cancels in every regret: its CI is the point; P(k̂ = k*) is 0 or 1 exactly
        ok = t[(t["parametrization"] == p) & t["affordable"]]
        assert ok["regret_lo"].tolist() == pytest.approx(ok["regret"].tolist(), abs=1e-12)
        assert ok["regret_hi"].tolist() == pytest.approx(ok["regret"].tolist(), abs=1e-12)
        for col in ("regret_cf", "regret_cf_lo", "regret_cf_hi"):  # halves of the seeds: the same, offsets cancel
            assert ok[col].tolist() == pytest.approx(ok["regret"].tolist(), abs=1e-12)
        assert ok["p_oracle"].tolist() == [float(r == 0) for r in ok["regret"]]
        # the loss CI is the seed offsets' bootstrap spread around the mean: inside ±0.02, around the point
        assert ((ok["loss_lo"] <= ok["loss"]) & (ok["loss"] <= ok["loss_hi"])).all()
        assert ((ok["loss_hi"] - ok["loss_lo"]) < 0.03).all() and ((ok["loss_hi"] - ok["loss_lo"]) > 0.005).all()
    assert set(t["n_seeds"]) == {8} and len(t) == 2 * (1 + 4 + 4)
    assert set(t.loc[t["kind"] != "oracle", "beta"]) == set(SHORT)


def test_diverged_cells_are_never_selected_and_a_selected_diverged_target_is_charged_its_init_loss():
    runs = frame({**CENTRES, "base": 2})
    # μP: one diverged base run at the base optimum (index 2) → μT at β = ½ (only index 2 searched) has nothing
    # finite to select; at β = 1 ({2, 1}) it takes index 1
    bad = (runs["parametrization"] == "mup") & (runs["width_mult"] == ZB) & (runs["steps"] == T) & (runs["lr"] == 1e-2) & (runs["seed"] == 3)
    runs.loc[bad, ["status", "min_val_loss"]] = ["diverged", 0.01]
    # SP: a diverged target run at k = 1e-2 (index 2): the oracle keeps 1e-1; SP-naive (k̂ = 1e-2) is charged
    # the run's init loss 5 for that seed
    bad = (runs["parametrization"] == "sp") & (runs["width_mult"] == ZT) & (runs["steps"] == T) & (runs["lr"] == 1e-2) & (runs["seed"] == 0)
    runs.loc[bad, ["status", "min_val_loss"]] = ["diverged", 0.01]
    t = B.budget_comparison(runs, n_boot=100)
    mu = rows_of(t, "mup", "transfer")
    assert np.isnan(mu.loc[0.5, "lr_selected"]) and np.isnan(mu.loc[0.5, "loss"])
    assert mu.loc[1.0, "lr_selected"] == pytest.approx(1e-3)
    sp, orc = rows_of(t, "sp", "transfer"), rows_of(t, "sp", "oracle")
    assert orc["lr_selected"].tolist() == [0.1] and sp.loc[1.0, "lr_selected"] == pytest.approx(1e-2)
    charged = (7 * (1 + 0.1) + 5.0) / 8  # seven seeds at 1 + 0.1·(2 − 3)², one at its init loss
    assert sp.loc[1.0, "loss"] == pytest.approx(charged) and sp.loc[1.0, "regret"] == pytest.approx(charged - 1)


def test_no_budget_structure_gives_the_empty_frame_with_its_columns():
    runs = frame(CENTRES)
    plain = runs[runs["steps"] == T]  # no short runs: an ordinary width sweep
    for df in (plain, runs.assign(flops_per_step=np.nan), runs.iloc[:0], runs[runs["width_mult"] == ZT]):
        t = B.budget_comparison(df, n_boot=10)
        assert t.empty and list(t.columns) == B.COLUMNS
    assert B.draw_budget(B.budget_comparison(plain, n_boot=10), Path("unused")) == []


def test_nominal_beta_inverts_the_floor_and_centre_out_order():
    assert [B.nominal_beta(s, 5, 8, 1000) for s in SHORT.values()] == list(SHORT)
    assert [B.nominal_beta(s, 16, 8, 50000) for s in (97, 195, 390, 781)] == list(B.BETAS)
    assert [B.nominal_beta(s, 3, 2, 100) for s in (4, 8, 16, 33)] == list(B.BETAS)
    assert B.nominal_beta(7, 5, 8, 1000) == 0.28  # no nominal β floors to 7 steps: the ratio itself
    assert B.centre_out(5).tolist() == [2, 1, 3, 0, 4] and B.centre_out(4).tolist() == [1, 2, 0, 3]


def test_too_few_seeds_have_no_ci_and_no_p_oracle():
    t = B.budget_comparison(frame(CENTRES, seeds=1), n_boot=50)
    ok = t[t["affordable"]]
    assert ok["regret_lo"].isna().all() and ok["loss_hi"].isna().all() and ok["p_oracle"].isna().all()
    assert ok["regret_cf"].isna().all()  # no halves to cross-fit
    assert ok["regret"].notna().all()
    # fewer seeds than bootstrap.MIN_SEEDS (3): points, no CIs; the cross-fitted CI needs halves of 3
    two = B.budget_comparison(frame(CENTRES, seeds=2), n_boot=50)
    two = two[two["affordable"]]
    assert two["regret_cf"].notna().all() and two["regret_cf_lo"].isna().all() and two["regret_lo"].isna().all()
    assert two["p_oracle"].isna().all() and two["regret"].notna().all()
    four = B.budget_comparison(frame(CENTRES, seeds=4), n_boot=50)
    four = four[four["affordable"]]
    assert four["regret_lo"].notna().all() and four["p_oracle"].notna().all() and four["regret_cf_lo"].isna().all()


def test_the_loss_and_regret_cis_cover_the_constructed_truth():
    """Noise σ = 0.02 per run, curvature 0.1 per grid step²: selections are stable, and the true target
    loss (1 + 0.1·(i − 3)²) at each arm's k̂ and the true regret lie inside the 95 % CIs (plain and
    cross-fitted regret) in ≥ 90 % of 30 replications (each arm and β counted; about 92-94 % seen)."""
    rng = np.random.default_rng(1)
    hit_loss, hit_reg, hit_cf, n = 0, 0, 0, 0
    for rep in range(30):
        t = B.budget_comparison(frame(CENTRES, seeds=16, noise=0.02, rng=rng), n_boot=200, seed=rep)
        ok = t[t["affordable"] & (t["kind"] != "oracle")]
        idx = np.round(np.log10(ok["lr_selected"].to_numpy()) + 4).astype(int)
        true_loss = 1 + 0.1 * (idx - 3) ** 2
        hit_loss += ((ok["loss_lo"] <= true_loss) & (true_loss <= ok["loss_hi"])).sum()
        hit_reg += ((ok["regret_lo"] <= true_loss - 1) & (true_loss - 1 <= ok["regret_hi"])).sum()
        hit_cf += ((ok["regret_cf_lo"] <= true_loss - 1) & (true_loss - 1 <= ok["regret_cf_hi"])).sum()
        n += len(ok)
    assert n == 30 * 14  # 7 affordable budgeted arms per parametrization
    assert min(hit_loss, hit_reg, hit_cf) / n >= 0.9, (hit_loss / n, hit_reg / n, hit_cf / n)


def test_draw_budget_writes_png_and_pdf(tmp_path):
    t = B.budget_comparison(frame(CENTRES), n_boot=20)
    paths = B.draw_budget(t, tmp_path / "budget.png")
    assert paths == [tmp_path / "budget.png", tmp_path / "budget.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    shown = B.budget_display(t)
    assert len(shown) == len(t) and (shown["k̂"] == "not affordable").sum() == 2


# ---- the presets ------------------------------------------------------------------------------

CONF = Path(__file__).resolve().parents[2] / "conf"
PRESETS = ["mlp_california_budget", "transformer_shakespeare_budget", "mlp_california_budget_cpu", "mlp_california_budget_quick",
           "transformer_shakespeare_budget_quick"]


def _grid(preset: str) -> tuple[int, int, int, list[str]]:
    """(T, |K|, R, the arms) from the preset file itself."""
    cfg = yaml.safe_load((CONF / "experiment" / f"{preset}.yaml").read_text())
    params = cfg["hydra"]["sweeper"]["params"]
    seeds = str(params["seed"])
    assert seeds.startswith("range(") and seeds.endswith(")")
    R = len(range(*map(int, seeds[6:-1].split(","))))
    return int(cfg["train"]["steps"]), len(str(params["optimizer.lr"]).split(",")), R, str(params["budget_arm"]).split(",")


def _arm(name: str) -> dict:
    return yaml.safe_load((CONF / "budget_arm" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("preset", PRESETS)
def test_short_runs_steps_follow_from_the_presets_own_grid(preset):
    T, K, R, arms = _grid(preset)
    kinds = {a.rsplit("_", 2)[-1] if "short" not in a else a.split("_short_")[1]: a for a in arms}
    assert set(kinds) == {"base", "target", "0.25", "0.5", "1", "2"}
    base, target = _arm(kinds["base"]), _arm(kinds["target"])
    assert base == {"model": {"width_mult": base["model"]["width_mult"]}} and target == {"model": {"width_mult": target["model"]["width_mult"]}}
    assert target["model"]["width_mult"] > base["model"]["width_mult"]
    for beta in ("0.25", "0.5", "1", "2"):
        short = _arm(kinds[beta])
        assert short == {"model": {"width_mult": target["model"]["width_mult"]},
                         "train": {"steps": max(1, math.floor(float(beta) * T / (K * R)))}}, (preset, beta)
        assert B.nominal_beta(short["train"]["steps"], K, R, T) == float(beta)
    # what the sweep refuses to see overridden beside them (mupbench.sweep.checks) is what they set
    from mupbench.sweep.checks import ARM_KEYS

    set_keys = {f"{section}.{key}" for arm in arms for section, node in _arm(arm).items() for key in node}
    assert set_keys == set(ARM_KEYS), preset


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_arm_composes_and_validates(preset):
    """The preset alone (its base arm), its target arm and its first short arm composed (compose
    validates; the schema rejects a stray key; the other short arms differ from the first only in
    ``train.steps``, checked above): the preset's own values and the arm's width and steps, which
    beat the preset's (its defaults put ``_self_`` first)."""
    from mupbench.config import compose

    T, _, _, arms = _grid(preset)
    alone = compose([f"+experiment={preset}"])
    assert alone.train.steps == T and alone.name == preset and alone.model.width_mult == _arm(arms[0])["model"]["width_mult"]
    for arm in arms[1:3]:
        cfg = compose([f"+experiment={preset}", f"budget_arm={arm}"])
        want = _arm(arm)
        assert cfg.model.width_mult == want["model"]["width_mult"]
        assert cfg.train.steps == want.get("train", {}).get("steps", T)
        assert cfg.name == preset and cfg.train.batch_size == alone.train.batch_size
