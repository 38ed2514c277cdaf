"""One mini-batch step of the SGD-type solvers, in two implementations.

:class:`ReferenceStep` is the readable one: the shared weights as autograd
leaves, the loss written as the paper writes it, ``loss.backward()``.
:class:`FastStep` computes the same gradient on a layout that BLAS takes as
it is: each layer as two contiguous tensors, ``wt = W̄ᵢᵀ`` of shape
``(K, n_{i-1}, n_i)`` and ``b`` of shape ``(K, 1, n_i)``. The shared layout
keeps the bias as ``W_i``'s last column, so its products read strided slices
and autograd writes transposed gradients back into it, both of which copy.
SGD, momentum and Adam update entry by entry, so an optimiser stepping on
either layout takes the same step; the tests hold the two equal.

A step object owns the tensors the optimiser updates (``params``), sums a
tensor laid out like them per layer and trial (``layer_sums``), and gives the
weights in the shared representation (``weights()``, fresh tensors each call).
"""

import itertools
import math
from typing import Protocol

import torch

from admmlab.nets import Activation, forward
from admmlab.solvers.settings import IMPLS

Tensor = torch.Tensor


class Step(Protocol):
    params: list[Tensor]

    def gradients(self, x: Tensor, y: Tensor) -> list[Tensor]: ...

    def layer_sums(self, per_param: list[Tensor]) -> list[Tensor]: ...

    def weights(self) -> list[Tensor]: ...


def square_loss(f: Tensor, y: Tensor) -> Tensor:
    """``Σ_k ‖f_k − y_k‖² / b`` for ``b`` rows per trial: each trial's gradient is its own."""
    return (f - y).square().sum() / y.shape[-2]


def penalty(weights: list[Tensor], lam: float) -> Tensor:
    """``λ/2 Σ‖W_i‖²`` summed over trials."""
    return 0.5 * lam * sum(w.square().sum() for w in weights)


class ReferenceStep:
    """Autograd on the shared representation: the loss as written, then backward."""

    def __init__(self, weights: list[Tensor], act: Activation, lam: float):
        self.params = [w.detach().clone().requires_grad_(True) for w in weights]
        self.act, self.lam = act, lam

    def gradients(self, x: Tensor, y: Tensor) -> list[Tensor]:
        for p in self.params:
            p.grad = None
        loss = square_loss(forward(self.params, x, self.act), y)
        if self.lam:
            loss = loss + penalty(self.params, self.lam)
        loss.backward()
        return [p.grad for p in self.params]

    def layer_sums(self, per_param: list[Tensor]) -> list[Tensor]:
        return [t.sum(dim=(-2, -1)) for t in per_param]

    def weights(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.params]


class FastStep:
    """Hand-written back-propagation on contiguous ``wt`` and ``b`` per layer.

    Every product reads its operands in place (a transpose of a contiguous
    matrix is a BLAS flag, not a copy) and writes into a kept gradient buffer.
    All layers' ``wt`` and ``b`` are contiguous blocks of one flat tensor, and so
    are their gradients, so an optimiser step or a running sum of squared
    gradients is one kernel over the whole net instead of two per layer.
    """

    def __init__(self, weights: list[Tensor], act: Activation, lam: float):
        k = weights[0].shape[0]
        blocks = [
            shape
            for w in weights  # W_i is n_i × (n_{i-1} + 1): wt is n_{i-1} × n_i, b is 1 × n_i
            for shape in ((k, w.shape[-1] - 1, w.shape[-2]), (k, 1, w.shape[-2]))
        ]
        self.segments = _segments([math.prod(shape) for shape in blocks])
        self.flat = torch.empty(
            self.segments[-1][1], dtype=weights[0].dtype, device=weights[0].device
        )
        self.flat.grad = torch.empty_like(self.flat)
        self.params = [self.flat]

        def carve(t: Tensor) -> list[Tensor]:
            return [t[a:b].view(shape) for (a, b), shape in zip(self.segments, blocks, strict=True)]

        views, grads = carve(self.flat), carve(self.flat.grad)
        self.wts, self.biases = views[::2], views[1::2]
        self.grad_wts, self.grad_biases = grads[::2], grads[1::2]
        for w, wt, b in zip(weights, self.wts, self.biases, strict=True):
            wt.copy_(w[..., :-1].mT)
            b.copy_(w[..., -1:].mT)
        self.n_trials, self.act, self.lam = k, act, lam

    def gradients(self, x: Tensor, y: Tensor) -> list[Tensor]:
        outputs = [x]
        for wt, b in zip(self.wts[:-1], self.biases[:-1], strict=True):
            outputs.append(self.act.fn_(torch.baddbmm(b, outputs[-1], wt)))
        f = torch.baddbmm(self.biases[-1], outputs[-1], self.wts[-1])
        delta = f.sub_(y).mul_(2).mul_(1 / y.shape[-2])  # d(square_loss)/df
        for i in range(len(self.wts) - 1, -1, -1):
            torch.bmm(outputs[i].mT, delta, out=self.grad_wts[i])
            torch.sum(delta, dim=-2, keepdim=True, out=self.grad_biases[i])
            if i:
                delta = self.act.times_deriv_(torch.bmm(delta, self.wts[i].mT), outputs[i])
        if self.lam:
            self.flat.grad.add_(self.flat * self.lam)
        return [self.flat.grad]

    def layer_sums(self, per_param: list[Tensor]) -> list[Tensor]:
        """Per layer and trial, the sum of a tensor laid out as ``params``."""
        (flat,) = per_param
        per_block = [flat[a:b].view(self.n_trials, -1).sum(dim=-1) for a, b in self.segments]
        return [w + b for w, b in zip(per_block[::2], per_block[1::2], strict=True)]

    def weights(self) -> list[Tensor]:
        return [
            torch.cat([wt.mT, b.mT], dim=-1) for wt, b in zip(self.wts, self.biases, strict=True)
        ]


def _segments(sizes: list[int]) -> list[tuple[int, int]]:
    ends = list(itertools.accumulate(sizes))
    return list(zip([0, *ends[:-1]], ends, strict=True))


def make_step(impl: str, weights: list[Tensor], act: Activation, lam: float) -> Step:
    if impl == "fast":
        return FastStep(weights, act, lam)
    if impl == "reference":
        return ReferenceStep(weights, act, lam)
    raise ValueError(f"unknown SGD step implementation {impl!r}; choose one of {IMPLS}")
