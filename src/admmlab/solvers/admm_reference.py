"""The ADMM iteration of docs/algorithm.md ("One iteration"), written as the paper writes it.

:func:`admm_iteration` performs steps 1–5 in order, one call per sub-problem, every
quantity formed where its equation uses it. It is the readable twin of the fast path in
:mod:`admmlab.solvers.admm` (``fit(..., impl="reference")``), which computes the same
iterates with fewer passes over memory; the tests hold the two equal.

Samples are columns. Tensors carry the trial dimension K first, except ``V_0 = X``,
which may lack it when every trial shares the data (products broadcast over K).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from admmlab.nets import Activation, hidden_forward
from admmlab.solvers.base import evaluate

Tensor = torch.Tensor

SATURATION_THRESHOLD = 1e-3  # σ' below this counts as saturated (docs/algorithm.md)


@dataclass
class Iterate:
    """``W_i``, ``V_i``, ``U_i`` keyed by the paper's layer index: ``W`` and ``U`` for
    ``i = 1..L+1``, ``V`` for ``i = 0..L+1`` (``V_0 = X``)."""

    w: dict[int, Tensor]
    v: dict[int, Tensor]
    u: dict[int, Tensor]

    @property
    def depth(self) -> int:
        return len(self.w) - 1

    def weights(self) -> list[Tensor]:
        return [self.w[i] for i in range(1, self.depth + 2)]

    def named_quantities(self) -> list[tuple[str, Tensor]]:
        """The iterate in the order an iteration computes it, for error reports."""
        layers = range(1, self.depth + 2)
        return [
            *((f"W_{i}", self.w[i]) for i in reversed(layers)),
            *((f"V_{i}", self.v[i]) for i in layers),
            *((f"U_{i}", self.u[i]) for i in layers),
        ]


# ---------------------------------------------------------------- notation and solves


def with_ones_row(v: Tensor) -> Tensor:
    """``ṽ = [v; 1ᵀ]`` (Notation: the bias is the last column of ``W``)."""
    return torch.cat([v, torch.ones_like(v[..., :1, :])], dim=-2)


def split_bias(w: Tensor) -> tuple[Tensor, Tensor]:
    """``W̄`` (without the bias column) and ``b`` (the bias column)."""
    return w[..., :-1], w[..., -1:]


def identity(size: int, like: Tensor) -> Tensor:
    """``I`` of ``size``, in ``like``'s dtype and device."""
    return torch.eye(size, dtype=like.dtype, device=like.device)


def cholesky(m: Tensor) -> Tensor:
    """The lower Cholesky factor of the SPD ``m``. A trial whose system fails in rounding
    gets NaN, so that the per-epoch check stops that trial alone, as in the fast path."""
    factor, info = torch.linalg.cholesky_ex(m)
    return factor.masked_fill((info != 0)[..., None, None], math.nan)


def solve(m: Tensor, r: Tensor) -> Tensor:
    """``M⁻¹R`` for SPD ``M``, by Cholesky, never an explicit inverse."""
    return torch.cholesky_solve(r, cholesky(m))


def solve_right(r: Tensor, m: Tensor) -> Tensor:
    """``R M⁻¹`` for SPD ``M``, as ``(M⁻¹Rᵀ)ᵀ``."""
    return solve(m, r.mT).mT


# ---------------------------------------------------------------- the sub-problems


def lla_target(v: Tensor, u: Tensor, beta: float) -> Tensor:
    """``B = V − U/β``, what the LLA steps fit ``σ(Z)`` to (steps 2 and 3)."""
    return v - u / beta


def abs_max(b: Tensor) -> Tensor:
    """``max_jk |B_jk|`` per trial (step 2's ``h``, step 3's ``μ``), shape ``(K, 1, 1)``."""
    return b.abs().amax(dim=(-2, -1), keepdim=True)


def lla_gradient(z: Tensor, b: Tensor, act: Activation) -> Tensor:
    """``G = (σ(Z) − B) ⊙ σ'(Z)``, the gradient in ``Z`` of ``½‖σ(Z) − B‖²``: the LLA
    replaces that term by its linearisation at ``Z`` plus a proximal term."""
    s, ds = act.value_and_deriv(z)
    return (s - b) * ds


def output_weights(
    v_last: Tensor, v_out: Tensor, u_out: Tensor, *, lam: float, beta: float
) -> Tensor:
    """Step 1: ``W_{L+1}⁺ = (β V_{L+1}⁻ − U_{L+1}⁻) Aᵀ (λI + β AAᵀ)⁻¹``, ``A = Ṽ_L⁻``."""
    a = with_ones_row(v_last)
    system = lam * identity(a.shape[-2], a) + beta * (a @ a.mT)
    return solve_right((beta * v_out - u_out) @ a.mT, system)


