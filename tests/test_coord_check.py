"""The coordinate check on the MLP: μP is width-stable, SP is not, and a broken μP is caught."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from mupbench.analysis import plot_coord_check
from mupbench.config import compose
from mupbench.coordinates import assert_width_stable, coord_check, figure1_coords, fit_slopes

WIDTHS = [1, 4, 16, 64]
STEPS = [0, 3, 6]


def mlp_cfg(*overrides):
    return compose(["dataset=synthetic", "train.device=cpu", *overrides], config_name="coord_check")


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return coord_check(mlp_cfg(), widths=WIDTHS, steps=STEPS, seeds=[0])


def unscaled_hidden_lr(plan):
    """A deliberately broken μP: the hidden layer keeps the SP learning rate k."""
    return [dataclasses.replace(e, lr_mult=1.0) if e.role == "hidden" else e for e in plan]


def slope(slopes: pd.DataFrame, param: str, coord: str, step: int) -> float:
    row = slopes[(slopes["parametrization"] == param) & (slopes["coord"] == coord) & (slopes["step"] == step)]
    return float(row["slope"].item())


def test_frame_covers_every_coordinate(df):
    assert set(df["kind"]) == {"output", "activation", "weight", "grad", "update"}
    assert sorted(df["width"].unique()) == [16 * w for w in WIDTHS]
    assert sorted(df["step"].unique()) == STEPS
    # MLP = Linear, ReLU, Linear, ReLU, Linear: five activations, three weights and three biases
    one = df[(df["parametrization"] == "mup") & (df["width_mult"] == 4) & (df["step"] == 3)]
    assert one["kind"].value_counts().to_dict() == {"activation": 5, "weight": 6, "grad": 6, "update": 6, "output": 1}
    assert figure1_coords(df) == ["output", "update:2.weight", "grad:2.weight", "weight:2.weight"]


def test_sp_and_mup_are_identical_at_the_base_width(df):
    base = df[df["width_mult"] == 1].pivot_table(index=["step", "coord"], columns="parametrization", values="value")
    assert (base["sp"] == base["mup"]).all()


def test_mup_is_width_stable(df):
    slopes = assert_width_stable(df, max_slope=0.25, parametrization="mup")
    assert set(slopes["kind"]) == {"output", "activation"}
    s = fit_slopes(df)
    for step in STEPS[1:]:
        assert abs(slope(s, "mup", "output", step)) < 0.2
    # the μP hidden update is lr ∝ 1/n under Adam: mean |ΔW| ∝ width^-1; the weight keeps c/√n
    assert slope(s, "mup", "update:2.weight", 3) == pytest.approx(-1, abs=0.1)
    assert slope(s, "mup", "weight:2.weight", 0) == pytest.approx(-0.5, abs=0.05)


def test_sp_output_grows_with_width(df):
    s = fit_slopes(df)
    assert abs(slope(s, "sp", "output", 0)) < 0.25  # at init SP is fine ...
    assert slope(s, "sp", "output", 3) > 0.6  # ... a few Adam steps later the output grows ∝ width
    assert slope(s, "sp", "output", 6) > slope(s, "sp", "output", 3)
    assert slope(s, "sp", "update:2.weight", 3) == pytest.approx(0, abs=0.1)  # SP: |ΔW| ≈ k at any width
    with pytest.raises(AssertionError, match=r"grow with width .*sp output @ step 6"):
        assert_width_stable(df, parametrization="sp")


def test_broken_mup_is_caught():
    broken = coord_check(mlp_cfg(), widths=WIDTHS, steps=STEPS, parametrizations=["mup"], plan_hook=unscaled_hidden_lr)
    s = fit_slopes(broken)
    assert slope(s, "mup", "update:2.weight", 3) == pytest.approx(0, abs=0.1)  # the break took effect
    with pytest.raises(AssertionError, match="grow with width"):
        assert_width_stable(broken, max_slope=0.25)


def test_figure1(df):
    fig = plot_coord_check(df, figure1_coords(df))
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 2 * 4
    assert axes[0].get_title() == "SP: output" and axes[4].get_title() == "μP: output"
    assert all(len(ax.get_lines()) == len(STEPS) for ax in axes)


# ---- over depth (coord.axis=depth, issue 12 item 7): the same check over model.blocks per depth rule
DEPTH = ["model=transformer", "dataset=synthetic_tokens", "train.batch_size=8", "coord.axis=depth", "model.base_blocks=2",
         "coord.blocks=[1,2,4,8]", "coord.steps=[0,3]", "coord.parametrizations=[mup]", "coord.depth_alphas=[null,1.0]",
         "optimizer.lr=1e-2"]


@pytest.fixture(scope="module")
def depth_report():
    """The depth check's frame and its slopes as slopes.csv holds them (run_and_report writes
    fit_slopes(df); tests/e2e/test_coord_check_cli.py reads the file the CLI wrote)."""
    df = coord_check(mlp_cfg(*DEPTH))
    return df, fit_slopes(df)


def depth_slope(slopes, alpha: str, coord: str, step: int) -> float:
    row = slopes[(slopes["depth_alpha"] == alpha) & (slopes["coord"] == coord) & (slopes["step"] == step)]
    return float(row["slope"].item())


def test_depth_frame(depth_report):
    df, slopes = depth_report
    assert sorted(df["blocks"].unique()) == [1, 2, 4, 8] and set(df["depth_alpha"]) == {"null", "1"}
    assert set(df["width_mult"]) == {1.0} and set(df["width"]) == {32}
    assert figure1_coords(df) == ["output", "activation:stream", "update:stream", "update:branches", "update:blocks.0.mlp.fc2.weight"]
    assert set(slopes.columns) == {"parametrization", "depth_alpha", "coord", "step", "kind", "slope", "n_blocks"}
    # blocks.3.* exists at 4 and 8 blocks only: its slope rests on two depths
    assert slopes.loc[slopes["coord"] == "activation:blocks.3.mlp.fc1", "n_blocks"].unique().tolist() == [2]


def test_depth_completep_is_flat_and_no_rule_is_not(depth_report):
    """With α = 1 the stream, its per-step update and the output are flat
    in depth (|slope| ≤ max_slope = 0.25); without a depth rule the stream's update grows ≈ ∝ depth."""
    _, slopes = depth_report
    for step in (0, 3):
        for coord in ("activation:stream", "update:stream", "update:branches", "output"):
            assert abs(depth_slope(slopes, "1", coord, step)) <= 0.25, (coord, step)
        for coord in ("update:stream", "update:branches"):
            assert depth_slope(slopes, "null", coord, step) == pytest.approx(1.0, abs=0.3), (coord, step)
    full = slopes[(slopes["n_blocks"] == 4) & (slopes["kind"].isin(["output", "activation"]))]
    assert full[full["depth_alpha"] == "1"]["slope"].abs().max() <= 0.25  # every activation every depth has
    # Adam's parameter update follows the lr: no depth factor in either (m_L^0 at α = 1)
    assert abs(depth_slope(slopes, "1", "update:blocks.0.mlp.fc2.weight", 3)) < 0.1


