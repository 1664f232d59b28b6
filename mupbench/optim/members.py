"""The member axis of an ensemble's stacked tensors: per-member scalars, and which members one
kernel call may update together.

A kernel that walks a tensor in vector-sized steps and finishes with a scalar tail (torch's
fused Adam on CPU: its tail rounds differently) gives member i of a stacked tensor exactly its
single run's numbers only if the tail falls where it falls in the member's own tensor. A member
whose elements fill whole 64-byte units (``ALIGN``: the fused kernel's work unit, a multiple of
every vector width) never has a tail, and its neighbours with equal learning rate can share one
slice; any other member goes to the kernel as its own view (``member[i]``), which the kernel
treats as its own tensor.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

ALIGN = 64  # bytes; see the module docstring


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(M,) → (M, 1, …, 1), broadcasting against a stacked parameter."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def aligned(p: torch.Tensor) -> bool:
    """Whether one member of stacked ``p`` fills whole ``ALIGN``-byte units (no tail)."""
    return p[0].numel() * p.element_size() % ALIGN == 0


@dataclass
class Plan:
    """Kernel calls for one set of per-member scalars (learning rates, …) and live members.

    ``cuts[j]``: where parameter j is split along the member axis (``tensor_split``), or None:
    one view per member (``unbind``). ``calls``: (scalars, [(j, piece), …]) — one kernel call
    per distinct set of scalars, over pieces of every parameter."""

    cuts: list[list[int] | None]
    calls: list[tuple[object, list[tuple[int, int]]]]

    def pieces(self, j: int, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cuts = self.cuts[j]
        return t.unbind(0) if cuts is None else t.tensor_split(cuts, dim=0)

    def gather(self, tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """For each call, its views of ``tensors`` (one stacked tensor per parameter)."""
        views = [self.pieces(j, t) for j, t in enumerate(tensors)]
        return [[views[j][k] for j, k in entries] for _, entries in self.calls]


def plan(rows: list[list], alive: list[bool] | None, whole: list[bool]) -> Plan:
    """Group live members by what a kernel call takes as scalars: ``rows[i][j]`` is member i's for
    parameter j (its lr, or a tuple such as (lr, λ, ε)); ``whole[j]``: parameter j's members may
    share a slice (``aligned``). Runs of adjacent live members with equal rows form one slice;
    dead members are in no call."""
    M = len(rows)
    cuts: list[list[int] | None] = []
    calls: dict[object, list[tuple[int, int]]] = defaultdict(list)
    live = [i for i in range(M) if alive is None or alive[i]]
    for j, share in enumerate(whole):
        if not share:
            cuts.append(None)
            for i in live:
                calls[rows[i][j]].append((j, i))
            continue
        runs: list[list[int]] = []  # [first, end) of each run
        for i in live:
            if runs and runs[-1][1] == i and rows[runs[-1][0]][j] == rows[i][j]:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        bounds = sorted({b for r in runs for b in r} - {0, M})
        piece = {a: k for k, a in enumerate([0, *bounds])}
        for a, _ in runs:
            calls[rows[a][j]].append((j, piece[a]))
        cuts.append(bounds)
    return Plan(cuts, list(calls.items()))
