"""What every solver shares: the result type, the epoch observer and divergence."""

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from admmlab.nets import Activation, forward_no_grad

Tensor = torch.Tensor

# Called after every epoch with the 1-based epoch and that epoch's metrics,
# each a tensor of shape (K,) (one value per trial).
Callback = Callable[[int, dict[str, Tensor]], None]


class NonFiniteError(FloatingPointError):
    """An iterate, weight or loss went NaN/inf; carries where and when."""

    def __init__(
        self,
        quantity: str,
        epoch: int,
        trials: Sequence[int],
        hint: str = "",
        *,
        reasons: Mapping[int, str] | None = None,
        note: str = "",
    ):
        self.quantity, self.epoch, self.trials = quantity, epoch, list(trials)
        self.partial: FitResult | None = None  # history up to the bad epoch
        # Trial k → its own one-line reason, for every trial that went bad at ``epoch``
        # (those that had stopped before are in ``partial.diverged``).
        self.reasons: dict[int, str] = dict(reasons or {})
        message = went_non_finite(quantity, epoch, hint, trials=self.trials)
        super().__init__(f"{message}; {note}" if note else message)


def went_non_finite(
    quantity: str, epoch: int, hint: str = "", trials: Sequence[int] | None = None
) -> str:
    """The one line that says what went non-finite, when (and in which trials)."""
    where = "" if trials is None else f" in trial(s) {list(trials)}"
    message = f"{quantity} became non-finite at epoch {epoch}{where}"
    return f"{message}; {hint}" if hint else message


@dataclass
class FitResult:
    """Final weights (shapes as given) and per-epoch history.

    ``history[name]`` is a tensor of shape ``(epochs, K)`` (or ``(epochs,)`` when
    the solver was called without a trial dimension).
    """

    weights: list[Tensor]
    history: dict[str, Tensor] = field(default_factory=dict)
    # Trial k of a batched run that stopped early → why (see TrialStops); its weights
    # are its last finite ones and its history reads NaN from that epoch on.
    diverged: dict[int, str] = field(default_factory=dict)

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


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _check_weights(weights: Sequence[Tensor]) -> None:
    """``W_i`` is ``n_i × (n_{i-1} + 1)``, with or without a leading K, all alike."""
    if not weights:
        raise ValueError("weights is empty: give W_1 … W_{L+1}, as init_weights returns them")
    ndim = weights[0].dim()
    for i, w in enumerate(weights, start=1):
        if w.dim() not in (2, 3) or w.dim() != ndim:
            raise ValueError(
                f"W_{i} must be n_i × (n_{{i-1}}+1), with or without a leading K like W_1; "
                f"got shape {_shape(w)}"
            )
        if i > 1 and w.shape[-1] != weights[i - 2].shape[-2] + 1:
            raise ValueError(
                f"W_{i} of shape {_shape(w)} does not follow W_{i - 1} of shape "
                f"{_shape(weights[i - 2])}: it needs {weights[i - 2].shape[-2] + 1} columns"
            )


def _check_pair(name: str, x: Tensor, y: Tensor, weights: Sequence[Tensor]) -> None:
    """``X`` is ``(N, d)`` or ``(K, N, d)`` and ``Y`` ``(N, m)`` or ``(K, N, m)``, with
    ``d`` and ``m`` those of the network and the same ``N``."""
    for label, t, cols in ((f"X{name}", x, "d"), (f"Y{name}", y, "m")):
        if t.dim() not in (2, 3):
            raise ValueError(f"{label} must be (N, {cols}) or (K, N, {cols}), got {_shape(t)}")
    d, m = weights[0].shape[-1] - 1, weights[-1].shape[-2]
    if x.shape[-1] != d:
        raise ValueError(
            f"X{name} has {x.shape[-1]} features, but W_1 of shape {_shape(weights[0])} "
            f"takes d = {d} (its last column is the bias)"
        )
    if y.shape[-1] != m:
        raise ValueError(
            f"Y{name} has {y.shape[-1]} columns, but the output layer "
            f"W_{len(weights)} of shape {_shape(weights[-1])} gives m = {m}"
        )
    if x.shape[-2] != y.shape[-2]:
        raise ValueError(f"X{name} has {x.shape[-2]} samples and Y{name} {y.shape[-2]}")


