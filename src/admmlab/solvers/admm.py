"""ADMM for sigmoid nets (Zeng, Lin, Yao and Zhou, JMLR 2021), as in docs/algorithm.md.

Inside, samples are columns and every tensor carries the trial dimension K first.
``Ṽ_i`` lives in one ``(K, n_i + 1, N)`` buffer whose last row is ones, so neither a
product with ``W_i`` nor a Gram matrix needs a concatenation; ``V_i`` is its view
without that row. (``Ṽ_0 = X̃`` has no K when X is shared by all trials.)

An iteration computes each quantity once and uses it wherever the equations repeat
it, and keeps as few ``n × N`` arrays alive as it can:

* step 3's ``Z_i = W_i⁺Ṽ_{i-1}⁺`` and ``σ(Z_i)`` are step 5's ``σ(W_i⁺Ṽ_{i-1}⁺)`` and
  the next iteration's step-2 ``Z = W_i⁻A`` and ``σ(Z)``. Step 5 for layer ``i`` runs
  as soon as step 3 has ``V_i⁺`` (no later part of step 3 reads ``U_i``, so this is
  docs/algorithm.md's parallel update exactly), and then the next step 2's
  ``hZ/2 − G`` is formed from them: that one array is kept, not ``Z_i`` and ``σ(Z_i)``;
* ``max|B_i|`` of ``B_i = V_i − U_i/β_i`` is step 2's ``h`` for layer ``i`` and step
  3's ``μ`` for layer ``i − 1``; ``B_i`` itself is formed again for step 3 rather
  than kept;
* the Gram ``Ṽ_iṼ_iᵀ`` of a new ``V_i`` is the next iteration's step-1/2 ``AAᵀ``;
* step 5's constraint residuals give 𝓛 and the ``residual/layer_i`` curves;
* step 3's ``σ(W_1⁺X̃)`` is the first hidden layer of the network's forward pass.

Every ``n × N`` temporary, the kept ``hZ/2 − G`` included, is written (``out=``) into
an array of the iterate's :class:`Pool`, and ``V_i⁺`` straight into its buffer when
that is one block: after the first iteration none is allocated. The SPD systems are
formed in pool arrays too and factored where they lie, and each Gram matrix is
rewritten in its own buffer.

:mod:`admmlab.solvers.admm_reference` is the same iteration written as the paper writes
it (``fit(..., impl="reference")``); the tests hold the two equal.

Where the code solves an equation of docs/algorithm.md by another formula, the formula
is exact and only the rounding differs (there is no inexact variant to switch off):
step 3's ``i = L`` system is solved through the Woodbury identity when ``m < n``;
step 3's systems, whose eigenvalues are at least ``β_i``, are applied as the product
with their Cholesky-built inverse (:func:`_apply_shifted_inverse`); ``σ'`` is applied
from ``σ`` (``σ(1 − σ)``, ``1 − σ²``) rather than stored; and the saturation share is
counted on the pre-activations, ``|Z| ≥ z*`` with ``σ'(z*) = 10⁻³``.
"""

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from admmlab.nets import Activation, get_activation
from admmlab.solvers.admm_reference import SATURATION_THRESHOLD, ReferenceStep
from admmlab.solvers.base import (
    Callback,
    FitResult,
    Quantity,
    evaluate,
    full_batch_inputs,
)
from admmlab.solvers.loop import run_epochs
from admmlab.solvers.settings import ADMM, IMPLS
from admmlab.solvers.workspace import Pool

Tensor = torch.Tensor


# ---------------------------------------------------------------- linear algebra


def _cholesky_(system: Tensor) -> Tensor:
    """Overwrite the SPD ``system`` with its Cholesky factor; returns the upper factor
    ``U`` (``M = UᵀU``) as a column-major view.

    Only the lower triangle of ``system`` is read: as the upper triangle of its
    column-major view, LAPACK's layout, it is factored where it lies. That saves the
    copy and the fresh array of ``cholesky_ex(system)``, each one more pass over a
    matrix the products have pushed out of cache, and LAPACK's upper variant is the
    faster one. A trial whose system is not SPD gets NaN on its factor's diagonal,
    which every solve with it spreads: ``cholesky_ex`` does not synchronise with the
    device, and the per-iteration check names the bad iterate.
    """
    upper = system.mT
    info = torch.empty(system.shape[:-2], dtype=torch.int32, device=system.device)
    torch.linalg.cholesky_ex(upper, upper=True, out=(upper, info))
    upper.diagonal(dim1=-2, dim2=-1).masked_fill_((info != 0).unsqueeze(-1), math.nan)
    return upper


