"""examples/: a ResNet with BatchNorm and a GPT with nn.MultiheadAttention and tied embeddings,
both through model=custom: their roles, μP ≡ SP bitwise at ζ = 1, batched members = single runs
(BatchNorm's running statistics per member, the tied matrix once), resume, and the coordinate
check (μP flat, SP growing)."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import REPO, RTOL, run_cli, train_single, train_stacked
from mupbench.assemble import build_run, describe_params
from mupbench.config import compose
from mupbench.lifecycle import run_group, run_point
from mupbench.records import CHECKPOINT
from mupbench.training.stacked import StackedStepper

CPU = ["train.device=cpu", "train.eval_batches=2"]
RESNET = ["+experiment=example_resnet_quick", *CPU, "dataset.n_train=64", "dataset.n_val=32", "dataset.n_test=8",
          "train.batch_size=8", "model.kwargs.channels=4"]
GPT = ["+experiment=example_gpt_quick", *CPU, "dataset.n_train=2000", "dataset.n_val=500", "dataset.n_test=500",
       "train.batch_size=4", "model.kwargs.d=16", "model.base_width=16", "model.blocks=1", "model.kwargs.heads=2"]
EXAMPLES = {"resnet": RESNET, "gpt": GPT}


def steps(n, every):
    return [f"train.steps={n}", f"train.eval_every={every}"]


def table(text):
    """print_params' table as {parameter: (kind, role column)}."""
    rows = {}
    for line in text.splitlines()[2:]:
        cells = line.split("  ")
        cells = [c.strip() for c in cells if c.strip()]
        if len(cells) >= 4 and "×" in cells[1] or (len(cells) >= 4 and cells[1].isdigit()):
            rows[cells[0]] = (cells[2], cells[3])
    return rows


def test_resnet_roles():
    text = describe_params(compose([*RESNET, "model.width_mult=2"]))
    rows = table(text)
    assert rows["stem.0.weight"] == ("weight", "input")
    assert rows["stage1.0.conv1.weight"] == ("weight", "hidden") and rows["down.0.weight"] == ("weight", "hidden")
    assert rows["head.weight"] == ("weight", "output") and rows["head.bias"] == ("bias", "scalar")
    for bn in ("stem.1", "stage1.0.bn1", "stage2.0.bn2", "down.1"):
        assert rows[f"{bn}.weight"] == ("norm_weight", "input") and rows[f"{bn}.bias"] == ("norm_bias", "input")
    assert not any("running" in name or "num_batches" in name for name in rows)  # buffers: no role
    assert "warning" not in text


def test_gpt_roles():
    text = describe_params(compose([*GPT, "model.width_mult=2"]))
    rows = table(text)
    assert rows["tok.weight"] == ("embedding", "input (tied: head.weight)")
    assert "head.weight" not in rows  # the tied matrix: one row, one optimizer entry
    assert rows["blocks.0.attn.in_proj_weight"] == ("weight", "hidden")
    assert rows["blocks.0.attn.out_proj.weight"] == ("weight", "hidden")
    assert rows["pos.weight"] == ("embedding", "input")
    assert "warning" not in text  # the factory takes attn_scale and readout_mult


@pytest.mark.parametrize("name", EXAMPLES)
def test_mup_is_sp_bitwise_at_the_base_width(name):
    runs = [build_run(compose([*EXAMPLES[name], *steps(6, 3), f"parametrization={p}", "model.width_mult=1"])) for p in ("sp", "mup")]
    assert [(e.init_std, e.lr_mult) for e in runs[0].plan] == [(e.init_std, e.lr_mult) for e in runs[1].plan]
    a, b = (train_single(r) for r in runs)
    assert [(h["train_loss"], h["val_loss"]) for h in a.history] == [(h["train_loss"], h["val_loss"]) for h in b.history]
    sa, sb = runs[0].model.state_dict(), runs[1].model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # parameters and BatchNorm's running statistics


@pytest.mark.parametrize("name", EXAMPLES)
def test_batched_members_are_their_single_runs(name):
    base = [*EXAMPLES[name], *steps(6, 3), "model.width_mult=2", "parametrization=mup"]
    points = [(0, 1e-3), (1, 1e-2)]
    stacked, stepper = train_stacked([build_run(compose([*base, f"seed={s}", f"optimizer.lr={k}"])) for s, k in points])
    assert stepper.mode == "vmap"
    for (s, k), member, run in zip(points, stacked, stepper.runs):
        single = build_run(compose([*base, f"seed={s}", f"optimizer.lr={k}"]))
        alone = train_single(single)
        for ha, hb in zip(member.history, alone.history):
            assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=RTOL)
            assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=RTOL)
        mine, theirs = run.model.state_dict(), single.model.state_dict()
        assert set(mine) == set(theirs)
        for key in theirs:  # each member's BatchNorm statistics are its own
            assert torch.allclose(mine[key].double(), theirs[key].double(), rtol=1e-4, atol=1e-6), key
    if name == "resnet":
        means = [r.model.state_dict()["stem.1.running_mean"] for r in stepper.runs]
        assert not torch.equal(means[0], means[1])


