"""dlADMM (``solver=dladmm``): Wang, Yu, Chen and Zhao (KDD 2019), docs/algorithm.md "dlADMM".

Every layer has weights ``W_i = [W̄_i b_i]``, a pre-activation ``z_i`` and, below the
output, an output ``a_i`` (``a_0 = X``). Only the output layer's link
``z_{L+1} = W_{L+1} ã_L`` is a constraint, with multiplier ``u`` and penalty ``ρ``;
every hidden link is a quadratic penalty ``ν``. The augmented Lagrangian is

    F = ½‖z_{L+1} − Y‖² + ν/2 Σ_{i≤L} (‖z_i − W_i ã_{i-1}‖² + ‖a_i − relu(z_i)‖²)
        + ⟨u, z_{L+1} − W_{L+1} ã_L⟩ + ρ/2 ‖z_{L+1} − W_{L+1} ã_L‖².

Layer ``i``'s link term is ``c_i/2 ‖t_i − W_i ã_{i-1}‖²`` with ``c_i = ν`` and
``t_i = z_i`` below the output, ``c_{L+1} = ρ`` and ``t_{L+1} = z_{L+1} + u/ρ``.
An iteration updates the blocks backward, layer ``L+1`` down to 1 (``z_i``, ``b_i``,
``W̄_i``, then ``a_{i-1}``), then forward, layer 1 up to ``L+1`` (``W̄_i``, ``b_i``,
``z_i``, then ``a_i``), then the multiplier. ``z_i`` and ``b_i`` are exact minimisers;
``W̄_i`` and ``a_i`` take one step on a quadratic approximation whose curvature
(``θ``, ``τ``) is doubled from its start until the approximation lies above the
sub-problem's objective (backtracking), so no block needs a matrix inverse.

Samples are columns; tensors carry the trial dimension K first, except ``a_0 = X``.
One epoch is one iteration (full batch). The exact ``z_i`` step is ReLU's.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from admmlab.nets import Activation, get_activation
from admmlab.solvers.admm_reference import (
    network_metrics,
    residual,
    split_bias,
    sum_sq,
    with_ones_row,
)
from admmlab.solvers.base import Callback, FitResult, Quantity, full_batch_inputs
from admmlab.solvers.bcd import relu_pre_block
from admmlab.solvers.loop import run_epochs
from admmlab.solvers.settings import DLADMM

Tensor = torch.Tensor

MAX_DOUBLINGS = 200  # a finite sub-problem is bounded above long before this


@dataclass
class DlIterate:
    """``W_i``, ``z_i`` for ``i = 1..L+1``, ``a_i`` for ``i = 0..L`` (``a_0 = X``) and
    the output layer's multiplier ``u``."""

    w: dict[int, Tensor]
    z: dict[int, Tensor]
    a: dict[int, Tensor]
    u: Tensor

    @property
    def depth(self) -> int:
        return len(self.w) - 1

    def weights(self) -> list[Tensor]:
        return [self.w[i] for i in range(1, self.depth + 2)]

    def outputs(self) -> dict[int, Tensor]:
        """The network's layer outputs as ADMM names them: ``V_i = a_i``, ``V_{L+1} = z_{L+1}``."""
        return {**self.a, self.depth + 1: self.z[self.depth + 1]}

    def named_quantities(self) -> list[tuple[str, Tensor]]:
        layers = range(1, self.depth + 2)
        return [
            *((f"W_{i}", self.w[i]) for i in layers),
            *((f"z_{i}", self.z[i]) for i in layers),
            *((f"a_{i}", self.a[i]) for i in range(1, self.depth + 1)),
            ("u", self.u),
        ]


def initial_iterate(x: Tensor, weights: Sequence[Tensor], act: Activation) -> DlIterate:
    """A forward pass (every link holds) and ``u = 0``; ``x`` has samples as columns."""
    w = dict(enumerate(weights, start=1))
    out = len(weights)
    z, a = {}, {0: x}
    for i in range(1, out + 1):
        z[i] = w[i] @ with_ones_row(a[i - 1])
        if i < out:
            a[i] = act.fn(z[i])
    return DlIterate(w, z, a, torch.zeros_like(z[out]))


# ---------------------------------------------------------------- the blocks


def link_gap(w: Tensor, a_prev: Tensor, t: Tensor) -> Tensor:
    """``t − W ã_{i-1}``, what a link term penalises."""
    return t - w @ with_ones_row(a_prev)


def link_term(w: Tensor, a_prev: Tensor, t: Tensor, c: float) -> Tensor:
    """``c/2 ‖t − W ã_{i-1}‖²`` per trial."""
    return 0.5 * c * sum_sq(link_gap(w, a_prev, t))


