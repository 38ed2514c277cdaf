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
    """``ṽ W_iᵀ`` for row samples, without materialising ``ṽ``; into ``out`` if given."""
    return _affine(_split(w), v, out)


Layer = tuple[Tensor, Tensor]  # (W̄ᵢᵀ, bᵢ as a contiguous row)


def _split(w: Tensor) -> Layer:
    """``W_i`` as the product's operand and its bias as a row, made contiguous:
    broadcasting a strided column over N rows is slow."""
    return w[..., :-1].mT, w[..., -1].unsqueeze(-2).contiguous()


def _affine(layer: Layer, v: Tensor, out: Tensor | None = None) -> Tensor:
    """The bias is the product's initial value (one kernel, one pass over the output)."""
    w_bar_t, bias = layer
    if v.dim() == 2 and w_bar_t.dim() == 2:
        return torch.addmm(bias, v, w_bar_t, out=out)
    return torch.baddbmm(bias, *_batched(v, w_bar_t), out=out)


def _hidden(layer: Layer, v: Tensor, act: Activation, out: Tensor) -> Tensor:
    """``σ(ṽ W_iᵀ)`` into ``out``: the product, then bias and σ in one pass where σ
    has such a kernel (:attr:`Activation.add_fn_`)."""
    w_bar_t, bias = layer
    if v.dim() == 2 and w_bar_t.dim() == 2:
        product = torch.mm(v, w_bar_t, out=out)
    else:
        product = torch.bmm(*_batched(v, w_bar_t), out=out)
    return act.add_fn_(product, bias)


def _batched(v: Tensor, w_bar_t: Tensor) -> tuple[Tensor, Tensor]:
    """Both operands with the same leading batch dimension (a missing one broadcast)."""
    batch = max(v.shape[0] if v.dim() == 3 else 1, w_bar_t.shape[0] if w_bar_t.dim() == 3 else 1)
    v3 = v if v.dim() == 3 else v.expand(batch, *v.shape)
    w3 = w_bar_t if w_bar_t.dim() == 3 else w_bar_t.expand(batch, *w_bar_t.shape)
    return v3, w3


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


# A trial group's activations should stay in one core's cache from one layer to
# the next: the whole batch's are tens of megabytes at K = 20.
CACHE_BYTES = 1 << 20


def forward_no_grad(weights: list[Tensor], x: Tensor, activation: str | Activation) -> Tensor:
    """:func:`forward` for evaluation, equal to it to rounding.

    The hidden layers take turns in two buffers (two allocations a call instead of
    one per layer: fewer many-megabyte arrays for the C heap to place,
    admmlab.allocator). On the CPU the trials go through in groups whose
    activations fit in a core's cache, so each layer's bias, product and σ
    touch them there rather than streaming the batch through memory three times.
    """
    act = get_activation(activation)
    if len(weights) == 1:
        return affine(weights[0], x)
    with torch.no_grad():
        layers = [_split(w) for w in weights]  # once, not once per group
        k = _n_trials(x, weights)
        rows, widest = x.shape[-2], max(w.shape[-2] for w in weights[:-1])
        if k == 0:
            return _forward_pairs(layers, x, act, _pair(weights[0], rows * widest))
        group = _trials_per_group(k, rows * widest * weights[0].element_size(), x.device)
        pair = _pair(weights[0], group * rows * widest)
        out = weights[0].new_empty((k, rows, weights[-1].shape[-2]))
        for start in range(0, k, group):
            trials = slice(start, start + group)
            group_layers = [
                (wt[trials], b[trials]) if wt.dim() == 3 else (wt, b) for wt, b in layers
            ]
            xs = x[trials] if x.dim() == 3 else x
            _forward_pairs(group_layers, xs, act, pair, out=out[trials])
        return out


def _n_trials(x: Tensor, weights: list[Tensor]) -> int:
    """The leading trial dimension K of the inputs or weights; 0 when neither has one."""
    return max((t.shape[0] for t in (x, *weights) if t.dim() == 3), default=0)


def _trials_per_group(k: int, bytes_per_trial: int, device: torch.device) -> int:
    if device.type != "cpu":
        return k  # a GPU wants the whole batch at once
    return max(1, min(k, CACHE_BYTES // bytes_per_trial))


def _pair(like: Tensor, size: int) -> Tensor:
    return torch.empty(2, size, dtype=like.dtype, device=like.device)


def _forward_pairs(
    layers: list[Layer], x: Tensor, act: Activation, pair: Tensor, out: Tensor | None = None
) -> Tensor:
    """The forward pass with hidden layer i written into ``pair[i % 2]``."""
    k = _n_trials(x, [wt for wt, _ in layers])
    lead = (k,) if k else ()
    v = x
    for i, layer in enumerate(layers[:-1]):
        shape = (*lead, x.shape[-2], layer[0].shape[-1])
        v = _hidden(layer, v, act, out=pair[i % 2, : math.prod(shape)].view(shape))
    return _affine(layers[-1], v, out=out)