def _solve_right(rhs: Tensor, system: Tensor) -> Tensor:
    """``R M⁻¹`` for SPD ``M``, as ``(M⁻¹Rᵀ)ᵀ`` by Cholesky and two triangular solves.

    For the weight systems ``λI + c·AAᵀ`` of steps 1–2, ill-conditioned at small λ.
    ``Rᵀ`` of a row-major ``R`` is column-major, LAPACK's own layout: no copy.
    ``system`` is overwritten (:func:`_cholesky_`).
    """
    return torch.cholesky_solve(rhs.mT, _cholesky_(system), upper=True).mT


def _apply_shifted_inverse(
    system: Tensor, rhs: Tensor, pool: Pool, out: Tensor | None = None
) -> Tensor:
    """``M⁻¹ R`` for ``M = βI + PSD`` (the ``V`` systems of step 3), factor-then-multiply.

    The Cholesky factor gives ``M⁻¹`` (``cholesky_inverse``), then one matrix product
    with the ``n × N`` right side. docs/algorithm.md asks for triangular solves; this is
    the same solve to rounding, chosen by measurement (``benchmarks/admm_iteration.py``:
    the product runs at matmul speed, the solves well below it). It is reserved for
    these systems because their eigenvalues are at least ``β``, so the explicit
    inverse loses no accuracy; the weight systems keep :func:`_solve_right`.

    ``Uᵀ`` (a view) is passed as the lower factor: LAPACK's lower-factor inverse is
    the faster one here. ``M⁻¹`` is formed in a spare array of ``pool``; ``system`` is
    overwritten (:func:`_cholesky_`).
    """
    lower = _cholesky_(system).mT
    inverse = torch.cholesky_inverse(lower, out=pool.take(system).mT)
    result = torch.matmul(inverse, rhs, out=out)
    pool.give(inverse.mT)
    return result


def _solve_weight_system(
    rhs: Tensor, gram: Tensor, scale: float | Tensor, lam: float, pool: Pool
) -> Tensor:
    """``R (λI + c·AAᵀ)⁻¹`` for steps 1–2, the system formed in a spare array of ``pool``."""
    # ``gram`` has no K for the shared X̃ (step 2, layer 1); ``rhs`` always has.
    system = torch.mul(gram, scale, out=pool.take(rhs, rows=gram.shape[-1]))
    _add_to_diagonal(system, lam)
    w = _solve_right(rhs, system)
    pool.give(system)
    return w


def _add_to_diagonal(m: Tensor, value: float) -> Tensor:
    m.diagonal(dim1=-2, dim2=-1).add_(value)
    return m


def _abs_max(t: Tensor) -> Tensor:
    """``max_jk |t_jk|`` per trial, shape ``(K, 1, 1)``, without an ``|t|`` temporary."""
    dims = (-2, -1)
    return torch.maximum(t.amax(dim=dims, keepdim=True), -t.amin(dim=dims, keepdim=True))


def _dot(a: Tensor, b: Tensor, pool: Pool) -> Tensor:
    """``⟨a, b⟩_F`` per trial, ``(K,)``.

    One trial takes BLAS's dot; several sum ``a ⊙ b`` formed in a spare array of
    ``pool``, as ``vecdot`` would in a fresh one, which is faster than the batched
    product ``(1×n)(n×1)``.
    """
    n_trials = a.shape[0]
    if n_trials == 1:
        return torch.dot(a.reshape(-1), b.reshape(-1)).reshape(1)
    products = torch.mul(a, b, out=pool.take(a))
    dot = products.reshape(n_trials, -1).sum(dim=-1)
    pool.give(products)
    return dot


