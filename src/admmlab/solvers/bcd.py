"""Block coordinate descent with lifted variables (``solver=bcd``), docs/algorithm.md "BCD".

The three-splitting BCD of Zeng, Lau, Lin and Yao (ICML 2019): the constraints
``U_i = W_i Ṽ_{i-1}`` and ``V_i = σ(U_i)`` are not enforced but lifted into the
objective as quadratic penalties (``ρ`` and ``γ``),

    F = ½‖V_{L+1} − Y‖² + λ/2 Σ‖W_i‖² + γ/2 Σ_{i≤L} ‖V_i − σ(U_i)‖²
        + γ/2 ‖V_{L+1} − U_{L+1}‖² + ρ/2 Σ_i ‖U_i − W_i Ṽ_{i-1}‖²,

and each block is minimised in turn, from the output layer back to the first, with
a proximal term ``α/2‖· − ·⁻‖²`` on ``V_{L+1}``, every ``U_i`` but the output's and
every ``W_i``. ReLU's ``U`` block is solved exactly, entry by entry; for a smooth
activation it takes a prox-linear step (``σ`` linearised at the previous ``U``).

Samples are columns; tensors carry the trial dimension K first, except ``V_0 = X``.
One epoch is one sweep over all blocks (full batch).
"""

from collections.abc import Sequence

import torch

from admmlab.nets import Activation, get_activation
from admmlab.solvers.admm_reference import (
    Iterate,
    identity,
    network_metrics,
    residual,
    solve,
    solve_right,
    split_bias,
    sum_sq,
    with_ones_row,
)
from admmlab.solvers.base import (
    Callback,
    FitResult,
    Quantity,
    full_batch_inputs,
)
from admmlab.solvers.loop import run_epochs
from admmlab.solvers.settings import BCD

Tensor = torch.Tensor


class Lifted(Iterate):
    """ADMM's iterate shape, ``W_i``, ``U_i`` (``i = 1..L+1``) and ``V_i`` (``V_0 = X``),
    with ``U_i`` the lifted pre-activations rather than multipliers."""


def initial_lifted(x: Tensor, weights: Sequence[Tensor], act: Activation) -> Lifted:
    """A forward pass: every constraint holds at the start (``x`` samples as columns)."""
    w = dict(enumerate(weights, start=1))
    L = len(weights) - 1
    u, v = {}, {0: x}
    for i in range(1, L + 2):
        u[i] = w[i] @ with_ones_row(v[i - 1])
        v[i] = u[i] if i == L + 1 else act.fn(u[i])
    return Lifted(w, v, u)


# ---------------------------------------------------------------- the blocks


def output_block(y: Tensor, u_out: Tensor, v_out: Tensor, *, gamma: float, alpha: float) -> Tensor:
    """``V_{L+1}⁺ = argmin ½‖V − Y‖² + γ/2‖V − U_{L+1}‖² + α/2‖V − V_{L+1}⁻‖²``."""
    return (y + gamma * u_out + alpha * v_out) / (1 + gamma + alpha)


def output_pre_block(v_out: Tensor, z: Tensor, *, gamma: float, rho: float) -> Tensor:
    """``U_{L+1}⁺ = argmin γ/2‖V_{L+1} − U‖² + ρ/2‖U − Z‖²``, ``Z = W_{L+1} Ṽ_L``."""
    return (gamma * v_out + rho * z) / (gamma + rho)


def weight_block(
    u: Tensor, v_prev: Tensor, w: Tensor, *, rho: float, alpha: float, lam: float
) -> Tensor:
    """``W_i⁺ = argmin λ/2‖W‖² + ρ/2‖U_i − W A‖² + α/2‖W − W_i⁻‖²``, ``A = Ṽ_{i-1}``:
    ``(ρ U Aᵀ + α W⁻)(ρ AAᵀ + (α + λ) I)⁻¹``."""
    a = with_ones_row(v_prev)
    system = rho * (a @ a.mT) + (alpha + lam) * identity(a.shape[-2], a)
    return solve_right(rho * u @ a.mT + alpha * w, system)


def hidden_block(s: Tensor, u_next: Tensor, w_next: Tensor, *, gamma: float, rho: float) -> Tensor:
    """``V_i⁺ = argmin γ/2‖V − σ(U_i)‖² + ρ/2‖U_{i+1} − W̄ V − b1ᵀ‖²`` with ``s = σ(U_i)``,
    ``[W̄ b] = W_{i+1}``: ``(ρ W̄ᵀW̄ + γI)⁻¹ (ρ W̄ᵀ(U_{i+1} − b1ᵀ) + γ s)``."""
    w_bar, b = split_bias(w_next)
    system = rho * (w_bar.mT @ w_bar) + gamma * identity(w_bar.shape[-1], w_bar)
    return solve(system, rho * w_bar.mT @ (u_next - b) + gamma * s)


def relu_pre_block(v: Tensor, a: Tensor, *, gamma: float, c: float) -> Tensor:
    """Entry by entry, the exact ``argmin_u γ/2 (v − max(u, 0))² + c/2 (u − a)²``: the
    better of the minimiser over ``u ≤ 0`` and the one over ``u ≥ 0`` (ties: ``u ≤ 0``)."""
    low = a.clamp(max=0)
    high = ((gamma * v + c * a) / (gamma + c)).clamp(min=0)
    f_low = gamma / 2 * v.square() + c / 2 * (low - a).square()
    f_high = gamma / 2 * (v - high).square() + c / 2 * (high - a).square()
    return torch.where(f_low <= f_high, low, high)


