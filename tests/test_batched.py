"""Batched training (mupbench/batched.py): each member of a stacked ensemble is the run its seed
and k give when trained alone, it writes that run's record, and sweeps use it."""

from __future__ import annotations

import json

import pytest
import torch

from mupbench import batched as B
from mupbench.assemble import build_run, stream_seed
from mupbench.config import compose
from mupbench.loop import train
from mupbench.records import CHECKPOINT, METRICS, RESULT
from mupbench.train import run_one

BASE = ["train.device=cpu", "train.eval_batches=2"]
MLP = [*BASE, "train.steps=40", "train.eval_every=10", "model.width_mult=2"]
# tiny versions of the other setups, on the embedded synthetic data
IMAGES = ["dataset=synthetic_images", "dataset.n_train=64", "dataset.n_val=32", "dataset.n_test=8", "train.batch_size=4"]
VGG = [*BASE, *IMAGES, "train.steps=8", "train.eval_every=4", "model=vgg"]
TRANSFORMER = [*BASE, "train.steps=12", "train.eval_every=4", "train.batch_size=4", "model=transformer", "model.blocks=1",
               "dataset=synthetic_tokens", "dataset.n_train=2000", "dataset.n_val=500", "dataset.n_test=100"]
RTOL = 1e-5  # batched matmuls round differently from single ones in the last bits


def cfgs(base: list[str], points: list[tuple[int, float]], *extra: str):
    return [compose([*base, *extra, f"seed={s}", f"optimizer.lr={lr}"]) for s, lr in points]


def single(cfg):
    return train(build_run(cfg))


def batched(configs, forward="auto"):
    ens = B.Ensemble([build_run(c) for c in configs], forward=forward)
    return B.train_ensemble(ens, [None] * len(configs), [""] * len(configs)), ens


def assert_same_run(a, b, rtol=RTOL):
    assert (a.status, a.diverged_step, a.steps_done) == (b.status, b.diverged_step, b.steps_done)
    assert [h["step"] for h in a.history] == [h["step"] for h in b.history]
    for ha, hb in zip(a.history, b.history):
        for key in ("train_loss", "val_loss"):
            assert ha[key] == pytest.approx(hb[key], rel=rtol, nan_ok=True), (ha["step"], key)


@pytest.mark.parametrize("forward", ["bmm", "vmap"])
def test_mlp_members_equal_their_single_runs(forward):
    points = [(0, 1e-3), (1, 1e-2), (2, 3e-2)]  # per-member learning rates
    configs = cfgs(MLP, points, "parametrization=mup")
    outs, ens = batched(configs, forward)
    assert ens.mode == forward
    for cfg, out in zip(configs, outs):
        assert_same_run(single(cfg), out)
    assert len({out.history[-1]["train_loss"] for out in outs}) == 3


@pytest.mark.parametrize("extra, rtol", [
    (["optimizer=sgd", "optimizer.momentum=0.9"], 1e-4),  # torch's SGD fuses −lr·g into the add
    (["train.dtype=float64"], 1e-10),
], ids=["sgd_momentum", "float64"])
def test_mlp_members_equal_their_single_runs_in_other_modes(extra, rtol):
    configs = cfgs(MLP, [(0, 1e-2), (1, 3e-2)], *extra)
    outs, _ = batched(configs)
    for cfg, out in zip(configs, outs):
        assert_same_run(single(cfg), out, rtol)


def test_bf16_members_autocast_like_their_single_runs():
    """Under bf16 autocast batched and single matmuls round differently (bf16 keeps ~3 digits), so
    trajectories drift apart by a few percent; before the first update they agree to bf16 precision."""
    configs = cfgs(MLP, [(0, 1e-2), (1, 3e-2)], "train.bf16=true")
    outs, _ = batched(configs)
    for cfg, out in zip(configs, outs):
        alone = single(cfg)
        assert (alone.status, [h["step"] for h in alone.history]) == (out.status, [h["step"] for h in out.history])
        for key in ("train_loss", "val_loss"):
            assert out.history[0][key] == pytest.approx(alone.history[0][key], rel=1e-2)
            assert out.history[-1][key] == pytest.approx(alone.history[-1][key], rel=0.2)