def backtrack(
    x: Tensor, grad: Tensor, objective: Callable[[Tensor], Tensor], start: float
) -> Tensor:
    """``x − ∇/s`` for the least ``s = start·2ᵏ`` (per trial) at which the quadratic
    approximation ``f(x) + ⟨∇, x⁺ − x⟩ + s/2‖x⁺ − x‖²`` is not below ``f(x⁺)``."""
    f_x = objective(x)
    s = torch.full_like(f_x, start)
    for _ in range(MAX_DOUBLINGS):
        step = -grad / s[:, None, None]
        model = f_x + (grad * step).sum(dim=(-2, -1)) + 0.5 * s * sum_sq(step)
        above = objective(x + step) > model
        if not bool(above.any()):
            break
        s = torch.where(above, 2 * s, s)
    return x + step


def output_block(y: Tensor, w: Tensor, a_last: Tensor, u: Tensor, *, rho: float) -> Tensor:
    """``z_{L+1}⁺ = argmin ½‖z − Y‖² + ⟨u, z − m⟩ + ρ/2‖z − m‖² = (Y + ρm − u)/(1 + ρ)``,
    ``m = W_{L+1} ã_L``."""
    return (y + rho * (w @ with_ones_row(a_last)) - u) / (1 + rho)


def pre_block(w: Tensor, a_prev: Tensor, a: Tensor, *, nu: float) -> Tensor:
    """``z_i⁺ = argmin ν/2‖z − W_i ã_{i-1}‖² + ν/2‖a_i − relu(z)‖²``, exact entry by entry."""
    return relu_pre_block(a, w @ with_ones_row(a_prev), gamma=nu, c=nu)


def bias_block(w: Tensor, a_prev: Tensor, t: Tensor) -> Tensor:
    """``b_i⁺ = argmin_b ‖t − W̄_i a_{i-1} − b1ᵀ‖²``, the mean over samples; returns ``W_i⁺``."""
    w_bar, _ = split_bias(w)
    b = (t - w_bar @ a_prev).mean(dim=-1, keepdim=True)
    return torch.cat([w_bar, b], dim=-1)


def weight_block(w: Tensor, a_prev: Tensor, t: Tensor, *, c: float, theta: float) -> Tensor:
    """``W̄_i⁺``: one backtracked step on ``c/2‖t − W̄ a_{i-1} − b‖²``; returns ``W_i⁺``."""
    w_bar, b = split_bias(w)
    grad = -c * (t - w_bar @ a_prev - b) @ a_prev.mT

    def objective(v: Tensor) -> Tensor:
        return 0.5 * c * sum_sq(t - v @ a_prev - b)

    return torch.cat([backtrack(w_bar, grad, objective, theta), b], dim=-1)


def activation_block(
    a: Tensor, z: Tensor, w_next: Tensor, t_next: Tensor, *, c_next: float, nu: float, tau: float
) -> Tensor:
    """``a_i⁺``: one backtracked step on ``c_{i+1}/2‖t_{i+1} − W_{i+1} ã‖² + ν/2‖a − relu(z_i)‖²``
    (``ã = [a; 1ᵀ]``)."""
    w_bar, b = split_bias(w_next)
    s = z.clamp(min=0)
    grad = -c_next * w_bar.mT @ (t_next - w_bar @ a - b) + nu * (a - s)

    def objective(v: Tensor) -> Tensor:
        return 0.5 * c_next * sum_sq(t_next - w_bar @ v - b) + 0.5 * nu * sum_sq(v - s)

    return backtrack(a, grad, objective, tau)


# ---------------------------------------------------------------- one iteration


@dataclass(frozen=True)
class Knobs:
    rho: float
    nu: float
    theta: float
    tau: float


def dladmm_iteration(prev: DlIterate, y: Tensor, k: Knobs) -> DlIterate:
    """One iteration: the backward pass, the forward pass, the multiplier."""
    w, z, a, u = dict(prev.w), dict(prev.z), dict(prev.a), prev.u
    out = prev.depth + 1
    c = {i: k.rho if i == out else k.nu for i in range(1, out + 1)}

    def target(i: int) -> Tensor:
        return z[i] + u / k.rho if i == out else z[i]

    def layer(i: int) -> None:
        """``z_i`` from the current ``W_i``, then ``b_i`` and ``W̄_i``."""
        if i == out:
            z[i] = output_block(y, w[i], a[i - 1], u, rho=k.rho)
        else:
            z[i] = pre_block(w[i], a[i - 1], a[i], nu=k.nu)

    def weights(i: int) -> None:
        w[i] = bias_block(w[i], a[i - 1], target(i))
        w[i] = weight_block(w[i], a[i - 1], target(i), c=c[i], theta=k.theta)

    def output_of(i: int) -> None:
        """``a_i`` against layer ``i+1``'s link."""
        a[i] = activation_block(
            a[i], z[i], w[i + 1], target(i + 1), c_next=c[i + 1], nu=k.nu, tau=k.tau
        )

    for i in range(out, 0, -1):  # backward: z_i, b_i, W̄_i, a_{i-1}
        layer(i)
        weights(i)
        if i > 1:
            output_of(i - 1)
    for i in range(1, out + 1):  # forward: W̄_i, b_i, z_i, a_i
        w[i] = weight_block(w[i], a[i - 1], target(i), c=c[i], theta=k.theta)
        w[i] = bias_block(w[i], a[i - 1], target(i))
        layer(i)
        if i < out:
            output_of(i)
    u = u + k.rho * (z[out] - w[out] @ with_ones_row(a[out - 1]))
    return DlIterate(w, z, a, u)