def pre_block(
    v: Tensor, u: Tensor, z: Tensor, act: Activation, *, gamma: float, rho: float, alpha: float
) -> Tensor:
    """``U_i⁺ = argmin γ/2‖V_i − σ(U)‖² + ρ/2‖U − Z‖² + α/2‖U − U_i⁻‖²``, ``Z = W_i Ṽ_{i-1}``.
    The last two terms are ``c/2‖U − a‖²`` (plus a constant), ``c = ρ + α``."""
    c = rho + alpha
    a = (rho * z + alpha * u) / c
    if act.name == "relu":
        return relu_pre_block(v, a, gamma=gamma, c=c)
    s, ds = act.value_and_deriv(u)  # prox-linear: σ linearised at U_i⁻
    return a - gamma / c * (s - v) * ds


# ---------------------------------------------------------------- one sweep


def bcd_sweep(
    prev: Lifted,
    y: Tensor,
    act: Activation,
    *,
    gamma: float,
    rho: float,
    alpha: float,
    lam: float,
) -> Lifted:
    """One epoch: every block once, output layer first, each from the newest values."""
    w, u, v = dict(prev.w), dict(prev.u), dict(prev.v)
    out = prev.depth + 1
    v[out] = output_block(y, u[out], v[out], gamma=gamma, alpha=alpha)
    u[out] = output_pre_block(v[out], w[out] @ with_ones_row(v[out - 1]), gamma=gamma, rho=rho)
    w[out] = weight_block(u[out], v[out - 1], w[out], rho=rho, alpha=alpha, lam=lam)
    for i in range(out - 1, 0, -1):
        v[i] = hidden_block(act.fn(u[i]), u[i + 1], w[i + 1], gamma=gamma, rho=rho)
        z = w[i] @ with_ones_row(v[i - 1])
        u[i] = pre_block(v[i], u[i], z, act, gamma=gamma, rho=rho, alpha=alpha)
        w[i] = weight_block(u[i], v[i - 1], w[i], rho=rho, alpha=alpha, lam=lam)
    return Lifted(w, v, u)


def lifted_objective(
    it: Lifted, y: Tensor, act: Activation, *, gamma: float, rho: float, lam: float
) -> Tensor:
    """``F`` of the module docstring, per trial."""
    out = it.depth + 1
    value = 0.5 * sum_sq(it.v[out] - y) + 0.5 * lam * sum(sum_sq(w) for w in it.weights())
    value = value + 0.5 * gamma * sum_sq(it.v[out] - it.u[out])
    for i in range(1, out + 1):
        if i < out:
            value = value + 0.5 * gamma * sum_sq(it.v[i] - act.fn(it.u[i]))
        z = it.w[i] @ with_ones_row(it.v[i - 1])
        value = value + 0.5 * rho * sum_sq(it.u[i] - z)
    return value


# ---------------------------------------------------------------- the solver


def fit(
    X: Tensor,
    Y: Tensor,
    weights: Sequence[Tensor],
    *,
    gamma: float,
    rho: float,
    alpha: float,
    lam: float = 0.0,
    activation: str | Activation = "relu",
    epochs: int,
    X_test: Tensor | None = None,
    Y_test: Tensor | None = None,
    X_val: Tensor | None = None,
    Y_val: Tensor | None = None,
    classification: bool = False,
    callback: Callback | None = None,
) -> FitResult:
    """Train with BCD for ``epochs`` sweeps; inputs, result and the stopping of a
    diverged trial as for :func:`admmlab.solvers.admm.fit`."""
    settings = BCD(epochs=epochs, gamma=gamma, rho=rho, alpha=alpha, lam=lam)
    X, Y, w0, held_out, batched = full_batch_inputs(
        X, Y, weights, {"test": (X_test, Y_test), "val": (X_val, Y_val)}
    )
    act = get_activation(activation)
    return run_epochs(
        SweepEpochs(X, Y, w0, act, settings, classification),
        epochs=settings.epochs,
        activation=act,
        held_out=held_out,
        classification=classification,
        batched=batched,
        callback=callback,
    )


class SweepEpochs:
    """One epoch = one BCD sweep, with ``‖σ(W_i Ṽ_{i-1}) − V_i‖`` per layer as for ADMM."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        weights: list[Tensor],
        act: Activation,
        settings: BCD,
        classification: bool,
    ) -> None:
        self.x, self.y, self.act, self.classification = x, y, act, classification
        self.knobs = {"gamma": settings.gamma, "rho": settings.rho, "lam": settings.lam}
        self.alpha = settings.alpha
        self.it = initial_lifted(x.mT, weights, act)

    def epoch(self, epoch: int) -> dict[str, Tensor]:
        y = self.y.mT
        self.it = bcd_sweep(self.it, y, self.act, alpha=self.alpha, **self.knobs)
        metrics = {"lifted_objective": lifted_objective(self.it, y, self.act, **self.knobs)}
        for i in range(1, self.it.depth + 2):
            r = residual(self.it.w, self.it.v, i, self.act)
            metrics[f"residual/layer_{i}"] = sum_sq(r).sqrt()
        network = network_metrics(
            self.weights(), self.x, self.y, self.act, classification=self.classification
        )
        return metrics | network

    def weights(self) -> list[Tensor]:
        return self.it.weights()

    def finite(self, metrics: dict[str, Tensor]) -> Tensor:
        return torch.isfinite(metrics["lifted_objective"] + metrics["train_mse"])

    def quantities(self, metrics: dict[str, Tensor]) -> list[Quantity]:
        named = [(name, t, "") for name, t in self.it.named_quantities()]
        return [*named, *((name, metrics[name], "") for name in ("lifted_objective", "train_mse"))]