def hidden_weights(
    w: Tensor, v_prev: Tensor, v: Tensor, u: Tensor, act: Activation, *, lam: float, beta: float
) -> Tensor:
    """Step 2 (LLA): ``W_i⁺ = β (hZ/2 − G) Aᵀ (λI + β h AAᵀ/2)⁻¹``, ``A = Ṽ_{i-1}⁻``,
    ``B = V_i⁻ − U_i⁻/β``, ``Z = W_i⁻A``, ``h = max|B|``."""
    a = with_ones_row(v_prev)
    b = lla_target(v, u, beta)
    z = w @ a
    h = abs_max(b)
    g = lla_gradient(z, b, act)
    system = lam * identity(a.shape[-2], a) + beta * h * (a @ a.mT) / 2
    return solve_right(beta * (h * z / 2 - g) @ a.mT, system)


def hidden_outputs(
    s: Tensor,
    v: Tensor,
    u: Tensor,
    w_next: Tensor,
    v_next: Tensor,
    u_next: Tensor,
    act: Activation,
    *,
    beta: float,
    beta_next: float,
) -> Tensor:
    """Step 3, ``i < L`` (LLA on layer ``i+1``):
    ``V_i⁺ = (β_i I + β_{i+1}(μ/2) W̄ᵀW̄)⁻¹ (β_i C + β_{i+1} W̄ᵀ(μ Z_w/2 − G))`` with
    ``W̄, b`` of ``W_{i+1}⁺``, ``B = V_{i+1}⁻ − U_{i+1}⁻/β_{i+1}``, ``Z_w = W̄ V_i⁻``,
    ``Z = Z_w + b``, ``μ = max|B|``, ``C = S + U_i⁻/β_i``."""
    w_bar, bias = split_bias(w_next)
    b = lla_target(v_next, u_next, beta_next)
    z_w = w_bar @ v
    mu = abs_max(b)
    g = lla_gradient(z_w + bias, b, act)
    c = s + u / beta
    system = beta * identity(v.shape[-2], v) + beta_next * mu / 2 * w_bar.mT @ w_bar
    return solve(system, beta * c + beta_next * w_bar.mT @ (mu * z_w / 2 - g))


def last_hidden_outputs(
    s: Tensor,
    u: Tensor,
    w_out: Tensor,
    v_out: Tensor,
    u_out: Tensor,
    *,
    beta: float,
    beta_out: float,
) -> Tensor:
    """Step 3, ``i = L`` (exact, every depth): ``V_L⁺ = (β_L I + β_{L+1} W̄ᵀW̄)⁻¹
    (U_L⁻ + β_L S − W̄ᵀ(U_{L+1}⁻ − β_{L+1}(V_{L+1}⁻ − b)))``, ``W̄, b`` of ``W_{L+1}⁺``."""
    w_bar, bias = split_bias(w_out)
    system = beta * identity(w_bar.shape[-1], w_bar) + beta_out * w_bar.mT @ w_bar
    return solve(system, u + beta * s - w_bar.mT @ (u_out - beta_out * (v_out - bias)))


def output(y: Tensor, u_out: Tensor, w_out: Tensor, v_last: Tensor, *, beta_out: float) -> Tensor:
    """Step 4: ``V_{L+1}⁺ = (Y + U_{L+1}⁻ + β_{L+1} W_{L+1}⁺ Ṽ_L⁺) / (1 + β_{L+1})``."""
    return (y + u_out + beta_out * w_out @ with_ones_row(v_last)) / (1 + beta_out)


def residual(w: dict[int, Tensor], v: dict[int, Tensor], i: int, act: Activation) -> Tensor:
    """Constraint ``i``'s residual: ``σ(W_i Ṽ_{i-1}) − V_i`` for ``i ≤ L``, and
    ``W_{L+1} Ṽ_L − V_{L+1}`` for the output layer (``i = L+1``, the last of ``w``)."""
    z = w[i] @ with_ones_row(v[i - 1])
    return (z if i == len(w) else act.fn(z)) - v[i]


# ---------------------------------------------------------------- one iteration


