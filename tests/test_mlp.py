"""The MLP of SPEC §2: exact parameter counts at every ζ, built on the meta device."""

import pytest
import torch

from mupbench.data import DataSpec
from mupbench.models import mlp


def count(zeta: float) -> int:
    with torch.device("meta"):
        model = mlp.build(mlp.Config(width_mult=zeta), DataSpec("regression", (8,), 1))
    return sum(p.numel() for p in model.parameters())


def test_spec_endpoints():
    assert count(1) == 433
    assert count(512) == 67_198_977


@pytest.mark.parametrize("zeta", [2**i for i in range(10)])
def test_every_power_of_two(zeta):
    w = 16 * zeta
    assert count(zeta) == (8 * w + w) + (w * w + w) + (w + 1)


def test_fractional_width_is_refused():
    with pytest.raises(ValueError, match="width_mult"):
        count(1.03)