def test_resnet_resumes_single_and_batched(tmp_path, monkeypatch):
    """BatchNorm's running statistics are in the checkpoint: an interrupted run (single or batched)
    resumes to the uninterrupted record."""
    configs = [compose([*RESNET, *steps(8, 4), "train.ckpt_every=4", "model.width_mult=2", f"seed={s}", f"optimizer.lr={k}"])
               for s, k in [(0, 1e-3), (1, 1e-2)]]
    whole = [run_point(c, tmp_path / f"whole{i}") for i, c in enumerate(configs)]
    real, calls = StackedStepper.step, []

    def crash(self, batch):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("node lost")
        return real(self, batch)

    monkeypatch.setattr(StackedStepper, "step", crash)
    dirs = [tmp_path / f"p{i}" for i in range(2)]
    assert [r["status"] for r in run_group(configs, dirs)] == ["failed", "failed"]
    monkeypatch.setattr(StackedStepper, "step", real)
    shutil.copytree(dirs[0], tmp_path / "single0")
    alone = run_point(configs[0], tmp_path / "single0")
    assert alone["resumed_from"] == 4 and alone["final_val_loss"] == pytest.approx(whole[0]["final_val_loss"], rel=RTOL)
    for rec, ref in zip(run_group(configs, dirs), whole):
        assert rec["resumed_from"] == 4 and rec["status"] == "completed"
        assert rec["final_val_loss"] == pytest.approx(ref["final_val_loss"], rel=RTOL)
    assert not (dirs[0] / CHECKPOINT).exists()  # a finished run keeps no checkpoint


def test_presets_compose_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples.* resolve against the checkout
    for preset in ("example_resnet_quick", "example_gpt_quick"):
        cfg = compose([f"+experiment={preset}", "model.width_mult=2"])
        assert cfg.model.name == "custom" and describe_params(cfg)


def coord_slopes(overrides, widths, last, seeds):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mupbench.config import CONF_DIR, validate
    from mupbench.coordinates import coord_check, fit_slopes

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="coord_check", overrides=overrides)
    validate(cfg)
    slopes = fit_slopes(coord_check(cfg, widths=widths, steps=[0, 3, last], seeds=seeds))
    return slopes[slopes["kind"].isin(["output", "activation"])]


COORD = {  # the examples' coordinate checks: lr, widths, the last step, model options
    "resnet": (["+experiment=example_resnet_quick", "optimizer.lr=3e-2", "model.kwargs.channels=4"], [1, 2, 4, 8, 16], 9),
    "gpt": (["+experiment=example_gpt_quick", "optimizer.lr=1e-2"], [1, 2, 4, 8], 12),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", COORD)
def test_coord_check_mup_flat_sp_growing(name):
    """μP: every output and activation |slope| ≤ 0.15 after training (step 0 is the init, where
    μP's readout makes the output shrink like ζ^-½ by design); SP: the output grows (slope ≥ 0.5)."""
    overrides, widths, last = COORD[name]
    s = coord_slopes([*overrides, "train.device=cpu", "train.batch_size=16"], widths, last, [0, 1])
    mup = s[(s["parametrization"] == "mup") & (s["step"] == last)]
    assert mup["slope"].abs().max() <= 0.15, mup.sort_values("slope").to_string()
    sp_out = s[(s["parametrization"] == "sp") & (s["coord"] == "output")]
    assert sp_out["slope"].max() >= 0.5, sp_out.to_string()


@pytest.mark.parametrize("name", COORD)
def test_coord_check_runs_on_the_examples(name):
    """The fast sibling: two widths, a few steps, every coordinate recorded."""
    overrides, _, _ = COORD[name]
    small = RESNET[1:] if name == "resnet" else GPT[1:]
    s = coord_slopes([*overrides, *small, "train.batch_size=4"], [1, 2], 2, [0])
    assert set(s["parametrization"]) == {"sp", "mup"} and "output" in set(s["coord"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["example_resnet_quick", "example_gpt_quick"])
def test_the_quick_sweep_runs_offline(tmp_path, preset):
    """examples/README.md's command, as a user runs it (a subprocess, from another directory)."""
    out = run_cli(["-m", f"+experiment={preset}", "train.device=cpu"], tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "outputs").rglob("result.json"))) == 8
    assert REPO.joinpath("examples", "README.md").read_text().count(f"+experiment={preset}") >= 1
