"""The figures and the ``mupbench-report`` command on the synthetic sweep of sweep_factory: every
file it writes, the verdict lines it prints, the self-contained report.html, and its one-line
refusals."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest
from sweep_factory import WIDTHS, runs, sweep_dir, write_run  # noqa: F401 (fixtures)

from mupbench import analysis as A
from mupbench.analysis.report import main as report_main

WRITTEN = {"runs.csv", "runs.parquet", "problems.txt", "seed_stats.csv", "table2.csv", "table2.md", "table2.tex",
           "optimal_lr.csv", "transfer.csv", "transfer.md", "regret.csv", "regret.md", "basin.csv", "basin.md",
           "basin_shift.csv", "report.html"}


def written(out) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def test_figures(runs, tmp_path):
    fig = A.plot_sweep(runs, "mlp_synth")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 4  # rows SP / μP × columns min train / min val
    assert [ax.get_xscale() for ax in axes] == ["log"] * 4
    assert axes[0].get_title().startswith("SP") and axes[2].get_title().startswith("μP")
    assert len(axes[0].get_lines()) == len(WIDTHS)  # one curve per ζ
    paths = A.save_figure(fig, tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


@pytest.fixture(scope="module")
def report(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    return out, report_main([str(sweep_dir), "--out", str(out), "--n-boot", "50"])


def test_report_command(report, capsys, sweep_dir, tmp_path):
    out, code = report
    assert code == 0
    figures = {f"figures/{s}.{e}" for s in ("mlp_synth", "mlp_synth_optimum") for e in ("png", "pdf")}
    assert written(out) == WRITTEN | figures
    transfer = pd.read_csv(out / "transfer.csv")
    assert set(transfer["metric"]) == {"min_train_loss", "min_val_loss"}
    assert set(transfer["verdict"]) == {"drifts", "transfers"}
    assert "unfinished" in (out / "problems.txt").read_text()
    assert "| drifts to smaller k |" in (out / "transfer.md").read_text()
    # the printed lines say the verdict, never a bare point estimate
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "r"), "--n-boot", "20", "--no-figures"]) == 0
    stdout = capsys.readouterr().out
    assert "119 run records" in stdout and "| SP " in stdout
    assert ("mlp_synth SP adam [min_train_loss]: drifts to smaller k over ζ 1–8 (drift -1.50 decades, 95 % CI "
            "[-1.50, -1.50]; -0.50 decades per doubling") in stdout
    assert "mlp_synth μP adam [min_train_loss]: transfers over ζ 1–8: the optimum moves less than one grid step" in stdout
    assert "optimum drifts" not in stdout
    assert "mlp_synth SP adam [min_val_loss]: tuned at ζ = 1, used at ζ = 8: regret" in stdout
    assert "compute accounting skipped" in stdout


def test_report_html_is_self_contained(report):
    out, _ = report
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the file
    for text in ("Problems", "unfinished (no result.json)", "drifts to smaller k over ζ 1–8", "Transfer regret",
                 "Basin of good k", "within 10 %: k range (decades)", "Table 2", "0.741 ± 0.0741", NO_FLOPS_TEXT):
        assert text in page, text


NO_FLOPS_TEXT = "the records carry no FLOPs (flops_per_step): compute accounting skipped"


def test_report_states_the_compute_when_records_have_it(tmp_path, capsys):
    for zeta in (1, 4):
        for lr in (1e-3, 1e-2):
            write_run(tmp_path / "s" / f"z{zeta}_{lr}", param="mup", zeta=zeta, lr=lr, train=lr * zeta,
                      flops_per_step=1e6 * zeta**2)
    assert report_main([str(tmp_path / "s"), "--out", str(tmp_path / "r"), "--n-boot", "10", "--no-figures"]) == 0
    stdout = capsys.readouterr().out
    assert ("mlp_synth: tuning at ζ = 1 took 2e+08 FLOPs, tuning at every width 3.4e+09; μTransfer to ζ = 4 (the base sweep "
            "+ one full run, 1.8e+09) costs 1.78× less than tuning there (3.2e+09)") in stdout
    assert {"compute.csv", "compute.md"} <= written(tmp_path / "r")
    assert "μTransfer to widest" in (tmp_path / "r" / "report.html").read_text()


@pytest.mark.parametrize("args,message", [
    (["--n-boot", "-5"], "argument --n-boot: must be a whole number ≥ 1 (got '-5'): the CIs and verdicts are percentiles"),
    (["--n-boot", "0"], "argument --n-boot: must be a whole number ≥ 1 (got '0')"),
    (["--n-boot", "many"], "argument --n-boot: must be a whole number ≥ 1 (got 'many')"),
    (["--seed", "-1"], "argument --seed: must be a whole number ≥ 0 (got '-1'): the seed of the bootstrap"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_options_are_refused_in_one_line(sweep_dir, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        report_main([str(sweep_dir), "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"mupbench-report: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_out_an_existing_file_says_what_to_do(sweep_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "taken")]) == 1
    err = capsys.readouterr().err
    assert err == (f"mupbench-report: error: --out {tmp_path / 'taken'} is an existing file; give a directory "
                   f"(created if absent) or remove the file\n")
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize("make", [lambda p: p / "absent", lambda p: p])
def test_report_command_bad_input(tmp_path, capsys, make):
    assert report_main([str(make(tmp_path)), "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mupbench-report: error: ") and err.count("\n") == 1


def test_a_bare_completed_record_is_unreadable_for_the_report(tmp_path, capsys):
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "result.json").write_text('{"status": "completed"}')
    assert report_main([str(tmp_path), "--no-figures"]) == 1
    assert capsys.readouterr().err == f"mupbench-report: error: no run records (result.json) under {tmp_path}\n"
    write_run(tmp_path / "good")
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r"), "--no-figures", "--n-boot", "10"]) == 0
    assert "unreadable: " in capsys.readouterr().out and "bare" in (tmp_path / "r" / "problems.txt").read_text()
