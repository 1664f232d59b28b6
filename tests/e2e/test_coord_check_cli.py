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


@pytest.mark.parametrize("override, message", [
    ("coord.widths=[0.5]", "coord.widths"),  # the key to change (issue 11 item 6)
    ("coord.nope=1", "coord.nope"),
])
def test_entrypoint_bad_input_is_one_line(tmp_path, override, message):
    proc = run_cli(["dataset=synthetic", override, f"coord.out={tmp_path / 'cc'}"], tmp_path, module="mupbench.coord_check")
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "cc").exists()
