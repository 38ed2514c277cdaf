"""What every solver shares: the result type, the epoch observer and divergence."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from admmlab.nets import Activation, forward

Tensor = torch.Tensor

# Called after every epoch with the 1-based epoch and that epoch's metrics,
# each a tensor of shape (K,) (one value per trial).
Callback = Callable[[int, dict[str, Tensor]], None]


class NonFiniteError(FloatingPointError):
    """An iterate, weight or loss went NaN/inf; carries where and when."""

    def __init__(self, quantity: str, epoch: int, trials: Sequence[int], hint: str = ""):
        self.quantity, self.epoch, self.trials = quantity, epoch, list(trials)
        self.partial: FitResult | None = None  # history up to the bad epoch
        message = f"{quantity} became non-finite at epoch {epoch} in trial(s) {self.trials}"
        super().__init__(f"{message}; {hint}" if hint else message)


@dataclass
class FitResult:
    """Final weights (shapes as given) and per-epoch history.

    ``history[name]`` is a tensor of shape ``(epochs, K)`` (or ``(epochs,)`` when
    the solver was called without a trial dimension).
    """

    weights: list[Tensor]
    history: dict[str, Tensor] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Tensor]:
        """``best_train_mse``, ``final_train_mse``, ``final_test_mse`` and the like."""
        out = {}
        for name in ("train_mse", "test_mse"):
            if name in self.history and len(self.history[name]):
                out[f"final_{name}"] = self.history[name][-1]
        if "train_mse" in self.history and len(self.history["train_mse"]):
            out["best_train_mse"] = torch.nan_to_num(
                self.history["train_mse"], nan=float("inf")
            ).amin(dim=0)
        return out


def check_finite(quantity: str, epoch: int, t: Tensor, hint: str = "") -> None:
    """Raise :class:`NonFiniteError` if any trial of ``t`` (leading dim K) is not finite."""
    ok = torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1)
    if not bool(ok.all()):
        raise NonFiniteError(quantity, epoch, torch.nonzero(~ok).flatten().tolist(), hint)


class HistoryRecorder:
    """Collects per-epoch metric dicts and hands each to the user's callback."""

    def __init__(self, callback: Callback | None):
        self.callback = callback
        self.rows: dict[str, list[Tensor]] = {}

    def record(self, epoch: int, metrics: dict[str, Tensor]) -> None:
        for k, v in metrics.items():
            self.rows.setdefault(k, []).append(v.detach())
        if self.callback is not None:
            self.callback(epoch, metrics)

    def history(self, batched: bool) -> dict[str, Tensor]:
        h = {k: torch.stack(v) for k, v in self.rows.items()}
        return h if batched else {k: v[:, 0] for k, v in h.items()}


def evaluate(
    weights: list[Tensor],
    activation: Activation,
    sets: dict[str, tuple[Tensor, Tensor] | None],
    *,
    classification: bool = False,
) -> dict[str, Tensor]:
    """``<set>_mse`` (``‖f(X) − Y‖²_F / N``) and, for classification, ``<set>_acc``.

    Inputs carry the trial dimension: X ``(K, N, d)``, Y ``(K, N, m)``; every
    metric has shape ``(K,)``. ``None`` entries are skipped.
    """
    out = {}
    with torch.no_grad():
        for name, xy in sets.items():
            if xy is None:
                continue
            x, y = xy
            f = forward(weights, x, activation)
            out[f"{name}_mse"] = (f - y).square().sum(dim=(-2, -1)) / y.shape[-2]
            if classification:
                hits = f.argmax(dim=-1) == y.argmax(dim=-1)
                out[f"{name}_acc"] = hits.to(f.dtype).mean(dim=-1)
    return out
