"""SGD-type baselines (SGD, SGD with momentum, Adam) on the shared representation.

The K trials of a run are trained together: weights carry a leading trial
dimension and the loss is the sum of the per-trial losses, so each trial's
gradient, and hence its element-wise optimiser step, is exactly what it would
be alone. Each trial shuffles its mini-batches with its own seed.
"""

from collections.abc import Sequence

import torch

from admmlab.nets import Activation, get_activation
from admmlab.seeding import generator
from admmlab.solvers.base import (
    Callback,
    FitResult,
    Quantity,
    as_problem,
    evaluate,
    finite_per_trial,
    trial_layout,
)
from admmlab.solvers.loop import run_epochs
from admmlab.solvers.settings import SGD
from admmlab.solvers.settings import SGD_METHODS as _SETTINGS
from admmlab.solvers.sgd_steps import METHODS, make_step, penalty, square_loss

__all__ = ["METHODS", "fit", "penalty", "square_loss"]

Tensor = torch.Tensor


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
    ADMM (:func:`admmlab.solvers.loop.run_epochs`); the error raised when none is left
    also has the bad epoch in its ``partial`` history (NaN, as every stopped trial's
    metrics read).
    """
    if method not in METHODS:
        raise ValueError(f"unknown SGD-type method {method!r}; choose one of {METHODS}")
    settings = _SETTINGS[method](
        epochs=epochs, lr=lr, lam=lam, batch_size=batch_size, lr_gamma=lr_gamma,
        lr_every=lr_every, impl=impl,
        **({"momentum": momentum} if method == "sgdm" else {}),
        **({"betas": list(betas), "eps": eps} if method == "adam" else {}),
    )  # fmt: skip
    X, Y, weights, held_out = as_problem(
        X, Y, weights, {"val": (X_val, Y_val), "test": (X_test, Y_test)}
    )
    act = get_activation(activation)
    X, Y, ws, batched = _batched(X, Y, weights)
    k, n = X.shape[0], X.shape[1]
    settings.check_data(n)
    epochs_ = MiniBatchEpochs(
        settings, X, Y, ws, act, seeds if seeds is not None else range(k), classification
    )
    return run_epochs(
        epochs_,
        epochs=epochs,
        activation=act,
        held_out={name: (_as_trials(x, k), _as_trials(y, k)) for name, (x, y) in held_out.items()},
        classification=classification,
        batched=batched,
        callback=callback,
    )


class MiniBatchEpochs:
    """One epoch = one pass over each trial's own shuffle of the training set, one
    optimiser step per mini-batch (a ragged last batch is dropped, as in the paper)."""

    def __init__(
        self, s: SGD, X: Tensor, Y: Tensor, ws: list[Tensor], act: Activation, seeds,
        classification: bool,
    ):  # fmt: skip
        self.X, self.Y, self.act, self.classification = X, Y, act, classification
        self.batch_size, self.steps = s.batch_size, X.shape[1] // s.batch_size
        self.step = make_step(s.impl, ws, act, s)
        self.orders = batch_orders(seeds, X.shape[1], s.epochs, X.device)
        self._weights = self.step.weights()

    def epoch(self, epoch: int) -> dict[str, Tensor]:
        self.step.begin_epoch()
        # One gather per epoch; its mini-batches are then views.
        order = self.orders[epoch - 1, :, : self.steps * self.batch_size].unsqueeze(-1)
        x_epoch = torch.take_along_dim(self.X, order, dim=1).split(self.batch_size, dim=1)
        y_epoch = torch.take_along_dim(self.Y, order, dim=1).split(self.batch_size, dim=1)
        for xb, yb in zip(x_epoch, y_epoch, strict=True):
            self.step.train(xb, yb)
        self._weights = self.step.weights()
        metrics = evaluate(
            self._weights, self.act, {"train": (self.X, self.Y)}, classification=self.classification
        )
        k = self.X.shape[0]
        metrics["lr"] = torch.full((k,), self.step.lr, device=self.X.device)
        self.step.end_epoch()
        # grad_norm/layer_i: the RMS over the epoch's steps of the layer's gradient norm.
        for i, sq in enumerate(self.step.grad_sq_sums(), start=1):
            metrics[f"grad_norm/layer_{i}"] = (sq / self.steps).sqrt()
        return metrics

    def weights(self) -> list[Tensor]:
        return self._weights

    def finite(self, metrics: dict[str, Tensor]) -> Tensor:
        return _finite_trials(self.quantities(metrics))

    def quantities(self, metrics: dict[str, Tensor]) -> list[Quantity]:
        named = [("train_mse", metrics["train_mse"], "")]
        return named + [(f"W_{i}", w, "") for i, w in enumerate(self._weights, start=1)]


def _finite_trials(quantities: list[Quantity]) -> Tensor:
    """One flag per trial: every quantity finite."""
    return torch.stack([finite_per_trial(t) for _, t, _ in quantities]).all(dim=0)
