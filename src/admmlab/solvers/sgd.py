"""SGD-type baselines (SGD, SGD with momentum, Adam) on the shared representation.

The K trials of a run are trained together: weights carry a leading trial
dimension and the loss is the sum of the per-trial losses, so each trial's
gradient, and hence its element-wise optimiser step, is exactly what it would
be alone. Each trial shuffles its mini-batches with its own seed.
"""

import time
from collections.abc import Sequence

import torch

from admmlab.nets import Activation, get_activation
from admmlab.seeding import generator
from admmlab.solvers.base import (
    Callback,
    FitResult,
    HistoryRecorder,
    NonFiniteError,
    Quantity,
    TrialStops,
    as_problem,
    evaluate,
    finite_per_trial,
    trial_layout,
)
from admmlab.solvers.sgd_steps import IMPLS, make_step, penalty, square_loss

__all__ = ["IMPLS", "METHODS", "fit", "make_optimizer", "penalty", "square_loss"]

Tensor = torch.Tensor
METHODS = ("sgd", "sgdm", "adam")


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


def batch_orders(seeds: Sequence[int], n: int, epochs: int, device) -> Tensor:
    """Per-trial sample orders for every epoch, shape ``(epochs, K, n)``.

    Drawn up front on the CPU from one generator per trial, so batched and
    separate runs of a seed see identical batches on any device.
    """
    orders = []
    for seed in seeds:
        g = generator(int(seed), "batches")
        orders.append(torch.stack([torch.randperm(n, generator=g) for _ in range(epochs)]))
    return torch.stack(orders, dim=1).to(device)


def _batched(X: Tensor, Y: Tensor, weights: list[Tensor]):
    """Give everything a trial dimension; say whether the caller had one.

    As in ADMM, weights without one start every trial of K-trial data.
    """
    k, batched = trial_layout(X, Y, weights)
    ws = [w if w.dim() == 3 else w.expand(k, *w.shape) for w in weights]
    return _as_trials(X, k), _as_trials(Y, k), ws, batched


def _as_trials(t: Tensor, k: int) -> Tensor:
    return t if t.dim() == 3 else t.expand(k, *t.shape)


def fit(
    X: Tensor,
    Y: Tensor,
    weights: list[Tensor],
    *,
    method: str = "sgd",
    lr: float,
    epochs: int,
    lam: float = 0.0,
    batch_size: int = 50,
    momentum: float = 0.9,
    lr_gamma: float = 0.9,
    lr_every: int = 10,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    activation: str | Activation = "relu",
    seeds: Sequence[int] | None = None,
    X_test: Tensor | None = None,
    Y_test: Tensor | None = None,
    X_val: Tensor | None = None,
    Y_val: Tensor | None = None,
    classification: bool = False,
    callback: Callback | None = None,
    impl: str = "fast",
) -> FitResult:
    """Mini-batch training of the square loss ``mean ‖f(x) − y‖² + λ/2 Σ‖W‖²``.

    The rate is multiplied by ``lr_gamma`` every ``lr_every`` epochs (docs/studies.md).
    Shapes as in :func:`admmlab.solvers.admm.fit`; ``seeds`` (one per trial)
    fix the mini-batch order. History: ``train_mse``, ``test_mse``,
    ``grad_norm/layer_i`` (RMS over the epoch's steps), ``lr`` and ``epoch_time_s``.
    ``impl`` picks the step: ``"fast"`` (the default) or ``"reference"``, the readable
    autograd one it is tested against (:mod:`admmlab.solvers.sgd_steps`).
    A trial whose loss or weights go non-finite stops at the end of that epoch, as in
    ADMM (:class:`TrialStops`); the error raised when none is left also has the bad
    epoch in its ``partial`` history (NaN, as every stopped trial's metrics read).
    """
    X, Y, weights, held_out = as_problem(
        X, Y, weights, {"val": (X_val, Y_val), "test": (X_test, Y_test)}
    )
    act = get_activation(activation)
    X, Y, ws, batched = _batched(X, Y, weights)
    k, n = X.shape[0], X.shape[1]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in 1..{n} (the training set), got {batch_size}")
    step = make_step(impl, ws, act, lam)
    opt = make_optimizer(method, step.params, lr=lr, momentum=momentum, betas=betas, eps=eps)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_every, gamma=lr_gamma)
    orders = batch_orders(seeds if seeds is not None else range(k), n, epochs, X.device)
    sets = {"train": (X, Y)} | {
        name: (_as_trials(x, k), _as_trials(y, k)) for name, (x, y) in held_out.items()
    }
    recorder = HistoryRecorder(callback)
    stops = TrialStops(k, batched, X.device)
    last_good = step.weights()  # as of the previous epoch's end

    def result(weights: list[Tensor]) -> FitResult:
        final = stops.final(weights)
        final = final if batched else [w[0] for w in final]
        return FitResult(final, recorder.history(batched), dict(stops.reasons))

    steps = n // batch_size  # a ragged last batch is dropped, as in the paper's setup
    # Σ_steps g², element-wise (one op a step), summed per layer and trial at the epoch's end:
    # grad_norm/layer_i is the RMS over the epoch's steps of layer i's gradient norm.
    grad_sq = [torch.empty_like(p) for p in step.params]
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        torch._foreach_zero_(grad_sq)
        # One gather per epoch; its mini-batches are then views.
        order = orders[epoch - 1, :, : steps * batch_size].unsqueeze(-1)
        x_epoch = torch.take_along_dim(X, order, dim=1).split(batch_size, dim=1)
        y_epoch = torch.take_along_dim(Y, order, dim=1).split(batch_size, dim=1)
        for xb, yb in zip(x_epoch, y_epoch, strict=True):
            grads = step.gradients(xb, yb)
            torch._foreach_addcmul_(grad_sq, grads, grads)
            opt.step()
        weights = step.weights()
        metrics = evaluate(weights, act, sets, classification=classification)
        metrics["lr"] = torch.full((k,), opt.param_groups[0]["lr"], device=X.device)
        sched.step()
        for i, sq in enumerate(step.layer_sums(grad_sq), start=1):
            metrics[f"grad_norm/layer_{i}"] = (sq / steps).sqrt()
        metrics["epoch_time_s"] = torch.full((k,), time.perf_counter() - start, device=X.device)
        quantities = [("train_mse", metrics["train_mse"], "")]
        quantities += [(f"W_{i}", w, "") for i, w in enumerate(weights, start=1)]
        try:
            stops.check(epoch, _finite_trials(quantities), quantities, last_good)
        except NonFiniteError as err:
            recorder.record(epoch, stops.mask(metrics))  # every trial has stopped: all NaN
            err.partial = result(last_good)
            raise
        recorder.record(epoch, stops.mask(metrics))
        last_good = weights
    return result(last_good)


def _finite_trials(quantities: list[Quantity]) -> Tensor:
    """One flag per trial: every quantity finite."""
    return torch.stack([finite_per_trial(t) for _, t, _ in quantities]).all(dim=0)
