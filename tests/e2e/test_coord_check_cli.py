"""``python -m mupbench.coord_check`` as a user runs it (a subprocess): its files, and bad input
in one line."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_entrypoint_writes_files(tmp_path):
    out = tmp_path / "cc"
    proc = run_cli(["dataset=synthetic", "train.device=cpu", "coord.widths=[1,4,16]", "coord.steps=[0,3]",
                    f"coord.out={out}"], tmp_path, module="mupbench.coord_check")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"coord.csv", "slopes.csv", "figure1.png", "figure1.pdf"}
    assert "mup: largest output/activation slope" in proc.stdout and "-> stable" in proc.stdout
    assert "sp: largest output/activation slope" in proc.stdout and "GROWS with width" in proc.stdout
    assert len(pd.read_csv(out / "coord.csv")) > 0


def test_entrypoint_over_depth_writes_slopes_vs_blocks(tmp_path):
    """``coord.axis=depth`` (issue 12 item 7): slopes.csv holds the slopes vs log blocks per depth rule;
    CompleteP (α = 1) is flat (|slope| ≤ max_slope), no depth rule is not; the verdict covers the rules."""
    out = tmp_path / "cc"
    proc = run_cli(["coord.axis=depth", "model=transformer", "dataset=synthetic_tokens", "train.device=cpu", "train.batch_size=8",
                    "model.base_blocks=2", "coord.blocks=[1,2,4,8,16]", "coord.steps=[0,3]", "coord.parametrizations=[mup]",
                    "optimizer.lr=1e-2", f"coord.out={out}"], tmp_path, module="mupbench.coord_check")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"coord.csv", "slopes.csv", "figure1.png", "figure1.pdf"}
    s = pd.read_csv(out / "slopes.csv", dtype={"depth_alpha": str}, keep_default_na=False, na_values=[""])
    assert set(s["depth_alpha"]) == {"null", "0.5", "1"} and s["n_blocks"].max() == 5
    at = s.set_index(["depth_alpha", "coord", "step"])["slope"]
    for step in (0, 3):
        for coord in ("activation:stream", "update:stream", "update:branches", "output"):
            assert abs(at["1", coord, step]) <= 0.25 and abs(at["0.5", coord, step]) <= 0.25, (coord, step)
        assert at["null", "update:stream", step] > 0.6 and at["null", "update:branches", step] > 0.6  # ≈ ∝ depth without a rule
    assert "mup α=1: largest output/activation/stream/branches-update slope" in proc.stdout and proc.stdout.count("-> stable") == 2
    assert "mup without a depth rule (the reference, not checked): update:branches slope" in proc.stdout


@pytest.mark.parametrize("override, message", [
    ("coord.widths=[0.5]", "coord.widths"),  # the key to change (issue 11 item 6)
    ("coord.nope=1", "coord.nope"),
    ("coord.axis=depth", "coord.axis: depth needs a model with residual blocks; model=mlp"),
])
def test_entrypoint_bad_input_is_one_line(tmp_path, override, message):
    proc = run_cli(["dataset=synthetic", override, f"coord.out={tmp_path / 'cc'}"], tmp_path, module="mupbench.coord_check")
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "cc").exists()
