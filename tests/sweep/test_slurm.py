"""Sweeps on a real SLURM cluster through `hydra/launcher=slurm` (mupbench.sweep.launchers): jobs,
records, relaunch, chunks, and a requeued job that resumes from its checkpoint.

The cluster is the one `launchers/local-slurm.sh up` starts (.ci/run does, and stops it after).
Without SLURM these tests skip with the reason; with CI=true a cluster that is not up fails them.
The partition is $MUPBENCH_SLURM_PARTITION, else the cluster's default one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # the full tier, with the cluster up (.ci/run)


def _sh(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def _cluster() -> tuple[str | None, str]:
    """(partition, "") when a cluster answers and has a usable node, else (None, why not)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return None, "no SLURM client here (sinfo/sbatch); start one with `launchers/local-slurm.sh up`"
    ping = _sh("scontrol", "ping")
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return None, f"no slurmctld answering `scontrol ping`: {(ping.stdout + ping.stderr).strip()[:200]}"
    part = os.environ.get("MUPBENCH_SLURM_PARTITION")
    if not part:
        default = [p for p in _sh("sinfo", "-h", "-o", "%P").stdout.split() if p.endswith("*")]
        if not default:
            return None, "no default partition (set MUPBENCH_SLURM_PARTITION)"
        part = default[0].rstrip("*")
    states = _sh("sinfo", "-h", "-p", part, "-o", "%T").stdout.split()
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states):
        return None, f"partition {part!r} has no usable node (node states: {states or 'none'})"
    acct = _sh("sacct", "-n", "-X", "-j", "1", "-o", "JobID")
    if acct.returncode != 0:  # submitit needs accounting to see jobs that die without a result
        return None, f"sacct does not work (accounting off?): {acct.stderr.strip()[:200]}"
    return part, ""


@pytest.fixture(scope="module")
def partition() -> str:
    part, why = _cluster()
    if part is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the SLURM cluster is not usable: {why}")
        pytest.skip(why)
    return part


def launcher(part: str) -> list[str]:
    """The slurm profile with its GPU defaults turned off for the CPU-only local cluster."""
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={part}", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]


def sweep_args(name: str, *extra: str) -> list[str]:
    return ["-m", "+experiment=mlp_california_quick", "parametrization=mup", f"name={name}", "train.eval_every=50",
            "train.eval_batches=2", "train.device=cpu", "train.threads=1", *extra]


