"""The budget-matched comparison end to end: `mupbench-train -m +experiment=mlp_california_budget_quick
hydra/launcher=batched` as typed (120 runs as 12 ensembles), then budget_comparison on its records
gives every arm at every β with the measured costs, and draw_budget writes the figure."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from mupbench import analysis as A
from mupbench.analysis import budget as B

pytestmark = pytest.mark.slow


def test_the_quick_budget_sweep_gives_every_arm_at_every_beta(tmp_path):
    done = run_cli(["-m", "+experiment=mlp_california_budget_quick", "hydra/launcher=batched", "train.device=cpu",
                    "train.threads=1"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "120 points in 12 batched groups" in done.stdout + done.stderr
    sweep = A.load_sweep(tmp_path / "outputs" / "mlp_california_budget_quick")
    assert len(sweep.runs) == 120 and not sweep.problems(), sweep.problems()
    assert sweep.runs["variant"].isna().all()  # the arms differ in width and steps only: columns, no variant
    t = B.budget_comparison(sweep.runs, n_boot=200)
    arms = t.groupby("arm")["beta"].apply(lambda b: sorted(b.dropna()))
    for arm in ("μT", "SP-naive", "SP-short", "μP-short"):
        assert arms[arm] == [0.25, 0.5, 1.0, 2.0], arm
    assert (t["arm"] == "oracle").sum() == 2 and t["affordable"].all()
    # ζ 1 → 8: one ζ = 1 run is U/48.1 (measured FLOPs), so μT affords ⌊β·48.1/2⌋ ≥ 6 > |K| = 5: the whole grid
    assert (t.loc[t["kind"] == "transfer", "n_points"] == 5).all()
    assert (t["flops_unit"] == 1650688 * 200).all()  # U = C(ζ = 8, T = 200), flops_per_step as measured
    sh = t[t["kind"] == "short"]
    assert dict(zip(sh["beta"], sh["short_steps"])) == {0.25: 5, 0.5: 10, 1.0: 20, 2.0: 40}
    assert sh["tuning_per_U"].to_numpy() == pytest.approx(sh["short_steps"].to_numpy(float) * 10 / 200)  # |K|·R·T_s / T
    tr = t[t["kind"] == "transfer"]
    assert tr["tuning_per_U"].to_numpy() == pytest.approx(10 * 34304 / 1650688)  # |K|·R·C(ζ_b, T) / U
    assert (t.loc[t["kind"] == "oracle", "total_per_U"] == 10).all()
    # every final loss is the target sweep's seed mean at k̂, and no arm beats its oracle
    ok = t[t["kind"] != "oracle"]
    assert (ok["regret"] >= 0).all() and np.isfinite(ok["loss"]).all()
    # 2 seeds, fewer than bootstrap.MIN_SEEDS: points without CIs (a 2-seed bootstrap has 3 distinct draws)
    assert ok["loss_lo"].isna().all() and ok["regret_lo"].isna().all() and ok["regret_cf_lo"].isna().all()
    assert np.isfinite(ok["regret_cf"]).all()
    paths = B.draw_budget(t, tmp_path / "report" / "budget")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
