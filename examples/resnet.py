"""A small ResNet with BatchNorm for 32×32 images (CIFAR-10), written as a plain nn.Module.

mupbench needs nothing on it: the factory below builds it at any width multiplier and mupbench
infers every parameter's role from its ζ = 1 twin (the stem conv: input; the residual convs:
hidden; the classifier: output; BatchNorm gains and shifts: vectors; running statistics:
buffers).

    mupbench-train model=custom model.factory=examples.resnet:build dataset=cifar10
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the identity, then ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    """stem (stride 2) → blocks at c → downsample to 2c (stride 2) → blocks → pool → Linear."""

    def __init__(self, in_channels: int, classes: int, c: int, blocks: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.stage1 = nn.Sequential(*(Block(c) for _ in range(blocks)))
        self.down = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.stage2 = nn.Sequential(*(Block(2 * c) for _ in range(blocks)))
        self.head = nn.Linear(2 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(x.mean((2, 3)))


def build(width_mult: float, spec, channels: int = 8, blocks: int = 1) -> nn.Module:
    """``channels``·ζ channels in the first stage (an integer: pick ζ so it is)."""
    c = channels * width_mult
    if c != int(c):
        raise ValueError(f"channels·width_mult = {c:g} is not an integer")
    return ResNet(spec.input_shape[0], spec.num_outputs, int(c), blocks)
