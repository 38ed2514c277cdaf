"""Forward pass of the shared representation (samples as rows at the API)."""

import math

import torch

from admmlab.nets.activations import Activation, get_activation

Tensor = torch.Tensor


def with_ones(v: Tensor) -> Tensor:
    """Append a column of ones to row-sample data: ``(…, N, n) -> (…, N, n+1)``."""
    ones = torch.ones((*v.shape[:-1], 1), dtype=v.dtype, device=v.device)
    return torch.cat([v, ones], dim=-1)


def affine(w: Tensor, v: Tensor, out: Tensor | None = None) -> Tensor:
    """``ṽ W_iᵀ`` for row samples, without materialising ``ṽ``; into ``out`` if given.

    The bias is the product's initial value (one kernel, one pass over the output);
    it is made contiguous first, as broadcasting a strided column over N rows is slow.
    """
    w_bar_t, bias = w[..., :-1].mT, w[..., -1].unsqueeze(-2).contiguous()
    if v.dim() == 2 and w.dim() == 2:
        return torch.addmm(bias, v, w_bar_t, out=out)
    batch = max(v.shape[0] if v.dim() == 3 else 1, w.shape[0] if w.dim() == 3 else 1)
    v3 = v if v.dim() == 3 else v.expand(batch, *v.shape)
    w3 = w_bar_t if w.dim() == 3 else w_bar_t.expand(batch, *w_bar_t.shape)
    return torch.baddbmm(bias, v3, w3, out=out)


def hidden_forward(weights: list[Tensor], x: Tensor, activation: str | Activation) -> list[Tensor]:
    """Pre-activations ``z_i = ṽ_{i-1} W_iᵀ`` of every hidden layer, in order."""
    act = get_activation(activation)
    zs, v = [], x
    for w in weights[:-1]:
        z = affine(w, v)
        zs.append(z)
        v = act.fn(z)
    return zs


def forward(weights: list[Tensor], x: Tensor, activation: str | Activation) -> Tensor:
    """Network output ``f(x) = W_{L+1} ṽ_L`` for ``x`` of shape ``(…, N, d)``.

    Weights may carry a leading trial dimension K; ``x`` then has shape
    ``(K, N, d)`` (or ``(N, d)``, broadcast over trials).
    """
    act = get_activation(activation)
    v = x
    for w in weights[:-1]:
        # In place on the fresh product: one array less per layer, and autograd's
        # backward of σ needs only σ's output.
        v = act.fn_(affine(w, v))
    return affine(weights[-1], v)


def forward_no_grad(weights: list[Tensor], x: Tensor, activation: str | Activation) -> Tensor:
    """:func:`forward` for evaluation: the hidden layers take turns in two buffers.

    The same products (equal to rounding: BLAS may block a product differently when
    it writes into a given buffer), but two allocations a call instead of one per
    layer: fewer many-megabyte arrays for the C heap to place (admmlab.allocator).
    """
    act = get_activation(activation)
    hidden = weights[:-1]
    if not hidden:
        return affine(weights[-1], x)
    with torch.no_grad():
        batch = [t.shape[0] for t in (x, *weights) if t.dim() == 3]
        lead = (max(batch),) if batch else ()
        rows, widest = x.shape[-2], max(w.shape[-2] for w in hidden)
        size = math.prod(lead) * rows * widest
        pair = torch.empty(2, size, dtype=weights[0].dtype, device=weights[0].device)
        v = x
        for i, w in enumerate(hidden):
            shape = (*lead, rows, w.shape[-2])
            v = act.fn_(affine(w, v, out=pair[i % 2, : math.prod(shape)].view(shape)))
        return affine(weights[-1], v)
