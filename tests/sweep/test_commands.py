"""The issues' reproducing commands, exactly as typed, through mupbench-train's own console
function in this process (the real subprocess: tests/e2e/test_sweep_commands.py)."""

from __future__ import annotations

from sweep_helpers import entrypoint

from mupbench.status import main as status


def test_issue_11_1_status_of_a_plain_multirun(tmp_path, monkeypatch, capsys):
    """`mupbench-train -m seed=0,1 optimizer.lr=1e-3,1e-2 train.steps=60 train.eval_every=20
    hydra.sweep.dir=outputs/plain && mupbench-status outputs/plain`"""
    code = entrypoint(monkeypatch, tmp_path, "-m", "seed=0,1", "optimizer.lr=1e-3,1e-2", "train.steps=60", "train.eval_every=20",
                      "hydra.sweep.dir=outputs/plain", "train.device=cpu", "train.threads=1")
    assert code == 0
    capsys.readouterr()
    status(["outputs/plain"])
    out = capsys.readouterr()
    assert "4/4 done" in out.out and "all done" in out.out and out.err == ""


def test_issue_11_3_a_bad_width_in_a_multirun_is_found_before_any_run(tmp_path, monkeypatch, capsys):
    """`mupbench-train -m model.width_mult=1,2,0.5 seed=0,1 …`: exit 2, one line naming the key
    and the point, no traceback, nothing written."""
    code = entrypoint(monkeypatch, tmp_path, "-m", "model.width_mult=1,2,0.5", "seed=0,1", "train.steps=60", "train.eval_every=20")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("mupbench: error: model.width_mult: ") and "(point #4: model.width_mult=0.5 seed=0 " in line
    assert line.endswith("and 1 more point; nothing was run)")
    assert list(tmp_path.iterdir()) == []