@pytest.mark.parametrize("setup", [VGG, TRANSFORMER], ids=["vgg_dropout", "transformer"])
def test_other_setups_members_equal_their_single_runs(setup):
    """VGG has dropout 0.5 in its head: each member draws its masks from its own stream, as its
    single run does from torch's global RNG, so even with dropout on the runs are the same."""
    configs = cfgs(setup, [(0, 1e-3), (1, 3e-3)])
    outs, ens = batched(configs)
    assert ens.mode == "vmap"
    for cfg, out in zip(configs, outs):
        assert_same_run(single(cfg), out)


def test_dropout_streams_are_per_member():
    configs = cfgs(VGG, [(0, 1e-3), (1, 1e-3), (0, 1e-2)])
    ens = B.Ensemble([build_run(c) for c in configs])
    x, y = ens.train_sampler.next()
    ens.losses(x, y, train=True)  # learns the dropout shapes
    assert [s[0] for s in ens.dropout_specs] == [(4, 20), (4, 20)]  # the two head dropouts, batch 4
    fresh = B.Ensemble([build_run(c) for c in configs])
    masks = fresh._masks() if fresh.dropout_specs else None
    fresh.dropout_specs = ens.dropout_specs
    masks = fresh._masks()
    first = masks[0]
    assert not torch.equal(first[0], first[1])  # seeds 0 and 1: different masks
    assert torch.equal(first[0], first[2])  # the same seed draws the same masks, whatever its k
    # what the single run of seed 0 draws (F.dropout on CPU: bernoulli_(1 - p), then ÷ (1 - p))
    torch.manual_seed(stream_seed(0, "dropout"))
    expect = torch.empty(4, 20).bernoulli_(0.5).div_(0.5)
    assert torch.equal(first[0], expect)
    assert set(first.unique().tolist()) == {0.0, 2.0}


@pytest.mark.parametrize("eval_every", [10, 9], ids=["between_evals", "at_an_eval"])
def test_diverged_member_is_frozen_and_recorded_at_its_step(eval_every):
    points = [(1, 1e-3), (0, 4e5), (2, 1e-2)]  # seed 0 at k = 4e5 diverges at step 9
    configs = cfgs([*BASE, "train.steps=40", f"train.eval_every={eval_every}", "model.width_mult=1"], points)
    outs, ens = batched(configs)
    singles = [single(c) for c in configs]
    assert singles[1].status == "diverged" and singles[1].diverged_step == 9
    for a, b in zip(singles, outs):
        assert_same_run(a, b)
    assert [o.status for o in outs] == ["completed", "diverged", "completed"]
    assert ens.size == 2  # dropped from the ensemble once recorded


def test_frozen_member_does_not_move():
    configs = cfgs(MLP, [(0, 1e-3), (1, 1e-3)])
    ens = B.Ensemble([build_run(c) for c in configs])
    x, y = ens.train_sampler.next()
    y = y.clone()
    y[1, 0] = float("nan")  # member 1's loss is not finite at this step
    before = [p.detach().clone() for p in ens.params]
    losses = ens.step(x, y)
    assert torch.isfinite(losses[0]) and not torch.isfinite(losses[1])
    assert ens.alive.tolist() == [True, False]
    for p, q in zip(before, ens.params):
        assert not torch.equal(p[0], q[0])
        assert torch.equal(p[1], q[1])
    ens.step(*ens.train_sampler.next())  # and stays frozen
    assert all(torch.equal(p[1], q[1]) for p, q in zip(before, ens.params))


def read(run_dir):
    return json.loads((run_dir / RESULT).read_text())