def admm_iteration(
    prev: Iterate, y: Tensor, act: Activation, *, lam: float, betas: Sequence[float]
) -> Iterate:
    """One iteration k of docs/algorithm.md: from iterate k−1 (``prev``, the paper's
    superscript −) to iterate k (+). ``y`` is ``Y`` with samples as columns; ``betas``
    holds ``β_1 … β_{L+1}``."""
    L = prev.depth
    beta = dict(enumerate(betas, start=1))
    w, v = {}, {0: prev.v[0]}

    # 1. Output weights, from the previous V and U.
    w[L + 1] = output_weights(prev.v[L], prev.v[L + 1], prev.u[L + 1], lam=lam, beta=beta[L + 1])

    # 2. Hidden weights, backward, from the previous W, V and U.
    for i in range(L, 0, -1):
        w[i] = hidden_weights(
            prev.w[i], prev.v[i - 1], prev.v[i], prev.u[i], act, lam=lam, beta=beta[i]
        )

    # 3. Hidden outputs, forward: the new W and V_{i-1}, the previous V_i, V_{i+1} and U.
    for i in range(1, L + 1):
        s = act.fn(w[i] @ with_ones_row(v[i - 1]))
        if i < L:
            v[i] = hidden_outputs(
                s, prev.v[i], prev.u[i], w[i + 1], prev.v[i + 1], prev.u[i + 1], act,
                beta=beta[i], beta_next=beta[i + 1],
            )  # fmt: skip
        else:
            v[i] = last_hidden_outputs(
                s, prev.u[i], w[L + 1], prev.v[L + 1], prev.u[L + 1],
                beta=beta[i], beta_out=beta[L + 1],
            )  # fmt: skip

    # 4. Output.
    v[L + 1] = output(y, prev.u[L + 1], w[L + 1], v[L], beta_out=beta[L + 1])

    # 5. Multipliers, in parallel: U_i⁺ = U_i⁻ + β_i r_i at the new W and V.
    u = {i: prev.u[i] + beta[i] * residual(w, v, i, act) for i in range(1, L + 2)}
    return Iterate(w, v, u)


def initial_iterate(x: Tensor, weights: Sequence[Tensor], act: Activation) -> Iterate:
    """docs/algorithm.md, Initialisation: a forward pass for ``V⁰`` and ``U⁰ = 0``.
    ``x`` is ``X`` with samples as columns."""
    w = dict(enumerate(weights, start=1))
    L = len(weights) - 1
    v = {0: x}
    for i in range(1, L + 1):
        v[i] = act.fn(w[i] @ with_ones_row(v[i - 1]))
    v[L + 1] = w[L + 1] @ with_ones_row(v[L])
    return Iterate(w, v, {i: torch.zeros_like(v[i]) for i in range(1, L + 2)})


# ---------------------------------------------------------------- what a run records


def sum_sq(t: Tensor) -> Tensor:
    """``‖t‖²_F`` per trial, shape ``(K,)``."""
    return t.square().sum(dim=(-2, -1))


def augmented_lagrangian(
    it: Iterate, y: Tensor, residuals: list[Tensor], *, lam: float, betas: Sequence[float]
) -> Tensor:
    """𝓛 of docs/algorithm.md ("The problem and its augmented Lagrangian") per trial,
    given the residual ``r_i`` of every constraint ``i = 1..L+1``."""
    value = 0.5 * sum_sq(it.v[it.depth + 1] - y)
    value = value + 0.5 * lam * sum(sum_sq(w) for w in it.weights())
    for i, (r, b) in enumerate(zip(residuals, betas, strict=True), start=1):
        value = value + (it.u[i] * r).sum(dim=(-2, -1)) + 0.5 * b * sum_sq(r)
    return value


def network_metrics(
    weights: list[Tensor], x: Tensor, y: Tensor, act: Activation, *, classification: bool
) -> dict[str, Tensor]:
    """``saturation/layer_i`` (share of the network's pre-activations with ``σ' <``
    the threshold) and ``train_*`` of a forward pass; ``x``, ``y`` with samples as rows."""
    metrics = {}
    for i, z in enumerate(hidden_forward(weights, x, act), start=1):
        saturated = act.deriv(z) < SATURATION_THRESHOLD
        metrics[f"saturation/layer_{i}"] = saturated.to(z.dtype).mean(dim=(-2, -1))
    train = evaluate(weights, act, {"train": (x, y)}, classification=classification)
    return metrics | train


class ReferenceStep:
    """:func:`admm_iteration` as :func:`admmlab.solvers.admm.fit` drives it: each call of
    :meth:`iterate` runs one iteration and computes its metrics from the new iterate."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        weights: list[Tensor],
        act: Activation,
        *,
        lam: float,
        betas: Sequence[float],
        classification: bool,
    ) -> None:
        self.it = initial_iterate(x.mT, weights, act)
        self.x, self.y, self.act = x, y, act
        self.lam, self.betas, self.classification = lam, betas, classification

    @property
    def w(self) -> list[Tensor]:
        return self.it.weights()

    def named_quantities(self) -> list[tuple[str, Tensor]]:
        return self.it.named_quantities()

    def iterate(self) -> tuple[dict[str, Tensor], list[Tensor]]:
        """One iteration; returns 𝓛 with the network's metrics, and ``‖r_i‖`` per constraint."""
        y_cols = self.y.mT
        self.it = admm_iteration(self.it, y_cols, self.act, lam=self.lam, betas=self.betas)
        it = self.it
        residuals = [residual(it.w, it.v, i, self.act) for i in range(1, it.depth + 2)]
        lagrangian = augmented_lagrangian(it, y_cols, residuals, lam=self.lam, betas=self.betas)
        network = network_metrics(
            self.w, self.x, self.y, self.act, classification=self.classification
        )
        return {"aug_lagrangian": lagrangian, **network}, [sum_sq(r).sqrt() for r in residuals]