def test_depth_figure_and_assert(depth_report):
    df, _ = depth_report
    from mupbench.analysis import plot_coord_check
    from mupbench.coordinates import figure_frame

    frame, x = figure_frame(df)
    fig = plot_coord_check(frame, figure1_coords(df), x=x)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 2 * 5 and x == "blocks"
    assert axes[0].get_title() == "μP, no depth rule: output" and axes[5].get_title() == "μP, α = 1: output"
    assert axes[0].get_xscale() == "log" and axes[0].get_xlabel() == "blocks"
    with pytest.raises(AssertionError, match=r"grow with depth .*mup α=null update:stream"):
        assert_width_stable(df, kinds=("update",), parametrization="mup")


@pytest.mark.parametrize("override, message", [
    (["coord.axis=depth"], r"^coord.axis: depth needs a model with residual blocks; model=mlp"),
    ([*DEPTH, "coord.blocks=[0,2]"], r"^coord.blocks: \[0,2\] is not"),
    ([*DEPTH, "coord.blocks=[2,2]"], r"^coord.blocks: "),
    ([*DEPTH, "coord.depth_alphas=[0.7]"], r"^coord.depth_alphas: \[0.7\] is not"),
    ([*DEPTH, "coord.parametrizations=[ntk]"], r"^coord.depth_alphas: 1 with parametrization ntk"),
    ([*DEPTH, "coord.axis=height"], r"^coord.axis: height is not one of width, depth"),
])
def test_depth_options_are_validated_at_compose_time(override, message):
    from mupbench.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        mlp_cfg(*override)


def test_stream_coordinates_are_the_last_blocks_output_and_its_change():
    """activation:stream = mean |last block's output| in the step's forward; update:stream = mean |its
    change on the step's batch| made by that step's update (eval mode); update:branches the same for
    the stream less the first block's input; recomputed here by hand."""
    from mupbench.assemble import build_run

    cfg = mlp_cfg(*DEPTH, "coord.blocks=[3]", "coord.depth_alphas=[0.5]", "coord.steps=[0,1]")
    df = coord_check(cfg).set_index(["coord", "step"])["value"]
    c = cfg.copy()
    c.model.blocks, c.parametrization.depth_alpha = 3, 0.5
    run = build_run(c)
    seen = {}
    run.model.blocks[-1].register_forward_hook(lambda m, a, out: seen.__setitem__("x", out.detach().clone()))
    run.model.blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0].detach().clone()))
    for step in (0, 1):
        x, y = run.train_sampler.next()
        loss = run.loss_fn(run.model(x), y)
        assert df["activation:stream", step] == pytest.approx(seen["x"].abs().mean().item(), rel=1e-6)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            run.model.eval(), run.model(x)
            before, branches = seen["x"], seen["x"] - seen["in"]
            run.optimizer.step()
            run.model(x), run.model.train()
        assert df["update:stream", step] == pytest.approx((seen["x"] - before).abs().mean().item(), rel=1e-6)
        assert df["update:branches", step] == pytest.approx((seen["x"] - seen["in"] - branches).abs().mean().item(), rel=1e-6)
        assert df["update:stream", step] > 0
