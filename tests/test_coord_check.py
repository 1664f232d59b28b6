"""The coordinate check on the MLP: μP is width-stable, SP is not, and a broken μP is caught."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

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
