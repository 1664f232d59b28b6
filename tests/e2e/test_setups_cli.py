"""Every setup through the real entrypoint (``python -m mupbench.train``, a subprocess): every
model × parametrization × optimizer in one multirun, and a refused pairing in one line."""

from __future__ import annotations

import json
import math

import pytest
from test_setups import CLI_TINY, EXPECTED, PAIRS, SETUPS, write_groups

pytestmark = pytest.mark.slow


def test_every_model_parametrization_and_optimizer_through_the_cli(cli, tmp_path):
    write_groups(tmp_path / "conf")
    pairs = ",".join(f"{p}_{o}" for p, o in PAIRS)
    out = cli("-m", "-cd", str(tmp_path / "conf"), f"+setup={','.join(SETUPS)}", f"+pair={pairs}", *CLI_TINY)
    assert out.returncode == 0, out.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("result.json")]
    grid = sorted((r["model"], r["parametrization"], r["optimizer"]) for r in records)
    assert grid == sorted((m, p, o) for m in SETUPS for p, o in PAIRS)  # 24 runs, none twice
    for r in records:
        where = f"{r['model']}/{r['parametrization']}/{r['optimizer']}"
        assert r["status"] == "completed", (where, r.get("error"))
        assert (r["setup"], r["num_params"]) == EXPECTED[r["model"]], where
        assert (r["width_mult"], r["steps_done"]) == (2.0, 3), where
        assert math.isfinite(r["min_train_loss"]) and math.isfinite(r["min_val_loss"]), where
        assert r["config"]["parametrization"]["name"] == r["parametrization"] and r["config"]["optimizer"]["name"] == r["optimizer"]


def test_adam_only_parametrization_refuses_sgd_through_the_cli(cli, tmp_path):
    """One line, non-zero exit, nothing written (tests/test_cli.py does the same for NTK)."""
    out = cli("model=transformer", "dataset=synthetic_tokens", "parametrization=mf", "optimizer=sgd", *CLI_TINY)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0
    assert lines == ["mupbench: error: optimizer: parametrization=mf is defined for Adam only; use optimizer=adam"]
    assert not list(tmp_path.rglob("result.json"))
