"""The built-in MLP (mupbench/models/mlp.py) written as your own model: ten lines.

    mupbench-train model=custom model.factory=examples.mlp:build model.base_width=16 dataset=synthetic

It builds the very same nn.Sequential as ``model=mlp``, so the two train to the same numbers
(tests/models/test_custom.py checks it bitwise).
"""

from __future__ import annotations

import math

from torch import nn


def build(width_mult: float, spec, width: int = 16, hidden_layers: int = 2) -> nn.Module:
    n, fan_in, layers = int(width * width_mult), math.prod(spec.input_shape), []
    for _ in range(hidden_layers):
        layers += [nn.Linear(fan_in, n), nn.ReLU()]
        fan_in = n
    layers.append(nn.Linear(fan_in, spec.num_outputs))
    return nn.Sequential(nn.Flatten(), *layers) if len(spec.input_shape) > 1 else nn.Sequential(*layers)