def _lower_gram(a: Tensor, out: Tensor, blocks: int = 3) -> Tensor:
    """``aaᵀ`` written into ``out``'s blocks on and below the diagonal; the blocks above
    keep what they held.

    :func:`_cholesky_` reads only the lower triangle, and skipping the blocks above
    the diagonal saves a third of the product (torch has no ``syrk``). One trial's
    blocks are written in place; torch would form several trials' blocks in a strided
    ``out`` one trial at a time, so those are formed whole and copied in, which is
    faster.
    """
    rows = a.shape[-2]
    edges = [rows * j // blocks for j in range(blocks + 1)]
    for lo, hi in itertools.pairwise(edges):
        block, left, right = out[..., lo:hi, :hi], a[..., lo:hi, :], a[..., :hi, :].mT
        if a.shape[0] == 1:
            torch.matmul(left, right, out=block)
        else:
            block.copy_(left @ right)
    return out


def _sum_sq(t: Tensor) -> Tensor:
    """``‖t‖²_F`` per trial, shape ``(K,)``."""
    return torch.linalg.vector_norm(t, dim=(-2, -1)).square()


# ---------------------------------------------------------------- the sub-problems


def lla_target(v: Tensor, u: Tensor, beta: float, out: Tensor | None = None) -> Tensor:
    """``B_i = V_i − U_i/β_i``, the LLA target of steps 2 and 3, into ``out`` (or fresh)."""
    return torch.add(v, u, alpha=-1.0 / beta, out=out)


def lla_core_(
    target: Tensor, act: Tensor, z_lin: Tensor, scale: Tensor, activation: Activation
) -> Tensor:
    """``scale · Z_lin − G`` with ``G = (σ(Z) − B) ⊙ σ'(Z)``, given ``act = σ(Z)``.

    Written into ``target`` (``B``), which is spent.
    """
    torch.sub(target, act, out=target)
    return activation.times_deriv_(target, act).addcmul_(z_lin, scale)


def update_output_weights(
    v_ext: Tensor,
    v_out: Tensor,
    u_out: Tensor,
    gram: Tensor,
    pool: Pool,
    *,
    lam: float,
    beta: float,
) -> Tensor:
    """Step 1: ``W_{L+1}⁺ = (β V_{L+1}⁻ − U_{L+1}⁻) Aᵀ (λI + β AAᵀ)⁻¹``, ``A = Ṽ_L⁻``.

    ``gram`` is ``AAᵀ``.
    """
    rhs = (beta * v_out - u_out) @ v_ext.mT
    return _solve_weight_system(rhs, gram, beta, lam, pool)


def update_hidden_weights(
    core: Tensor,
    h: Tensor,
    a_ext: Tensor,
    gram: Tensor,
    pool: Pool,
    *,
    lam: float,
    beta: float,
) -> Tensor:
    """Step 2 (LLA): ``W_i⁺ = β_i (hZ/2 − G) Aᵀ (λI + β_i h AAᵀ/2)⁻¹``.

    ``A = Ṽ_{i-1}⁻`` (``a_ext``) and ``AAᵀ`` (``gram``). ``core = hZ/2 − G`` and
    ``h = max|B|`` were formed when the previous iteration closed layer ``i``
    (:func:`close_layer`), with ``Z = W_i⁻A``, ``B = V_i⁻ − U_i⁻/β_i`` and
    ``G = (σ(Z) − B) ⊙ σ'(Z)``.
    """
    rhs = (core @ a_ext.mT).mul_(beta)
    return _solve_weight_system(rhs, gram, beta * h / 2, lam, pool)


def hidden_outputs_lla_part(
    u: Tensor,
    v: Tensor,
    w_next: Tensor,
    v_next: Tensor,
    u_next: Tensor,
    mu: Tensor,
    activation: Activation,
    pool: Pool,
    *,
    beta_next: float,
) -> Tensor:
    """Step 3, ``i < L``: the right side's part that needs no ``S``,
    ``U_i⁻ + β_{i+1} W̄ᵀ(μZ_w/2 − G)``.

    ``W̄, b`` of ``W_{i+1}⁺``, ``Z_w = W̄ V_i⁻`` (``v``), ``Z = Z_w + b``,
    ``B = V_{i+1}⁻ − U_{i+1}⁻/β_{i+1}``, ``μ = max|B|`` (``mu``, kept from when the
    previous iteration closed layer ``i + 1``), ``G = (σ(Z) − B) ⊙ σ'(Z)``. Formed
    before ``S``, so that its temporaries are gone when ``Z_i`` and ``S`` are made.
    """
    w_bar, bias = w_next[..., :-1], w_next[..., -1:]
    z_w = torch.matmul(w_bar, v, out=pool.take(v_next))
    act = activation.fn_(torch.add(z_w, bias, out=pool.take(v_next)))
    target = lla_target(v_next, u_next, beta_next, out=pool.take(v_next))
    core = lla_core_(target, act, z_w, mu / 2, activation)
    pool.give(z_w, act)
    part = torch.baddbmm(u, w_bar.mT, core, alpha=beta_next, out=pool.take(u))
    pool.give(core)
    return part


def update_hidden_outputs_lla(
    s: Tensor,
    part: Tensor,
    w_next: Tensor,
    mu: Tensor,
    out: Tensor,
    pool: Pool,
    *,
    beta: float,
    beta_next: float,
) -> Tensor:
    """Step 3, ``i < L`` (LLA):
    ``V_i⁺ = (β_i I + β_{i+1}(μ/2) W̄ᵀW̄)⁻¹ (β_i C + β_{i+1} W̄ᵀ(μ Z_w/2 − G))``.

    ``S = σ(W_i⁺Ṽ_{i-1}⁺)`` (``s``), ``C = S + U_i⁻/β_i``, ``W̄`` of ``W_{i+1}⁺``;
    ``part`` is :func:`hidden_outputs_lla_part`, to which ``β_i S`` is added in place.
    ``V_i⁺`` is written into ``out``.
    """
    w_bar = w_next[..., :-1]
    rhs = part.add_(s, alpha=beta)
    system = _lower_gram(w_bar.mT, out=pool.take(w_bar, rows=w_bar.shape[-1]))
    _add_to_diagonal(system.mul_(beta_next * mu / 2), beta)
    v_new = _apply_shifted_inverse(system, rhs, pool, out=out)
    pool.give(system)
    return v_new


def update_last_hidden_outputs(
    s: Tensor,
    u: Tensor,
    w_out: Tensor,
    v_out: Tensor,
    u_out: Tensor,
    out: Tensor,
    pool: Pool,
    *,
    beta: float,
    beta_out: float,
) -> Tensor:
    """Step 3, ``i = L`` (exact, every depth):
    ``V_L⁺ = (β_L I + β_{L+1} W̄ᵀW̄)⁻¹ (U_L⁻ + β_L S − W̄ᵀE)``,
    ``E = U_{L+1}⁻ − β_{L+1}(V_{L+1}⁻ − b)``.

    ``S = σ(W_L⁺Ṽ_{L-1}⁺)``; ``W̄, b`` are those of ``W_{L+1}⁺``. ``V_L⁺`` is written
    into ``out``.
    """
    w_bar, bias = w_out[..., :-1], w_out[..., -1:]
    pull = u_out - beta_out * (v_out - bias)
    m, n = w_bar.shape[-2:]
    if m < n:
        p = torch.add(u, s, alpha=beta, out=out)
        return _woodbury_solve(p, pull, w_bar, pool, beta=beta, beta_out=beta_out)
    p = torch.add(u, s, alpha=beta, out=pool.take(u))
    system = torch.matmul(w_bar.mT, w_bar, out=pool.take(w_bar, rows=n))
    _add_to_diagonal(system.mul_(beta_out), beta)
    v_new = _apply_shifted_inverse(system, p.baddbmm_(w_bar.mT, pull, alpha=-1.0), pool, out=out)
    pool.give(p, system)
    return v_new


def _woodbury_solve(
    p: Tensor, e: Tensor, w_bar: Tensor, pool: Pool, *, beta: float, beta_out: float
) -> Tensor:
    """``(βI + β'W̄ᵀW̄)⁻¹ (P − W̄ᵀE)`` for ``W̄`` with fewer rows ``m`` than columns ``n``.

    ``(βI + β'W̄ᵀW̄)⁻¹ = (I − W̄ᵀ(β/β' I + W̄W̄ᵀ)⁻¹W̄)/β`` (Woodbury) turns the ``n × n``
    Cholesky solve, ``O(n²N)``, into one of size ``m``, ``O(nmN)``; the result is
    ``(P − W̄ᵀ(E + T))/β`` with ``T = (β/β' I + W̄W̄ᵀ)⁻¹ (W̄P − W̄W̄ᵀE)``. It is the
    same SPD system, solved exactly. The result is written into ``p``.
    """
    gram = w_bar @ w_bar.mT
    projected = w_bar @ p - gram @ e
    t = _apply_shifted_inverse(_add_to_diagonal(gram, beta / beta_out), projected, pool)
    return p.baddbmm_(w_bar.mT, e + t, beta=1.0 / beta, alpha=-1.0 / beta)


def update_output(y: Tensor, u_out: Tensor, f: Tensor, *, beta_out: float) -> Tensor:
    """Step 4: ``V_{L+1}⁺ = (Y + U_{L+1}⁻ + β_{L+1} W_{L+1}⁺Ṽ_L⁺) / (1 + β_{L+1})``.

    ``f`` is ``W_{L+1}⁺Ṽ_L⁺``.
    """
    return torch.add(y + u_out, f, alpha=beta_out).div_(1 + beta_out)


def update_multiplier(
    u: Tensor, residual: Tensor, beta: float, pool: Pool
) -> tuple[Tensor, Tensor]:
    """Step 5 for one constraint, in place: ``U_i⁺ = U_i⁻ + β_i r_i``, with the residual
    ``r_i = σ(W_i⁺Ṽ_{i-1}⁺) − V_i⁺`` (``i ≤ L``) or ``r_{L+1} = W_{L+1}⁺Ṽ_L⁺ − V_{L+1}⁺``.

    Returns what 𝓛 and the residual curves need of ``r_i``, ``‖r_i‖²`` and
    ``⟨U_i⁺, r_i⟩`` per trial, so the caller need not keep ``r_i`` alive.
    """
    u.add_(residual, alpha=beta)
    return _sum_sq(residual), _dot(u, residual, pool)


def close_layer(
    v: Tensor, u: Tensor, z: Tensor, s: Tensor, activation: Activation, pool: Pool, *, beta: float
) -> tuple[tuple[Tensor, Tensor], Tensor, Tensor]:
    """Step 5 for hidden layer ``i`` once step 3 has ``V_i⁺``, then the next step 2's input.

    ``z`` and ``s`` are step 3's ``Z_i = W_i⁺Ṽ_{i-1}⁺`` and ``σ(Z_i)``. Returns
    :func:`update_multiplier`'s ``(‖r_i‖², ⟨U_i⁺, r_i⟩)``, then ``hZ_i/2 − G`` and
    ``h = max|B|`` for ``B = V_i⁺ − U_i⁺/β_i``: the next iteration's step 2 for layer
    ``i`` (its ``Z = W_i⁻A`` is this ``Z_i``), written where ``r_i`` was.
    """
    residual = torch.sub(s, v, out=pool.take(v))
    stats = update_multiplier(u, residual, beta, pool)
    return stats, *step2_core(v, u, z, s, activation, beta=beta, out=residual)


def step2_core(
    v: Tensor,
    u: Tensor,
    z: Tensor,
    s: Tensor,
    activation: Activation,
    *,
    beta: float,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Step 2's ``hZ/2 − G`` and ``h = max|B|`` for layer ``i``, from ``V_i``, ``U_i``,
    ``Z = W_iṼ_{i-1}`` (``z``) and ``σ(Z)`` (``s``), with ``B = V_i − U_i/β_i``; the
    core is written into ``out`` (or a fresh tensor)."""
    target = lla_target(v, u, beta, out=out)
    h = _abs_max(target)
    return lla_core_(target, s, z, h / 2, activation), h


def augmented_lagrangian(
    v_out: Tensor,
    y: Tensor,
    weights: list[Tensor],
    constraints: list[tuple[Tensor, Tensor]],
    *,
    lam: float,
    betas: Sequence[float],
) -> Tensor:
    """𝓛 of docs/algorithm.md per trial, ``(K,)``, at the new iterate.

    ``constraints`` holds ``(‖r_i‖², ⟨U_i, r_i⟩)`` per constraint, from :func:`update_multiplier`.
    """
    value = 0.5 * _sum_sq(v_out - y)
    value = value + 0.5 * lam * sum(_sum_sq(w) for w in weights)
    for (sq_i, dot_i), b_i in zip(constraints, betas, strict=True):
        value = value + dot_i + 0.5 * b_i * sq_i
    return value


# ---------------------------------------------------------------- the iterate


@dataclass
class _Iterate:
    """The ADMM variables plus what the next iteration reuses (layer ``i`` at ``[i-1]``)."""

    w: list[Tensor]  # W_i, (K, n_i, n_{i-1} + 1), i = 1..L+1
    v_ext: list[Tensor]  # Ṽ_i, (K, n_i + 1, N), i = 0..L (index i)
    v_out: Tensor  # V_{L+1}, (K, m, N)
    u: list[Tensor]  # U_i, like V_i, i = 1..L+1
    core: list[Tensor]  # step 2's hZ/2 − G for the next iteration, i = 1..L
    h: list[Tensor]  # max|B_i|, (K, 1, 1): step 2's h for layer i, step 3's μ for i − 1
    gram: list[Tensor]  # Ṽ_iṼ_iᵀ, i = 0..L (index i; lower triangle for i ≥ 1)
    pool: Pool  # the iteration's temporaries, the cores among them

    @property
    def depth(self) -> int:
        return len(self.w) - 1

    def v(self, i: int) -> Tensor:
        """``V_i`` for ``1 ≤ i ≤ L`` as a view of ``Ṽ_i``."""
        return self.v_ext[i][..., :-1, :]

    def named_quantities(self) -> list[tuple[str, Tensor]]:
        """The iterate in the order an iteration computes it, for error reports."""
        n_layers = len(self.w)
        out = [(f"W_{i}", self.w[i - 1]) for i in range(n_layers, 0, -1)]
        out += [(f"V_{i}", self.v(i)) for i in range(1, n_layers)]
        out.append((f"V_{n_layers}", self.v_out))
        out += [(f"U_{i}", self.u[i - 1]) for i in range(1, n_layers + 1)]
        return out


def _ones_row_buffer(v: Tensor) -> Tensor:
    """``[v; 1ᵀ]`` as a fresh buffer whose top rows are later overwritten in place."""
    buf = torch.ones((*v.shape[:-2], v.shape[-2] + 1, v.shape[-1]), dtype=v.dtype, device=v.device)
    buf[..., :-1, :] = v
    return buf


def _initial_iterate(
    x_ext: Tensor, weights: list[Tensor], activation: Activation, betas: Sequence[float]
) -> _Iterate:
    """docs/algorithm.md, Initialisation: a forward pass and ``U⁰ = 0``; then the first
    step 2's input from them (:func:`step2_core`), as :func:`close_layer` forms it later.
    Its temporaries come from the pool that the iterations go on using."""
    v_ext, u, core, h, pool = [x_ext], [], [], [], Pool()
    for w, beta in zip(weights[:-1], betas[:-1], strict=True):
        z = torch.matmul(w, v_ext[-1], out=pool.take(w, cols=x_ext.shape[-1]))
        s = activation.fn(z, out=pool.take(z))
        v_ext.append(_ones_row_buffer(s))
        u.append(torch.zeros_like(s))
        core_i, h_i = step2_core(s, u[-1], z, s, activation, beta=beta, out=pool.take(z))
        core.append(core_i)
        h.append(h_i)
        pool.give(z, s)
    v_out = weights[-1] @ v_ext[-1]
    u.append(torch.zeros_like(v_out))
    gram = [x_ext @ x_ext.mT]
    gram += [_lower_gram(v, out=v.new_zeros((*v.shape[:-1], v.shape[-2]))) for v in v_ext[1:]]
    return _Iterate(list(weights), v_ext, v_out, u, core, h, gram, pool)


# ---------------------------------------------------------------- one iteration


def admm_iteration(
    it: _Iterate,
    y: Tensor,
    activation: Activation,
    forward_metrics: Callable[[Tensor, Tensor], dict[str, Tensor]],
    *,
    lam: float,
    betas: Sequence[float],
) -> tuple[list[tuple[Tensor, Tensor]], dict[str, Tensor]]:
    """One iteration k of docs/algorithm.md, in place.

    ``forward_metrics(Z_1, σ(Z_1))`` is called while step 3 holds them (the network's
    forward pass starts there). Returns ``(‖r_i‖², ⟨U_i, r_i⟩)`` per constraint
    ``i = 1..L+1`` and what ``forward_metrics`` returned.
    """
    depth = it.depth
    beta_out = betas[depth]

    pool = it.pool
    # Steps 1–2: all W, backward, from the previous V and U; each core goes back to
    # the pool as soon as its W is solved.
    it.w[depth] = update_output_weights(
        it.v_ext[depth], it.v_out, it.u[depth], it.gram[depth], pool, lam=lam, beta=beta_out
    )
    cores, it.core = it.core, []
    for i in range(depth, 0, -1):
        core = cores.pop()
        it.w[i - 1] = update_hidden_weights(
            core, it.h[i - 1], it.v_ext[i - 1], it.gram[i - 1], pool, lam=lam, beta=betas[i - 1]
        )
        pool.give(core)

    # Step 3: all hidden V, forward; V_{i+1}, U_i and U_{i+1} are still the previous
    # ones when layer i is solved. Each layer is closed by its step 5 at once.
    constraints, metrics = [], {}
    for i in range(1, depth + 1):
        v = it.v(i)
        if i < depth:
            part = hidden_outputs_lla_part(
                it.u[i - 1], v, it.w[i], it.v(i + 1), it.u[i], it.h[i], activation, pool,
                beta_next=betas[i],
            )  # fmt: skip
        z = torch.matmul(it.w[i - 1], it.v_ext[i - 1], out=pool.take(v))
        s = activation.fn(z, out=pool.take(v))
        # V_i⁻ is spent: V_i⁺ goes straight into its buffer when that is one block
        # (one trial), else through a spare array.
        v_new = v if v.is_contiguous() else pool.take(v)
        if i < depth:
            update_hidden_outputs_lla(
                s, part, it.w[i], it.h[i], v_new, pool, beta=betas[i - 1], beta_next=betas[i]
            )
            pool.give(part)
        else:
            update_last_hidden_outputs(
                s, it.u[i - 1], it.w[depth], it.v_out, it.u[depth], v_new, pool,
                beta=betas[i - 1], beta_out=beta_out,
            )  # fmt: skip
        if v_new is not v:
            v.copy_(v_new)
            pool.give(v_new)
        _lower_gram(it.v_ext[i], out=it.gram[i])  # step 1–2 have read the old one
        if i == 1:
            metrics = forward_metrics(z, s)
        stats, core, it.h[i - 1] = close_layer(
            v, it.u[i - 1], z, s, activation, pool, beta=betas[i - 1]
        )
        constraints.append(stats)
        it.core.append(core)
        pool.give(z, s)

    # Step 4, and step 5 for the output constraint.
    f = it.w[depth] @ it.v_ext[depth]
    it.v_out = update_output(y, it.u[depth], f, beta_out=beta_out)
    constraints.append(update_multiplier(it.u[depth], f - it.v_out, beta_out, pool))
    return constraints, metrics


# ---------------------------------------------------------------- metrics


def _saturation_edge(activation: Activation) -> float:
    """The ``|z|`` beyond which ``σ'(z) <`` the threshold, by bisection.

    ``σ'`` of sigmoid and tanh is even and falls with ``|z|``, so counting
    ``|Z| ≥ edge`` counts ``σ'(Z) <`` threshold without computing ``σ'``.
    """

    def saturated(z: float) -> bool:
        return bool(activation.deriv(torch.tensor(z, dtype=torch.float64)) < SATURATION_THRESHOLD)

    lo, hi = 0.0, 1.0
    while not saturated(hi):
        lo, hi = hi, 2 * hi
    for _ in range(64):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if saturated(mid) else (mid, hi)
    return hi


def _saturation(pre: Tensor, edge: float, pool: Pool) -> Tensor:
    """Share of pre-activations with ``σ' <`` the threshold, per trial.

    ``|Z| ≥ edge`` is written as 0/1 into a spare array of ``pool`` and summed there:
    a boolean mask would be widened to integers in a fresh ``n × N`` copy per sum.
    """
    flags = pool.take(pre)
    torch.ge(torch.abs(pre, out=flags), edge, out=flags)
    share = flags.sum(dim=(-2, -1)) / (pre.shape[-2] * pre.shape[-1])
    pool.give(flags)
    return share


def _train_metrics(
    weights: list[Tensor],
    pre: Tensor,
    hidden: Tensor,
    y_rows: Tensor,
    activation: Activation,
    edge: float,
    classification: bool,
    pool: Pool,
) -> dict[str, Tensor]:
    """``train_*`` of the network's forward pass, and ``saturation/layer_i``.

    Its first hidden layer is step 3's ``Z_1 = W_1⁺X̃`` (``pre``) and ``σ(Z_1)``
    (``hidden``); the rest is computed here in spare arrays of ``pool``, and the
    output layer goes through :func:`evaluate` like every other solver's.
    """
    metrics = {"saturation/layer_1": _saturation(pre, edge, pool)}
    spent = []
    for i in range(2, len(weights)):
        w = weights[i - 1]
        z = torch.baddbmm(w[..., -1:], w[..., :-1], hidden, out=pool.take(hidden, rows=w.shape[-2]))
        pool.give(*spent)
        metrics[f"saturation/layer_{i}"] = _saturation(z, edge, pool)
        hidden = activation.fn_(z)
        spent = [z]
    metrics.update(
        evaluate(
            weights[-1:], activation, {"train": (hidden.mT, y_rows)}, classification=classification
        )
    )
    pool.give(*spent)
    return metrics


# ---------------------------------------------------------------- inputs


def _smooth_activation(activation: str | Activation) -> Activation:
    act = get_activation(activation)
    if not act.smooth:
        raise ValueError(f"ADMM needs a smooth activation (sigmoid or tanh), got {act.name!r}")
    return act


def _layer_betas(beta: float | Sequence[float], n_layers: int) -> list[float]:
    if isinstance(beta, int | float) or getattr(beta, "ndim", None) == 0:
        betas = [float(beta)] * n_layers
    else:
        betas = [float(b) for b in beta]
        if len(betas) != n_layers:
            raise ValueError(
                f"beta needs one value per layer 1..L+1, i.e. {n_layers} values, got {len(betas)}"
            )
    return betas


# ---------------------------------------------------------------- the two implementations


class Step(Protocol):
    """An ADMM implementation as :func:`fit` drives it: the current weights ``W_1 … W_{L+1}``,
    one iteration returning its metrics and ``‖r_i‖`` per constraint, and the iterate
    named for error reports."""

    @property
    def w(self) -> list[Tensor]: ...

    def iterate(self) -> tuple[dict[str, Tensor], list[Tensor]]: ...

    def named_quantities(self) -> list[tuple[str, Tensor]]: ...


class FastStep:
    """:func:`admm_iteration` on an :class:`_Iterate`: 𝓛 and the residuals come from step
    5's by-products, the network's forward pass starts from step 3's ``Z_1``."""

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
        self.it = _initial_iterate(_ones_row_buffer(x.mT), weights, act, betas)
        self.y, self.y_cols = y, y.mT.contiguous()
        self.act, self.lam, self.betas, self.classification = act, lam, betas, classification
        self.edge = _saturation_edge(act)

    @property
    def w(self) -> list[Tensor]:
        return self.it.w

    def named_quantities(self) -> list[tuple[str, Tensor]]:
        return self.it.named_quantities()

    def iterate(self) -> tuple[dict[str, Tensor], list[Tensor]]:
        it, lam, betas = self.it, self.lam, self.betas
        constraints, train = admm_iteration(
            it, self.y_cols, self.act, self._forward_metrics, lam=lam, betas=betas
        )
        lagrangian = augmented_lagrangian(
            it.v_out, self.y_cols, it.w, constraints, lam=lam, betas=betas
        )
        return {"aug_lagrangian": lagrangian, **train}, [sq.sqrt() for sq, _ in constraints]

    def _forward_metrics(self, pre: Tensor, hidden: Tensor) -> dict[str, Tensor]:
        it = self.it
        return _train_metrics(
            it.w, pre, hidden, self.y, self.act, self.edge, self.classification, it.pool
        )


def make_step(
    impl: str,
    x: Tensor,
    y: Tensor,
    weights: list[Tensor],
    act: Activation,
    *,
    lam: float,
    betas: Sequence[float],
    classification: bool,
) -> Step:
    """The iteration ``impl`` names, started at ``weights`` (with a leading K) on ``x``,
    ``y`` (samples as rows)."""
    steps = {"fast": FastStep, "reference": ReferenceStep}
    if impl not in steps:
        raise ValueError(f"unknown ADMM iteration implementation {impl!r}; choose one of {IMPLS}")
    return steps[impl](x, y, weights, act, lam=lam, betas=betas, classification=classification)


# ---------------------------------------------------------------- the solver


def fit(
    X: Tensor,
    Y: Tensor,
    weights: Sequence[Tensor],
    *,
    lam: float,
    beta: float | Sequence[float],
    activation: str | Activation = "sigmoid",
    epochs: int,
    X_test: Tensor | None = None,
    Y_test: Tensor | None = None,
    X_val: Tensor | None = None,
    Y_val: Tensor | None = None,
    classification: bool = False,
    callback: Callback | None = None,
    impl: str = "fast",
) -> FitResult:
    """Train with the ADMM of docs/algorithm.md for ``epochs`` iterations.

    ``X`` is ``(N, d)`` or ``(K, N, d)`` (samples as rows), ``Y`` ``(N, m)`` or
    ``(K, N, m)``; ``weights`` as from :func:`admmlab.nets.init_weights`, with or
    without a leading K. Computation runs in the weights' dtype on their device.
    ``beta`` is one penalty for every layer or one per layer ``1..L+1``.

    Returns the final weights (with a leading K if the weights or the data had one)
    and the per-epoch history, each metric ``(epochs, K)``, or ``(epochs,)`` when no
    input had a trial dimension. A trial whose iterate goes non-finite stops there
    (:class:`TrialStops`): the others go on, and the result's ``diverged`` says which
    stopped and why. Without a trial dimension, or once every trial has stopped, it
    raises :class:`NonFiniteError` whose ``partial`` holds the last finite weights and
    the history before it.

    ``impl`` picks the iteration: ``"fast"`` (the default, :func:`admm_iteration`) or
    ``"reference"``, the paper's steps as written that it is tested against
    (:mod:`admmlab.solvers.admm_reference`).
    """
    settings = ADMM(epochs=epochs, lam=lam, beta=beta, impl=impl)
    X, Y, w0, held_out, batched = full_batch_inputs(
        X, Y, weights, {"test": (X_test, Y_test), "val": (X_val, Y_val)}
    )
    act = _smooth_activation(activation)
    betas = _layer_betas(beta, len(w0))
    step = make_step(impl, X, Y, w0, act, lam=lam, betas=betas, classification=classification)
    return run_epochs(
        IterationEpochs(step, settings.lam),
        epochs=settings.epochs,
        activation=act,
        held_out=held_out,
        classification=classification,
        batched=batched,
        callback=callback,
    )


class IterationEpochs:
    """One epoch = one ADMM iteration (full batch), with ``‖r_i‖`` per constraint."""

    def __init__(self, step: Step, lam: float) -> None:
        self.step, self.lam = step, lam

    def epoch(self, epoch: int) -> dict[str, Tensor]:
        metrics, residuals = self.step.iterate()
        for i, norm in enumerate(residuals, start=1):
            metrics[f"residual/layer_{i}"] = norm
        return metrics

    def weights(self) -> list[Tensor]:
        return list(self.step.w)

    def finite(self, metrics: dict[str, Tensor]) -> Tensor:
        return torch.isfinite(metrics["aug_lagrangian"] + metrics["train_mse"])

    def quantities(self, metrics: dict[str, Tensor]) -> list[Quantity]:
        return _quantities(self.step, metrics, self.lam)


def _quantities(step: Step, metrics: dict[str, Tensor], lam: float) -> list[Quantity]:
    """What may go non-finite, in the order an iteration computes it, with a hint each:
    the iterate, then 𝓛 and train_mse (from which the per-epoch check reads)."""
    named = [(name, t, _precision_hint(name, t.dtype, lam)) for name, t in step.named_quantities()]
    return [*named, *((name, metrics[name], "") for name in ("aug_lagrangian", "train_mse"))]


def _precision_hint(name: str, dtype: torch.dtype, lam: float) -> str:
    """Why a weight goes bad below float64: its system ``λI + c·AAᵀ`` is SPD in exact
    arithmetic, but at small λ its Cholesky factorisation fails in rounding."""
    if not name.startswith("W_") or dtype == torch.float64:
        return ""
    return (
        f"in {str(dtype).removeprefix('torch.')} the Cholesky factor of its system "
        f"lam*I + c*AA^T fails at lam={lam:g}: use float64 or a larger lam"
    )