def test_records_are_the_single_runs_and_reruns_skip(tmp_path):
    points = [(0, 1e-3), (1, 1e-2), (0, 4e5)]
    configs = cfgs([*BASE, "train.steps=30", "train.eval_every=10", "model.width_mult=1"], points)
    dirs = [tmp_path / "batched" / f"p{i}" for i in range(3)]
    records = B.train_points(configs, dirs)
    assert [r["status"] for r in records] == ["completed", "completed", "diverged"]
    for cfg, d, rec in zip(configs, dirs, records):
        alone = run_one(cfg, tmp_path / "single" / d.name)
        assert read(d) == rec
        assert (d / METRICS).read_text().splitlines()[0] == "step,train_loss,val_loss,elapsed_s"
        assert not (d / CHECKPOINT).exists()
        assert set(rec) == set(alone) | {"batched"}
        for key in ("status", "diverged_step", "steps_done", "fingerprint", "seed", "lr", "width", "setup", "num_params", "config", "data"):
            assert rec[key] == alone[key], key
        for key in ("min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss"):
            assert rec[key] == pytest.approx(alone[key], rel=RTOL)
        assert rec["batched"]["members"] == 3
    # the three trained as one ensemble: one number, one wall time, covering their training
    assert len({(r["batched"]["ensemble"], r["batched"]["ensemble_s"]) for r in records}) == 1
    assert [r["batched"]["position"] for r in records] == [0, 1, 2]  # ascending k inside the ensemble
    assert 0 < records[0]["batched"]["ensemble_s"] <= max(r["wall_time_s"] for r in records)
    # a rerun finds every record and trains nothing
    stamps = [(d / RESULT).stat().st_mtime_ns for d in dirs]
    again = B.train_points(configs, dirs)
    assert again == records
    assert [(d / RESULT).stat().st_mtime_ns for d in dirs] == stamps
    # and the single-run entrypoint skips them too
    assert run_one(configs[0], dirs[0]) == records[0]


def test_only_seeds_and_k_may_differ(tmp_path):
    configs = [compose([*MLP, "seed=0"]), compose([*MLP, "seed=1", "model.width_mult=4"])]
    with pytest.raises(ValueError, match="differ only in seed"):
        B.train_points(configs, [tmp_path / "a", tmp_path / "b"])
    assert B.group_indices(configs) == [[0], [1]]
    same_k = [compose([*MLP, "seed=0", "optimizer.lr=1e-3"]), compose([*MLP, "seed=1", "optimizer.lr=1e-2"])]
    assert B.group_indices(same_k) == [[0, 1]]
    assert B.group_indices(same_k, lrs=False) == [[0], [1]]


def test_members_resume_from_checkpoints_in_the_single_run_format(tmp_path, monkeypatch):
    """Interrupted after its checkpoint at step 4, a batched group resumes where it stopped and
    ends with the records of uninterrupted runs; a single run resumes from a member's checkpoint."""
    points = [(0, 1e-3), (1, 1e-2)]
    configs = cfgs([*BASE, *IMAGES, "train.steps=8", "train.eval_every=4", "train.ckpt_every=4", "model=vgg"], points)
    dirs = [tmp_path / f"p{i}" for i in range(2)]
    real_step, calls = B.Ensemble.step, []

    def crashing_step(self, x, y):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("node lost")
        return real_step(self, x, y)

    monkeypatch.setattr(B.Ensemble, "step", crashing_step)
    failed = B.train_points(configs, dirs)
    assert [r["status"] for r in failed] == ["failed", "failed"]
    assert all((d / CHECKPOINT).exists() for d in dirs)
    monkeypatch.setattr(B.Ensemble, "step", real_step)
    state = torch.load(dirs[1] / CHECKPOINT, weights_only=True)
    assert state["step"] == 4
    # the single run picks up member 1's checkpoint (a copy, so the batched resume below has its own)
    import shutil

    shutil.copytree(dirs[1], tmp_path / "single1")
    alone = run_one(configs[1], tmp_path / "single1")
    assert alone["resumed_from"] == 4
    resumed = B.train_points(configs, dirs)
    for cfg, rec in zip(configs, resumed):
        assert rec["status"] == "completed" and rec["resumed_from"] == 4
        fresh = run_one(cfg, tmp_path / f"fresh{cfg.seed}")
        for key in ("min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss"):
            assert rec[key] == pytest.approx(fresh[key], rel=RTOL)
    assert alone["final_val_loss"] == pytest.approx(resumed[1]["final_val_loss"], rel=RTOL)


def test_flags_that_cannot_batch_are_refused(tmp_path):
    with pytest.raises(Exception, match="train.compile"):
        B.train_points([compose([*MLP, "train.compile=true"])], [tmp_path])


