"""mupbench.sweep.grouping: points that differ only in seed and k are one group, composed once;
the derived configs and run dirs are the ones Hydra composes for each point."""

from __future__ import annotations

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from mupbench.config import CONF_DIR, compose
from mupbench.sweep.grouping import derive_points, group_indices, groups_of_jobs
from mupbench.sweep.rundirs import task_and_run_dir

MLP = ["train.device=cpu", "train.eval_batches=2", "train.steps=40", "train.eval_every=10", "model.width_mult=2"]


def test_only_seeds_and_k_may_differ_within_a_group():
    configs = [compose([*MLP, "seed=0"]), compose([*MLP, "seed=1", "model.width_mult=4"])]
    assert group_indices(configs) == [[0], [1]]
    same_k = [compose([*MLP, "seed=0", "optimizer.lr=1e-3"]), compose([*MLP, "seed=1", "optimizer.lr=1e-2"])]
    assert group_indices(same_k) == [[0, 1]]
    assert group_indices(same_k, lrs=False) == [[0], [1]]


def test_sweep_points_are_composed_once_per_group():
    """Hydra takes about half a second to compose a point; the batched launchers compose one per
    group and derive the rest. The derived configs and run dirs are those Hydra composes."""
    jobs = [["train.steps=20", f"model.width_mult={z}", f"optimizer.lr={k}", f"seed={s}"] for z in (1, 2) for k in ("1e-3", "0.1") for s in (0, 3)]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        def full(i):
            return hydra_compose("config", overrides=jobs[i], return_hydra_config=True)

        composed = []
        derived = derive_points(jobs, lambda i: composed.append(i) or full(i))
        assert composed == [0, 4]  # one per width
        for i, (task, run_dir, _) in enumerate(derived):
            expect_task, expect_dir = task_and_run_dir(full(i))
            assert OmegaConf.to_container(task) == OmegaConf.to_container(expect_task)
            assert run_dir == expect_dir
        assert derive_points(jobs, full, lrs=False)[1][0].optimizer.lr == 1e-3


def test_default_sweeper_composes_one_job_per_seed_and_k_group():
    """conf/config.yaml's sweeper is Hydra's basic one except for its up-front check: one composed
    job per group of plain seed / k values; a value of the wrong type is its own group, composed."""
    assert "GroupedBasicSweeper" in OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "mupbench.yaml")._target_
    jobs = [[f"model.width_mult={z}", f"optimizer.lr={k}", f"seed={s}"] for z in (1, 2) for k in ("1e-3", "1") for s in ("0", "1", "x")]
    _, groups = groups_of_jobs(jobs)
    plain = [g for g in groups if all("seed=x" not in jobs[i] for i in g)]
    assert sorted(len(g) for g in plain) == [4, 4]  # per width: 2 k × 2 seeds
    assert len(groups) == 4  # and the seed=x jobs apart (one per width, its k values plain): composed, so refused