def augmented_lagrangian(it: DlIterate, y: Tensor, k: Knobs) -> Tensor:
    """``F`` of the module docstring, per trial."""
    out = it.depth + 1
    gap = it.z[out] - it.w[out] @ with_ones_row(it.a[out - 1])
    value = 0.5 * sum_sq(it.z[out] - y) + (it.u * gap).sum(dim=(-2, -1))
    value = value + 0.5 * k.rho * sum_sq(gap)
    for i in range(1, out):
        value = value + link_term(it.w[i], it.a[i - 1], it.z[i], k.nu)
        value = value + 0.5 * k.nu * sum_sq(it.a[i] - it.z[i].clamp(min=0))
    return value


# ---------------------------------------------------------------- the solver


def fit(
    X: Tensor,
    Y: Tensor,
    weights: Sequence[Tensor],
    *,
    rho: float,
    nu: float,
    theta: float = 1.0,
    tau: float = 1.0,
    activation: str | Activation = "relu",
    epochs: int,
    X_test: Tensor | None = None,
    Y_test: Tensor | None = None,
    X_val: Tensor | None = None,
    Y_val: Tensor | None = None,
    classification: bool = False,
    callback: Callback | None = None,
) -> FitResult:
    """Train a ReLU net with dlADMM for ``epochs`` iterations; inputs, result and the
    stopping of a diverged trial as for :func:`admmlab.solvers.admm.fit`."""
    settings = DLADMM(epochs=epochs, rho=rho, nu=nu, theta=theta, tau=tau)
    act = get_activation(activation)
    if act.name not in DLADMM.activations:
        raise ValueError(f"dlADMM trains ReLU nets only, got activation {act.name!r}")
    X, Y, w0, held_out, batched = full_batch_inputs(
        X, Y, weights, {"test": (X_test, Y_test), "val": (X_val, Y_val)}
    )
    return run_epochs(
        IterationEpochs(X, Y, w0, act, settings, classification),
        epochs=settings.epochs,
        activation=act,
        held_out=held_out,
        classification=classification,
        batched=batched,
        callback=callback,
    )


class IterationEpochs:
    """One epoch = one dlADMM iteration, with ``‖σ(W_i ã_{i-1}) − a_i‖`` per layer as
    for ADMM (the output layer's ``‖W_{L+1} ã_L − z_{L+1}‖``)."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        weights: list[Tensor],
        act: Activation,
        settings: DLADMM,
        classification: bool,
    ) -> None:
        self.x, self.y, self.act, self.classification = x, y, act, classification
        self.knobs = Knobs(settings.rho, settings.nu, settings.theta, settings.tau)
        self.it = initial_iterate(x.mT, weights, act)

    def epoch(self, epoch: int) -> dict[str, Tensor]:
        y = self.y.mT
        self.it = dladmm_iteration(self.it, y, self.knobs)
        metrics = {"aug_lagrangian": augmented_lagrangian(self.it, y, self.knobs)}
        w, outputs = self.it.w, self.it.outputs()
        for i in range(1, self.it.depth + 2):
            metrics[f"residual/layer_{i}"] = sum_sq(residual(w, outputs, i, self.act)).sqrt()
        network = network_metrics(
            self.weights(), self.x, self.y, self.act, classification=self.classification
        )
        return metrics | network

    def weights(self) -> list[Tensor]:
        return self.it.weights()

    def finite(self, metrics: dict[str, Tensor]) -> Tensor:
        return torch.isfinite(metrics["aug_lagrangian"] + metrics["train_mse"])

    def quantities(self, metrics: dict[str, Tensor]) -> list[Quantity]:
        named = [(name, t, "") for name, t in self.it.named_quantities()]
        return [*named, *((name, metrics[name], "") for name in ("aug_lagrangian", "train_mse"))]
