"""One mini-batch step of the SGD-type solvers, in two implementations.

:class:`ReferenceStep` is the readable one: the shared weights as autograd
leaves, the loss written as the paper writes it, ``loss.backward()``, then
``torch.optim``'s step and ``StepLR``'s rate. :class:`FastStep` takes the same
step on a layout that BLAS takes as it is: each layer as two contiguous
tensors, ``wt = W̄ᵢᵀ`` of shape ``(K, n_{i-1}, n_i)`` and ``b`` of shape
``(K, 1, n_i)``, with a hand-written backward pass that updates each layer as
soon as its gradient is known (:mod:`admmlab.solvers.sgd_updates`). The shared
layout keeps the bias as ``W_i``'s last column, so its products read strided
slices and autograd writes transposed gradients back into it, both of which
copy. SGD, momentum and Adam update entry by entry, so both take the same step;
the tests hold the two equal.

A step trains on one mini-batch (``train``), keeps each epoch's sum of squared
gradient norms for the ``grad_norm/layer_i`` metric (``grad_sq_sums``: per
layer and trial), moves the rate on at the end of each epoch, and gives the
weights in the shared representation (``weights()``, fresh tensors each call).
"""

import itertools
import math
from typing import Protocol

import torch

from admmlab.nets import Activation, forward
from admmlab.solvers.settings import IMPLS, SGD
from admmlab.solvers.sgd_graphs import graphed
from admmlab.solvers.sgd_updates import METHODS, StepRate, make_update

Tensor = torch.Tensor
Buffers = tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]


class Step(Protocol):
    @property
    def lr(self) -> float: ...

    def begin_epoch(self) -> None: ...

    def train(self, x: Tensor, y: Tensor) -> None: ...

    def end_epoch(self) -> None: ...

    def grad_sq_sums(self) -> list[Tensor]: ...

    def weights(self) -> list[Tensor]: ...


def square_loss(f: Tensor, y: Tensor) -> Tensor:
    """``Σ_k ‖f_k − y_k‖² / b`` for ``b`` rows per trial: each trial's gradient is its own."""
    return (f - y).square().sum() / y.shape[-2]


def penalty(weights: list[Tensor], lam: float) -> Tensor:
    """``λ/2 Σ‖W_i‖²`` summed over trials."""
    return 0.5 * lam * sum(w.square().sum() for w in weights)


def make_optimizer(
    method: str, params: list[Tensor], *, lr: float, momentum: float, betas, eps: float
) -> torch.optim.Optimizer:
    """``sgd`` ignores ``momentum``; ``sgdm`` is SGD with it; ``adam`` uses betas/eps.

    Adam's step is the fused kernel (one pass per tensor instead of six); SGD's
    gains nothing from it.
    """
    if method == "sgd":
        return torch.optim.SGD(params, lr=lr, foreach=True)
    if method == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True)
    if method == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, fused=True)
    raise ValueError(f"unknown SGD-type method {method!r}; choose one of {METHODS}")


def _hyper(s: SGD) -> dict:
    """The method's own settings, with ``torch.optim``'s defaults for the others."""
    return {
        "lr": s.lr,
        "momentum": getattr(s, "momentum", 0.0),
        "betas": getattr(s, "betas", (0.9, 0.999)),
        "eps": getattr(s, "eps", 1e-8),
    }


class ReferenceStep:
    """Autograd on the shared representation: the loss as written, backward, ``torch.optim``."""

    def __init__(self, weights: list[Tensor], act: Activation, s: SGD):
        self.params = [w.detach().clone().requires_grad_(True) for w in weights]
        self.act, self.lam = act, s.lam
        self.opt = make_optimizer(s.name, self.params, **_hyper(s))
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, s.lr_every, gamma=s.lr_gamma)
        self.grad_sq = [torch.zeros_like(p) for p in self.params]

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def begin_epoch(self) -> None:
        torch._foreach_zero_(self.grad_sq)

    def train(self, x: Tensor, y: Tensor) -> None:
        for p in self.params:
            p.grad = None
        loss = square_loss(forward(self.params, x, self.act), y)
        if self.lam:
            loss = loss + penalty(self.params, self.lam)
        loss.backward()
        grads = [p.grad for p in self.params]
        torch._foreach_addcmul_(self.grad_sq, grads, grads)
        self.opt.step()

    def end_epoch(self) -> None:
        self.sched.step()

    def grad_sq_sums(self) -> list[Tensor]:
        return [t.sum(dim=(-2, -1)) for t in self.grad_sq]

    def weights(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.params]