def as_problem(
    X: object, Y: object, weights: Sequence[object], held_out: dict[str, tuple[object, object]]
) -> tuple[Tensor, Tensor, list[Tensor], dict[str, tuple[Tensor, Tensor]]]:
    """A solver's inputs as tensors in the weights' dtype and device (NumPy arrays
    are taken too), their shapes checked against the network with one line naming
    what disagrees.

    ``held_out`` maps a set's name (``test``, ``val``) to its ``(X, Y)``; a set
    given with only one of the two is refused, one given with neither is dropped.
    """
    ws = [torch.as_tensor(w) for w in weights]
    _check_weights(ws)
    like = {"dtype": ws[0].dtype, "device": ws[0].device}
    X, Y = torch.as_tensor(X, **like), torch.as_tensor(Y, **like)
    _check_pair("", X, Y, ws)
    sets = {}
    for name, (x, y) in held_out.items():
        if (x is None) != (y is None):
            given, missing = ("X", "Y") if y is None else ("Y", "X")
            raise ValueError(f"{given}_{name} is given without {missing}_{name}")
        if x is not None:
            sets[name] = (torch.as_tensor(x, **like), torch.as_tensor(y, **like))
            _check_pair(f"_{name}", *sets[name], ws)
    _check_trial_counts([X, Y, *ws], list(itertools.chain(*sets.values())))
    return X, Y, ws, sets


def trial_layout(X: Tensor, Y: Tensor, weights: Sequence[Tensor]) -> tuple[int, bool]:
    """K of whichever input has a trial dimension (:func:`as_problem` made them
    agree), and whether any has one (the caller then gets K-shaped results)."""
    inputs = (X, Y, weights[0])
    n_trials = max(t.shape[0] if t.dim() == 3 else 1 for t in inputs)
    return n_trials, any(t.dim() == 3 for t in inputs)


def trial_weights(weights: Sequence[Tensor], n_trials: int) -> list[Tensor]:
    """Own copies with a leading K (an iteration replaces them, never writes into them)."""
    if weights[0].dim() == 3:
        return [w.clone() for w in weights]
    return [w.unsqueeze(0).repeat(n_trials, 1, 1) for w in weights]


def full_batch_inputs(
    X: object, Y: object, weights: Sequence[object], held_out: dict[str, tuple[object, object]]
) -> tuple[Tensor, Tensor, list[Tensor], dict[str, tuple[Tensor, Tensor]], bool]:
    """A full-batch solver's inputs: :func:`as_problem`'s, the weights as own copies
    with a leading K in the first weight's dtype and device, and whether the caller
    gets K-shaped results (:func:`trial_layout`)."""
    X, Y, ws, sets = as_problem(X, Y, weights, held_out)
    dtype, device = ws[0].dtype, ws[0].device
    n_trials, batched = trial_layout(X, Y, ws)
    return X, Y, trial_weights([w.to(device, dtype) for w in ws], n_trials), sets, batched


def _check_trial_counts(training: list[Tensor], held_out: list[Tensor]) -> None:
    """Every input with a trial dimension has the same K; held-out sets have one only
    if the training inputs have."""
    leading = {t.shape[0] for t in [*training, *held_out] if t.dim() == 3}
    if len(leading) > 1:
        raise ValueError(f"the inputs disagree on the number of trials K: {sorted(leading)}")
    if leading and not any(t.dim() == 3 for t in training):
        raise ValueError("a held-out set has a trial dimension K, but X, Y and the weights do not")


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
            f = forward_no_grad(weights, x, activation)
            out[f"{name}_mse"] = (f - y).square().sum(dim=(-2, -1)) / y.shape[-2]
            if classification:
                hits = f.argmax(dim=-1) == y.argmax(dim=-1)
                out[f"{name}_acc"] = hits.to(f.dtype).mean(dim=-1)
    return out


Quantity = tuple[str, Tensor, str]  # name, value with a leading K, hint


def finite_per_trial(t: Tensor) -> Tensor:
    """One flag per trial (leading dim K): every entry of that trial finite.

    On the CPU a float trial's sum settles the usual case in one reduction (a
    non-finite entry makes it non-finite); only a non-finite sum (a bad entry, or
    finite ones overflowing) needs the entry-by-entry check. Elsewhere, deciding
    between the two would cost a wait for the device, so the check runs at once.
    """
    rows = t.unsqueeze(1) if t.dim() == 1 else t
    within = tuple(range(1, rows.dim()))  # reduced in place: a strided t is not copied
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        finite = torch.isfinite(rows.sum(dim=within))
        if bool(finite.all()):
            return finite
    return torch.isfinite(rows).all(dim=within)


