"""The one epoch loop every solver runs: iterate, evaluate, stop diverged trials, record.

A solver hands the loop an :class:`Epochs`: how to run one epoch, its current
weights, and what may go non-finite. The loop owns the rest, the same for every
solver: held-out evaluation, per-trial stopping (:class:`TrialStops`), the
history and the user's callback, the epoch's wall time, and the result.
"""

import time
from collections.abc import Callable
from typing import Protocol

import torch

from admmlab.nets import Activation
from admmlab.solvers.base import (
    Callback,
    FitResult,
    HistoryRecorder,
    NonFiniteError,
    Quantity,
    TrialStops,
    evaluate,
)

Tensor = torch.Tensor


class Epochs(Protocol):
    """A solver as the loop drives it, its tensors with a leading trial dimension K."""

    def epoch(self, epoch: int) -> dict[str, Tensor]:
        """Run epoch ``epoch`` (1-based); its training metrics, each of shape ``(K,)``."""
        ...

    def weights(self) -> list[Tensor]:
        """The current ``W_1 … W_{L+1}``, which later epochs do not write into."""
        ...

    def finite(self, metrics: dict[str, Tensor]) -> Tensor:
        """One flag per trial: this epoch left it finite."""
        ...

    def quantities(self, metrics: dict[str, Tensor]) -> list[Quantity]:
        """What may have gone non-finite, in the order the epoch computes it."""
        ...


def run_epochs(
    solver: Epochs,
    *,
    epochs: int,
    activation: Activation,
    held_out: dict[str, tuple[Tensor, Tensor]],
    classification: bool,
    batched: bool,
    callback: Callback | None = None,
) -> FitResult:
    """Run ``epochs`` epochs of ``solver`` and return its final weights and history.

    After each epoch the held-out sets (each with a leading K) are evaluated, trials
    that went non-finite stop with their last finite weights (their metrics read NaN
    from that epoch on), and the metrics are recorded and passed to ``callback``.
    Without a trial dimension (``batched`` false), or once every trial has stopped,
    the loop records that epoch and raises :class:`NonFiniteError` with the run so far
    in its ``partial``.
    """
    start_weights = [w.clone() for w in solver.weights()]
    n_trials = start_weights[0].shape[0]
    device = start_weights[0].device
    recorder = HistoryRecorder(callback)
    stops = TrialStops(n_trials, batched, device)

    def result(weights: list[Tensor]) -> FitResult:
        final = [w.contiguous() for w in stops.final(weights)]
        final = final if batched else [w[0] for w in final]
        return FitResult(final, recorder.history(batched), dict(stops.reasons))

    good = start_weights
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        metrics = solver.epoch(epoch)
        weights = solver.weights()
        metrics.update(evaluate(weights, activation, held_out, classification=classification))
        quantities: Callable[[], list[Quantity]] = lambda m=metrics: solver.quantities(m)  # noqa: E731
        try:
            stops.check(epoch, solver.finite(metrics), quantities, good)
        except NonFiniteError as err:
            recorder.record(epoch, stops.mask(_timed(metrics, start, n_trials, device)))
            err.partial = result(good)
            raise
        recorder.record(epoch, stops.mask(_timed(metrics, start, n_trials, device)))
        good = weights
    return result(good)


def _timed(metrics: dict[str, Tensor], start: float, k: int, device) -> dict[str, Tensor]:
    """``metrics`` with the epoch's wall time so far as ``epoch_time_s`` (one per trial)."""
    elapsed = time.perf_counter() - start
    dtype = next(iter(metrics.values())).dtype
    return metrics | {"epoch_time_s": torch.full((k,), elapsed, dtype=dtype, device=device)}