class FastStep:
    """Hand-written back-propagation on contiguous ``wt`` and ``b`` per layer.

    Every product reads its operands in place (a transpose of a contiguous
    matrix is a BLAS flag, not a copy) and writes into a kept buffer. All
    layers' ``wt`` and ``b`` are contiguous blocks of one flat tensor, layer by
    layer, and so are their gradients and the optimiser's state: layer ``i``'s
    part is one slice of each, which the penalty and the update take in one
    kernel apiece right after ``δ`` has gone past the layer, while the part is
    in cache. The gradient's norms for ``grad_norm/layer_i`` are read there too.
    """

    def __init__(self, weights: list[Tensor], act: Activation, s: SGD):
        k = weights[0].shape[0]
        blocks = [
            shape
            for w in weights  # W_i is n_i × (n_{i-1} + 1): wt is n_{i-1} × n_i, b is 1 × n_i
            for shape in ((k, w.shape[-1] - 1, w.shape[-2]), (k, 1, w.shape[-2]))
        ]
        segments = _segments([math.prod(shape) for shape in blocks])
        like = {"dtype": weights[0].dtype, "device": weights[0].device}
        self.flat = torch.empty(segments[-1][1], **like)
        self.grad = torch.empty_like(self.flat)

        def carve(t: Tensor) -> list[Tensor]:
            return [t[a:b].view(shape) for (a, b), shape in zip(segments, blocks, strict=True)]

        views, grads = carve(self.flat), carve(self.grad)
        self.wts, self.biases = views[::2], views[1::2]
        self.wts_t = [wt.mT for wt in self.wts]
        self.grad_wts, self.grad_biases = grads[::2], grads[1::2]
        parts = [  # layer i: its wt block, then its b block
            slice(segments[2 * i][0], segments[2 * i + 1][1]) for i in range(len(weights))
        ]
        self.layer_params = [self.flat[part] for part in parts]
        self.layer_grads = [self.grad[part] for part in parts]
        # Each layer's gradient as rows of one per trial (its two blocks; a single trial's
        # whole part is one row): their norms at each step, and the epoch's sum of squares.
        grad_rows = [
            [g.view(1, -1)] if k == 1 else [gw.view(k, -1), gb.view(k, -1)]
            for g, gw, gb in zip(self.layer_grads, grads[::2], grads[1::2], strict=True)
        ]
        self.norms = [torch.empty(len(rows), k, **like) for rows in grad_rows]
        self.norm_sq = [torch.zeros_like(n) for n in self.norms]
        self.norm_pairs = [  # (rows, where their norms go), for each layer
            list(zip(rows, norms.unbind(), strict=True))
            for rows, norms in zip(grad_rows, self.norms, strict=True)
        ]
        for w, wt, b in zip(weights, self.wts, self.biases, strict=True):
            wt.copy_(w[..., :-1].mT)
            b.copy_(w[..., -1:].mT)
        self.n_trials, self.act, self.lam = k, act, s.lam
        self.update = make_update(s.name, self.flat, parts, **_hyper(s))
        self.rate = StepRate(self.update, s.lr_gamma, s.lr_every)
        self.buffers: dict[int, Buffers] = {}

    @property
    def lr(self) -> float:
        return self.update.lr

    def graph_key(self) -> tuple:
        """The Python numbers ``train`` hands its kernels (a CUDA graph fixes them)."""
        return self.update.graph_key()

    def begin_epoch(self) -> None:
        torch._foreach_zero_(self.norm_sq)

    def train(self, x: Tensor, y: Tensor) -> None:
        outs, outs_t, deltas, ones = self._buffers(x.shape[-2])
        # Each bias added after its product (baddbmm would first copy it into every
        # row), in the kernel that applies σ where there is one (ReLU's).
        v = x
        for wt, b, out in zip(self.wts[:-1], self.biases[:-1], outs[:-1], strict=True):
            v = self.act.add_fn_(torch.bmm(v, wt, out=out), b)
        f = torch.bmm(v, self.wts[-1], out=outs[-1]).add_(self.biases[-1])
        delta = f.sub_(y).mul_(2).mul_(1 / y.shape[-2])  # d(square_loss)/df
        self.update.begin()
        for i in range(len(self.wts) - 1, -1, -1):
            torch.bmm(outs_t[i - 1] if i else x.mT, delta, out=self.grad_wts[i])
            # The bias gradient, δ's column sums, as a product: faster than the reduction.
            torch.bmm(ones, delta, out=self.grad_biases[i])
            if i:
                back = torch.bmm(delta, self.wts_t[i], out=deltas[i - 1])
                delta = self.act.times_deriv_(back, outs[i - 1])
            self._step_layer(i)
        self.update.end()
        torch._foreach_addcmul_(self.norm_sq, self.norms, self.norms)

    def _step_layer(self, i: int) -> None:
        p, g = self.layer_params[i], self.layer_grads[i]
        if self.lam:
            g.add_(p, alpha=self.lam)
        for row, norm in self.norm_pairs[i]:
            torch.linalg.vector_norm(row, dim=-1, out=norm)
        self.update(i, p, g)

    def _buffers(self, rows: int) -> Buffers:
        """Each layer's output (and its transpose) and back-propagated ``δ`` for ``rows``
        samples, and a row of ones per trial, kept from step to step."""
        if rows not in self.buffers:
            outs = [self.flat.new_empty((self.n_trials, rows, wt.shape[-1])) for wt in self.wts]
            deltas = [torch.empty_like(o) for o in outs[:-1]]
            ones = self.flat.new_ones((self.n_trials, 1, rows))
            self.buffers[rows] = (outs, [o.mT for o in outs], deltas, ones)
        return self.buffers[rows]

    def end_epoch(self) -> None:
        self.rate.step()

    def grad_sq_sums(self) -> list[Tensor]:
        """Per layer and trial, the epoch's sum of squared gradient norms."""
        return [sq.sum(dim=0) for sq in self.norm_sq]

    def weights(self) -> list[Tensor]:
        """Each ``W_i`` as the transpose of a fresh ``[W̄ᵢᵀ; bᵢ]``: copying needs no
        transposing, and the evaluation's product reads ``W̄ᵢᵀ`` as it is."""
        return [torch.cat([wt, b], dim=-2).mT for wt, b in zip(self.wts, self.biases, strict=True)]


def _segments(sizes: list[int]) -> list[tuple[int, int]]:
    ends = list(itertools.accumulate(sizes))
    return list(zip([0, *ends[:-1]], ends, strict=True))


def make_step(impl: str, weights: list[Tensor], act: Activation, s: SGD) -> Step:
    if impl == "fast":
        return graphed(FastStep(weights, act, s))
    if impl == "reference":
        return ReferenceStep(weights, act, s)
    raise ValueError(f"unknown SGD step implementation {impl!r}; choose one of {IMPLS}")