class TrialStops:
    """Each trial of a batched run stops at its own first non-finite iterate.

    A stopped trial keeps its last finite weights and its metrics read NaN from then
    on; the other trials go on exactly as they would alone (nothing an iteration does
    mixes trials), so one diverging seed costs a study one trial, not the setting.
    Without a trial dimension, or once every trial has stopped, the run raises
    :class:`NonFiniteError` instead, naming the first bad quantity; its ``reasons``
    hold the line of each trial that stopped in that epoch.
    """

    def __init__(self, n_trials: int, batched: bool, device: torch.device):
        self.batched = batched
        self.stopped = torch.zeros(n_trials, dtype=torch.bool, device=device)
        self._masking = False  # whether any trial has stopped, without a device sync
        self.reasons: dict[int, str] = {}
        self._kept: dict[int, list[Tensor]] = {}

    def check(
        self,
        epoch: int,
        finite: Tensor,
        quantities: Sequence[Quantity] | Callable[[], Sequence[Quantity]],
        last_good: Sequence[Tensor],
    ) -> None:
        """Stop the trials that ``finite`` (one flag per trial) shows going bad at ``epoch``.

        ``quantities`` (or a function giving them, called only then) lists
        ``(name, value, hint)`` in the order the epoch computes them, each value with a
        leading K, those ``finite`` was read from among them; ``last_good`` are the
        weights of the previous epoch.
        """
        fresh = ~(finite | self.stopped)
        if not bool(fresh.any()):  # the one synchronisation of an ordinary epoch
            return
        listed = quantities() if callable(quantities) else quantities
        first = _first_non_finite(listed, fresh.nonzero().flatten().tolist())
        # Masked from this epoch on, also in the epoch a raising solver still records.
        self.stopped |= fresh
        self._masking = True
        if not self.batched or len(self.reasons) + len(first) == len(self.stopped):
            raise self._none_left(epoch, first)
        for k, (name, hint) in first.items():
            self.reasons[k] = went_non_finite(name, epoch, hint)
            self._kept[k] = [w[k].clone() for w in last_good]

    def _none_left(self, epoch: int, first: dict[int, tuple[str, str]]) -> NonFiniteError:
        """The error once no trial is left: named after the epoch's earliest bad quantity,
        its message naming every trial, its ``reasons`` each trial's own line."""
        groups: dict[str, list[int]] = {}
        for k, (name, _) in first.items():
            groups.setdefault(name, []).append(k)
        (name, trials), *others = groups.items()
        notes = [f"{other} in trial(s) {ks}" for other, ks in others]
        if self.reasons:
            notes.append(f"trial(s) {sorted(self.reasons)} had stopped before")
        return NonFiniteError(
            name,
            epoch,
            trials,
            first[trials[0]][1],
            reasons={k: went_non_finite(q, epoch, hint) for k, (q, hint) in first.items()},
            note="; ".join(notes),
        )

    def mask(self, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
        """``metrics`` with the stopped trials' values set to NaN."""
        if not self._masking:
            return metrics
        return {name: v.masked_fill(self.stopped, torch.nan) for name, v in metrics.items()}

    def final(self, weights: Sequence[Tensor]) -> list[Tensor]:
        """``weights`` with each stopped trial's rows put back to its last finite ones."""
        out = [w.clone() for w in weights] if self._kept else list(weights)
        for k, kept in self._kept.items():
            for w, row in zip(out, kept, strict=True):
                w[k] = row
        return out


def _first_non_finite(
    quantities: Sequence[Quantity], trials: list[int]
) -> dict[int, tuple[str, str]]:
    """``(name, hint)`` of each of ``trials``' first non-finite quantity, ordered by
    quantity (a trial that none shows bad gets the last one's, whose check found it)."""
    first: dict[int, tuple[str, str]] = {}
    for name, value, hint in quantities:
        ok = finite_per_trial(value).tolist()
        first.update({k: (name, hint) for k in trials if not ok[k] and k not in first})
    last, _, last_hint = quantities[-1]
    return first | {k: (last, last_hint) for k in trials if k not in first}
