"""FLOPs of one training step, measured with ``torch.utils.flop_counter.FlopCounterMode``.

What is counted: the floating-point operations of the matmul-like kernels (``mm``, ``addmm``,
``bmm``, ``baddbmm``, convolutions, scaled-dot-product attention) in one forward pass of the model
as built, the loss, and one backward pass. One multiply-accumulate is 2 FLOPs. What is not:
elementwise work (activations, LayerNorm, softmax, bias gradients, the loss itself, embedding
look-ups and their scatter-add gradients) and **the optimizer step** (a handful of elementwise
FLOPs per parameter, e.g. ~10·N for Adam: negligible beside the matmuls at any batch size > 10).

Closed form for the models of SPEC §2 (B = batch, T = sequence length, and every Linear of shape
in → out counting ``in·out`` MACs per row):

- forward: Σ over Linears of 2·rows·in·out, plus for attention QKᵀ and PV: 2 matmuls of
  2·B·T²·d_head per head, i.e. 4·B·T²·d per block (the whole T × T square: the causal mask is
  not discounted);
- backward: twice the forward (a gradient with respect to the input and one with respect to the
  weight per Linear, 2 × 2 MACs per forward MAC; attention's backward as four matmuls of the same
  size as the forward's two), **less** the input gradient of a first layer whose input needs no
  gradient (the MLP's first Linear: autograd never computes it);
- so a step is 3 × forward, minus 2·rows·in·out for such a first layer. For a Transformer LM
  this is 6·N_matmul·B·T + 12·blocks·B·T²·d (PaLM App. B; nanoGPT's ``estimate_mfu``), with
  N_matmul the parameters of its Linears (the readout included, the embeddings not).

Attention is counted by that formula on every device and kernel: flash kernels recompute the
scores in the backward (PyTorch's own formula for them counts five backward matmuls, its math
path four), so the count of a run does not depend on which kernel trained it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

aten = torch.ops.aten


def _sdpa_forward(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_mapping() -> dict:
    """Every fused attention kernel this torch has, forward and backward, on one formula."""
    forward = ["_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
               "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu"]
    mapping = {}
    for name in forward:
        for op, formula in ((name, _sdpa_forward), (f"{name}_backward", _sdpa_backward)):
            if hasattr(aten, op):
                mapping[getattr(aten, op)] = formula
    return mapping


def flops_per_step(model: torch.nn.Module, loss_fn: Callable, x, y) -> int:
    """FLOPs of ``loss_fn(model(x), y).backward()`` on one batch, as counted above (the optimizer
    step excluded). The parameters' ``.grad`` are left as they were before the call."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        with FlopCounterMode(display=False, custom_mapping=_attention_mapping()) as counter:
            loss_fn(model(x), y).backward()
    finally:
        for p, g in zip(params, saved):
            p.grad = g
    return int(counter.get_total_flops())