def mupbench(args: list[str], cwd: Path, timeout: float = 600, module: str = "mupbench.train") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@contextlib.contextmanager
def sweep_in_background(args: list[str], cwd: Path, ckpt_glob: str):
    """Start a multirun, wait until a checkpoint matching ``ckpt_glob`` exists under its sweep
    dir, and yield (process, checkpoint path); the process is killed if the block fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, "-m", "mupbench.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        name = next(a.split("=", 1)[1] for a in args if a.startswith("name="))
        deadline, ckpt = time.monotonic() + 180, None
        while ckpt is None and proc.poll() is None and time.monotonic() < deadline:
            ckpt = next(iter((cwd / "outputs" / name).glob(ckpt_glob)), None)
            time.sleep(0.1)
        assert ckpt is not None, f"no checkpoint appeared: {proc.poll()=}"
        yield proc, ckpt
    finally:
        if proc.poll() is None:
            proc.kill()


def records(sweep: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


def array_jobs(sweep: Path) -> set[str]:
    """The SLURM job arrays a sweep submitted (submitit keeps one folder per array task)."""
    return {d.name.split("_")[0] for d in (sweep / ".submitit").iterdir() if d.name[0].isdigit()}


def sacct_states(job: str) -> list[str]:
    for _ in range(40):  # the accounting daemon may lag a moment behind the controller
        out = _sh("sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State").stdout.split()
        states = [line.split("|")[1] for line in out]
        if states and all(s == "COMPLETED" for s in states):
            break
        time.sleep(0.5)
    return states


def test_sweep_of_8_points_runs_as_8_slurm_jobs_then_relaunch_skips_them_all(partition, tmp_path):
    args = [*sweep_args("s8", "model.width_mult=1,2", "optimizer.lr=1e-3,1e-2", "seed=0,1", "train.steps=100"),
            *launcher(partition)]
    t0 = time.monotonic()
    out = mupbench(args, tmp_path)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / "outputs" / "s8"
    recs = records(sweep)
    assert len(recs) == 8 and all(r["status"] == "completed" and r["steps_done"] == 100 for r in recs.values())
    envs = [r["env"] for r in recs.values()]
    assert all(e["submitit_executor"] == "slurm" and e["slurm_job_id"] for e in envs)
    (array,) = {e["slurm_array_job_id"] for e in envs}  # one job array ...
    assert sorted(int(e["slurm_array_task_id"]) for e in envs) == list(range(8))  # ... one task per point
    assert len({e["slurm_job_id"] for e in envs}) == 8
    assert array_jobs(sweep) == {array}
    assert sacct_states(array) == ["COMPLETED"] * 8
    print(f"8-point sweep on SLURM: {took:.1f} s")

    # relaunching the same command submits nothing and leaves every record as it was
    mtimes = {p: (p / "result.json").stat().st_mtime_ns for p in recs}
    again = mupbench(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "8 points in" in again.stderr + again.stdout
    assert "8 completed and 0 diverged before (skipped), 0 to run" in again.stderr + again.stdout
    assert array_jobs(sweep) == {array}
    assert {p: (p / "result.json").stat().st_mtime_ns for p in recs} == mtimes

    # the same with the launcher's check off: one job runs all 8 points, and the entrypoint itself
    # finds each finished record inside the job and skips it
    inside = mupbench([*args, "hydra.launcher.skip_finished=false", "hydra.launcher.points_per_job=8"], tmp_path)
    assert inside.returncode == 0, inside.stderr[-3000:]
    (new,) = array_jobs(sweep) - {array}
    (log,) = (sweep / ".submitit").glob(f"{new}*/*_log.out")  # a one-job array is a plain job: <id>/<id>_0_log.out
    assert log.read_text().count("skipped (already completed)") == 8
    assert {p: (p / "result.json").stat().st_mtime_ns for p in recs} == mtimes

    status = mupbench([str(sweep), "--json"], tmp_path, module="mupbench.status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["total"] == {"completed": 8, "diverged": 0, "failed": 0, "started": 0, "pending": 0}


def test_chunks_of_points_per_job_and_usr2_requeues_the_chunk_which_resumes(partition, tmp_path):
    """points_per_job=2: 4 points in 2 jobs, each point with its own run dir and record. USR2 to
    the first job while its first point trains (what SLURM sends before a time limit or on
    preemption): submitit calls the chunk's checkpoint(), requeues the job, and the restarted job
    resumes the first point from its checkpoint.pt and then trains the second."""
    steps = 8000  # long enough that USR2 lands while the first point trains, on an idle machine too
    args = [*sweep_args("chunks", "model.width_mult=8", "optimizer.lr=1e-2", "seed=0,1,2,3", f"train.steps={steps}",
                        "train.eval_every=1000", "train.ckpt_every=250"), *launcher(partition),
            "hydra.launcher.points_per_job=2"]
    with sweep_in_background(args, tmp_path, "*,seed=0,*/checkpoint.pt") as (proc, ckpt):
        (job,) = [j for j in _sh("squeue", "-h", "-n", "mupbench-chunks", "-t", "R", "-o", "%i").stdout.split()
                  if j.endswith("_0")]
        assert _sh("scancel", "--signal=USR2", job).returncode == 0
        _, err = proc.communicate(timeout=420)
    assert proc.returncode == 0, err[-3000:]
    recs = {r["seed"]: r for r in records(tmp_path / "outputs" / "chunks").values()}
    assert sorted(recs) == [0, 1, 2, 3] and all(r["status"] == "completed" and r["steps_done"] == steps for r in recs.values())
    assert len({r["env"]["slurm_array_job_id"] for r in recs.values()}) == 1
    assert [recs[s]["env"]["slurm_array_task_id"] for s in range(4)] == ["0", "0", "1", "1"]  # in sweep order
    assert recs[0]["env"]["slurm_restart_count"] == recs[1]["env"]["slurm_restart_count"] == "1"
    assert recs[0]["resumed_from"] and recs[0]["resumed_from"] % 250 == 0  # interrupted: resumed
    assert recs[1]["resumed_from"] is None  # not started before the requeue: trained whole
    assert recs[2]["env"]["slurm_restart_count"] in (None, "0")


def test_scontrol_requeue_of_a_running_job_resumes_from_its_checkpoint(partition, tmp_path):
    """`scontrol requeue` kills the running job and puts it back in the queue; while it waits a
    second launch of the sweep is refused; when it starts again the run resumes from its last
    checkpoint.pt and finishes with a complete record."""
    steps, every = 12000, 250
    args = [*sweep_args("rq", "model.width_mult=8", "optimizer.lr=1e-3", "seed=0", f"train.steps={steps}",
                        "train.eval_every=1000", f"train.ckpt_every={every}"), *launcher(partition)]
    with sweep_in_background(args, tmp_path, "*/checkpoint.pt") as (proc, ckpt):
        jobs = _sh("squeue", "-h", "-n", "mupbench-rq", "-t", "R", "-o", "%i").stdout.split()
        assert len(jobs) == 1, f"running jobs named mupbench-rq: {jobs}"
        t_requeue = time.monotonic()
        req = _sh("scontrol", "requeue", jobs[0])
        assert req.returncode == 0, req.stderr
        # the requeued job waits in the queue (≥ 20 s here): launching the sweep again is refused
        second = mupbench(args, tmp_path)
        assert second.returncode != 0 and len(second.stderr.strip().splitlines()) == 1
        assert "still queued or running" in second.stderr and "scancel -n mupbench-rq" in second.stderr
        _, err = proc.communicate(timeout=420)
    assert proc.returncode == 0, err[-3000:]
    (rec,) = records(tmp_path / "outputs" / "rq").values()
    assert rec["status"] == "completed" and rec["steps_done"] == steps
    assert rec["env"]["slurm_restart_count"] == "1", "the job did not run a second time"
    assert rec["resumed_from"] is not None, "the run finished before the requeue took effect: raise train.steps"
    assert 0 < rec["resumed_from"] < steps and rec["resumed_from"] % every == 0
    rows = list(csv.DictReader((ckpt.parent / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(0, steps + 1, 1000))  # no eval lost or repeated
    assert not ckpt.exists()
    print(f"requeue -> done: {time.monotonic() - t_requeue:.1f} s; resumed at step {rec['resumed_from']}")


def test_cancelled_job_fails_the_sweep_in_one_line_and_relaunch_runs_only_that_point(partition, tmp_path):
    """A cancelled job makes the launch fail with one line naming it; relaunching runs only that
    point, from its checkpoint."""
    # long enough that the cancel lands while seed=1 trains, on a fast idle machine too (3,000
    # steps once finished first there, and the sweep then rightly succeeded)
    args = [*sweep_args("cx", "model.width_mult=1", "optimizer.lr=1e-3", "seed=0,1", "train.steps=20000",
                        "train.eval_every=1000", "train.ckpt_every=250"), *launcher(partition)]
    sweep = tmp_path / "outputs" / "cx"
    with sweep_in_background(args, tmp_path, "*,seed=1,*/checkpoint.pt") as (proc, ckpt):
        # the array task running seed=1 is task 1 (points go out in sweep order)
        (job,) = [j for j in _sh("squeue", "-h", "-n", "mupbench-cx", "-t", "R", "-o", "%i").stdout.split() if j.endswith("_1")]
        assert _sh("scancel", job).returncode == 0
        _, err = proc.communicate(timeout=420)
    assert proc.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("mupbench: error: 1 of 2 jobs (1 points) ended without results, e.g. job " + job), last
    recs = records(sweep)
    assert [r["seed"] for r in recs.values()] == [0]
    again = mupbench(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 completed and 0 diverged before (skipped), 1 to run" in again.stdout + again.stderr
    recs = {r["seed"]: r for r in records(sweep).values()}
    assert sorted(recs) == [0, 1] and recs[1]["status"] == "completed" and recs[1]["resumed_from"]


DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


def test_down_reaps_the_daemons_it_started(partition):
    """Issue 11.10: `local-slurm.sh down` leaves no defunct munged / mariadbd / slurmdbd /
    slurmctld / slurmd (their parent is the script's keeper, which reaps them, not a PID 1 that
    may never do). Last in this file: it takes the cluster down, then brings it up again."""
    if os.geteuid() != 0:
        pytest.skip("local-slurm.sh runs as root")
    script = Path(__file__).resolve().parents[2] / "launchers" / "local-slurm.sh"
    run = Path("/run/local-slurm")
    pids = {n: int((run / f"{n}.pid").read_text()) for n in DAEMONS if (run / f"{n}.pid").exists()}
    if not pids:
        pytest.skip("this cluster was not started by launchers/local-slurm.sh")
    down = subprocess.run([str(script), "down"], capture_output=True, text=True, timeout=180)
    try:
        assert down.returncode == 0, down.stderr[-2000:]
        assert "not reaped" not in down.stderr, down.stderr[-2000:]
        left = {n: pid for n, pid in pids.items() if Path(f"/proc/{pid}").exists()}
        assert left == {}, f"still in the process table after down: {left}"
        ps = _sh("ps", "-eo", "stat=,comm=").stdout.splitlines()
        assert not [line for line in ps if line.split()[0].startswith("Z") and line.split()[-1] in DAEMONS], ps
    finally:
        up = subprocess.run([str(script), "up"], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr[-2000:]
