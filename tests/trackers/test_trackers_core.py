"""The logger config group and what every tracker shares: selection, the optional extra, a
failing or hanging tracker never touching the run, and mupbench-export (with TensorBoard, the
tracker that is fast to import; MLflow and W&B: test_mlflow_tracker.py, test_wandb_tracker.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

import pytest
from omegaconf import OmegaConf
from tracker_sweeps import grid, point_cfg, records_only, run_dir_of, simulate

from mupbench import trackers
from mupbench.config import compose
from mupbench.records import RESULT
from mupbench.trackers import core


@pytest.fixture(scope="module", autouse=True)
def _composed():
    point_cfg(logger=("tensorboard",))  # compose once, outside the tests' own time


def test_logger_group_default_none_list_and_overrides():
    assert trackers.selected(compose([]).logger) == []
    assert trackers.selected(compose(["logger=[tensorboard,mlflow]"]).logger) == ["tensorboard", "mlflow"]
    cfg = compose(["logger=wandb", "logger.wandb.mode=online", "logger.mlflow.tracking_uri=http://localhost:5000"])
    assert trackers.selected(cfg.logger) == ["wandb"]
    assert cfg.logger.wandb.mode == "online" and cfg.logger.mlflow.tracking_uri == "http://localhost:5000"
    assert trackers.selected(compose(["logger=[tensorboard,mlflow,wandb]"]).logger) == ["tensorboard", "mlflow", "wandb"]


def test_logger_overrides_leave_run_dir_names_alone():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mupbench.config import CONF_DIR

    lines = ["seed=1", "logger=[tensorboard,mlflow]", "logger.wandb.mode=online", "logger.mlflow.tracking_uri=http://h:5000"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        od = hydra_compose(config_name="config", overrides=lines, return_hydra_config=True).hydra.job.config.override_dirname
    parsed = OverridesParser.create().parse_overrides(lines)
    assert get_overrides_dirname(parsed, exclude_keys=list(od.exclude_keys), item_sep=od.item_sep, kv_sep=od.kv_sep) == "seed=1"


def test_the_fingerprint_ignores_the_logger():
    from mupbench.records import fingerprint

    assert fingerprint(compose([])) == fingerprint(compose(["logger=[tensorboard,mlflow,wandb]", "logger.wandb.mode=online"]))


def test_nothing_selected_is_none_and_imports_no_tracker():
    code = ("import sys\nfrom omegaconf import OmegaConf\nfrom mupbench import trackers\nimport mupbench.export\n"
            "cfg = OmegaConf.create({'logger': {'tensorboard': {'enabled': False}}, 'seed': 0})\n"
            "assert trackers.open_run(cfg, '.', {}) is None\n"
            "print(sorted(m for m in ('torch', 'tensorboard', 'mlflow', 'wandb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_selected_tracker_not_installed_is_one_line_naming_the_extra(monkeypatch, tmp_path, caplog):
    from mupbench.config import ConfigError, validate

    cfg, only_tb = compose(["logger=[tensorboard,wandb]"]), compose(["logger=tensorboard"])  # composed while wandb is there
    both = point_cfg(logger=("tensorboard", "wandb"))
    real = core.importlib.util.find_spec
    monkeypatch.setattr(core.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(trackers.TrackerError) as e:
        trackers.check(cfg.logger)
    assert str(e.value) == 'logger=wandb: the wandb package is not installed; install the trackers with pip install -e ".[trackers]"'
    with pytest.raises(ConfigError, match=r"^logger=wandb: the wandb package is not installed"):
        validate(cfg)  # what the CLI says, in one line, before any work
    assert trackers.missing(only_tb.logger) is None
    # the trainer's hook does not raise: the missing one is said once, the others still log
    tracker = trackers.open_run(both, tmp_path / "r", {"fingerprint": "x"})
    assert [s.backend.name for s in tracker.slots] == ["tensorboard"]
    assert any('pip install -e ".[trackers]"' in r.getMessage() for r in caplog.records)


def test_a_tracker_raising_in_log_eval_is_logged_once_and_the_runs_go_on(monkeypatch, tmp_path, caplog):
    from mupbench.trackers.tensorboard_backend import TensorBoard

    def full(self, *a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoard, "log", full)
    monkeypatch.setattr(core, "_reported", set())
    caplog.set_level(logging.WARNING, "mupbench")
    members = grid(3, logger=("tensorboard",))
    for cfg in members:
        run_dir, record = simulate(cfg, tmp_path)  # logs, writes the record, finishes: nothing raises
        assert json.loads((run_dir / RESULT).read_text())["status"] == "completed"
    trackers.flush()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "tracker tensorboard failed" in warnings[0] and "No space left" in warnings[0]
    ledger = core.read_ledger(run_dir_of(tmp_path, members[0]))
    assert not any(e.get("finished") for e in ledger.values())  # a later export can still fill it in


def test_a_hanging_tracker_does_not_hold_up_training(monkeypatch, tmp_path):
    from mupbench.trackers.tensorboard_backend import TensorBoard

    release, reached = threading.Event(), threading.Event()
    original = TensorBoard.log

    def hang(self, *a):
        reached.set()
        release.wait(30)  # a server that does not answer
        original(self, *a)

    monkeypatch.setattr(TensorBoard, "log", hang)
    cfg = point_cfg(logger=("tensorboard",))
    cfg.logger.finish_timeout_s = 0.01
    run_dir, _ = simulate(cfg, tmp_path)  # every log_eval and the finish return while the tracker hangs
    assert reached.is_set() and not release.is_set()
    release.set()
    assert trackers.flush(30)
    assert json.loads((run_dir / trackers.LEDGER).read_text()).popitem()[1]["finished"]


def test_export_twice_gives_the_same_runs_and_adds_to_a_live_logged_sweep(tmp_path):
    from mupbench.trackers.export import export_sweep

    members = grid(4)
    for cfg in members[:3]:
        records_only(cfg, tmp_path)
    first = export_sweep(tmp_path, "tensorboard")
    assert (first.exported, first.already, first.failed) == (3, 0, [])
    events = sorted((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    second = export_sweep(tmp_path, "tensorboard")
    assert (second.exported, second.already) == (0, 3)
    assert sorted((tmp_path / "tensorboard").rglob("events.out.tfevents.*")) == events
    simulate(OmegaConf.merge(members[3], {"logger": {"tensorboard": {"enabled": True}}}), tmp_path)  # logged live
    assert export_sweep(tmp_path, "tensorboard").already == 4


def test_export_cli(tmp_path, capsys):
    from mupbench import export

    records_only(point_cfg(), tmp_path)
    export.main([str(tmp_path), "--to", "tensorboard"])
    assert capsys.readouterr().out.strip().endswith("1 run(s) exported to tensorboard, 0 already there")
    export.main([str(tmp_path), "--to", "tensorboard"])
    assert "0 run(s) exported to tensorboard, 1 already there" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        export.main([str(tmp_path), "--to", "tensorboard", "--project", "p"])
    assert "--project does not apply to --to tensorboard" in str(e.value)
    with pytest.raises(SystemExit) as e:
        export.main([str(tmp_path / "nowhere"), "--to", "mlflow"])
    assert "is not a directory" in str(e.value)


def test_wandb_online_without_credentials_is_a_reported_failure_not_a_prompt(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "mupbench")
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(core, "_reported", set())
    cfg = point_cfg(logger=("wandb",))
    cfg.logger.wandb.mode = "online"
    run_dir, _ = simulate(cfg, tmp_path)
    assert trackers.flush(30)
    assert json.loads((run_dir / RESULT).read_text())["status"] == "completed"
    assert not core.read_ledger(run_dir)  # nothing was handed over
    assert [r.getMessage() for r in caplog.records if "not logged in to W&B" in r.getMessage()]