def test_multirun_with_the_batched_launcher(cli, tmp_path):
    """One option, hydra/launcher=batched: the seeds and k values of each width train as one
    ensemble; each point gets the run dir, record and metrics of its single run; a relaunch
    trains nothing."""
    sweep = ["-m", "hydra/launcher=batched", "train.steps=20", "train.eval_every=10", "train.eval_batches=2",
             "train.device=cpu", "model.width_mult=1,2", "optimizer.lr=1e-3,1e-2", "seed=0,1"]
    first = cli(*sweep)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("\ncompleted (min val loss") == 8
    assert "8 points in 2 batched groups" in first.stdout + first.stderr
    dirs = sorted(p.parent for p in (tmp_path / "outputs" / "default").glob("*/result.json"))
    assert len(dirs) == 8
    records = [read(d) for d in dirs]
    assert {r["batched"]["members"] for r in records} == {4}
    assert all((d / METRICS).exists() for d in dirs)
    # the same point run alone: the same dir name, the same numbers
    alone = cli("train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu",
                "model.width_mult=2", "optimizer.lr=1e-2", "seed=1", "hydra.run.dir=single")
    assert alone.returncode == 0, alone.stderr[-2000:]
    single_rec = read(tmp_path / "single")
    match = [r for r in records if (r["width_mult"], r["lr"], r["seed"]) == (2.0, 1e-2, 1)]
    assert len(match) == 1 and match[0]["fingerprint"] == single_rec["fingerprint"]
    assert match[0]["final_val_loss"] == pytest.approx(single_rec["final_val_loss"], rel=RTOL)
    again = cli(*sweep)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "\ncompleted (min val loss" not in again.stdout
    assert (again.stdout + again.stderr).count("already completed") == 8
    assert [read(d) for d in dirs] == records


def test_sweep_points_are_composed_once_per_group():
    """Hydra takes about half a second to compose a point; the batched launchers compose one per
    group and derive the rest. The derived configs and run dirs are those Hydra composes."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from mupbench.config import CONF_DIR
    from mupbench.launching import task_and_run_dir

    jobs = [["train.steps=20", f"model.width_mult={z}", f"optimizer.lr={k}", f"seed={s}"] for z in (1, 2) for k in ("1e-3", "0.1") for s in (0, 3)]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        def full(i):
            return hydra_compose("config", overrides=jobs[i], return_hydra_config=True)

        composed = []
        derived = B.derive_points(jobs, lambda i: composed.append(i) or full(i))
        assert composed == [0, 4]  # one per width
        for i, (task, run_dir, _) in enumerate(derived):
            expect_task, expect_dir = task_and_run_dir(full(i))
            assert OmegaConf.to_container(task) == OmegaConf.to_container(expect_task)
            assert run_dir == expect_dir
        assert B.derive_points(jobs, full, lrs=False)[1][0].optimizer.lr == 1e-3


def test_chunked_local_launcher_with_the_batched_runner(cli, tmp_path):
    """On the chunked launchers (local here; slurm the same) the runner trains each job's chunk
    as ensembles: hydra.launcher.runner=mupbench.batched.run_chunk."""
    sweep = ["-m", "hydra/launcher=local", "hydra.launcher.num_jobs=1", "hydra.launcher.runner=mupbench.batched.run_chunk",
             "train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu", "optimizer.lr=1e-3,1e-2", "seed=0,1"]
    out = cli(*sweep)
    assert out.returncode == 0, (out.stdout + out.stderr)[-2000:]
    records = [read(p.parent) for p in (tmp_path / "outputs" / "default").glob("*/result.json")]
    assert len(records) == 4 and all(r["status"] == "completed" and r["batched"]["members"] == 4 for r in records)
    again = cli(*sweep)
    assert again.returncode == 0 and "4 completed and 0 diverged before (skipped), 0 to run" in again.stdout + again.stderr
    assert [read(p.parent) for p in (tmp_path / "outputs" / "default").glob("*/result.json")] == records


def test_default_sweeper_composes_one_job_per_seed_and_k_group():
    """conf/config.yaml's sweeper is Hydra's basic one except for its up-front check: one composed
    job per group of plain seed / k values; a value of the wrong type is its own group, composed."""
    from omegaconf import OmegaConf

    from mupbench.config import CONF_DIR

    assert "GroupedBasicSweeper" in OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "mupbench.yaml")._target_
    jobs = [[f"model.width_mult={z}", f"optimizer.lr={k}", f"seed={s}"] for z in (1, 2) for k in ("1e-3", "1") for s in ("0", "1", "x")]
    _, groups = B.groups_of_jobs(jobs)
    plain = [g for g in groups if all("seed=x" not in jobs[i] for i in g)]
    assert sorted(len(g) for g in plain) == [4, 4]  # per width: 2 k × 2 seeds
    assert len(groups) == 4  # and the seed=x jobs apart (one per width, its k values plain): composed, so refused
