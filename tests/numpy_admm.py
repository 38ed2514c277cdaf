"""A plain NumPy implementation of docs/algorithm.md: the reference for tests and benchmarks.

Written straight from the equations, one trial, samples as columns, and independent
of the torch solver: every product is formed as written (no reuse between steps)
and every SPD system is solved with ``np.linalg.solve``.
"""

from collections.abc import Sequence

import numpy as np


def activation_value_and_deriv(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``σ(z)`` and ``σ'(z)`` for the smooth activations."""
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s, s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1.0 - t * t
    raise ValueError(f"no smooth activation named {name!r}")


def with_ones_row(v: np.ndarray) -> np.ndarray:
    """``ṽ = [v; 1ᵀ]``."""
    return np.vstack([v, np.ones((1, v.shape[1]), dtype=v.dtype)])


def network_output(weights: list[np.ndarray], x: np.ndarray, activation: str) -> np.ndarray:
    """``f(X) = W_{L+1} Ṽ_L`` with ``V_i = σ(W_i Ṽ_{i-1})``, ``V_0 = X``."""
    v = x
    for w in weights[:-1]:
        v = activation_value_and_deriv(activation, w @ with_ones_row(v))[0]
    return weights[-1] @ with_ones_row(v)


def admm_reference(
    x: np.ndarray,
    y: np.ndarray,
    weights: Sequence[np.ndarray],
    *,
    lam: float,
    beta: float | Sequence[float],
    activation: str = "sigmoid",
    epochs: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run ``epochs`` ADMM iterations; return the train_mse per iteration and final weights.

    ``x`` is ``(d, N)``, ``y`` is ``(m, N)``; ``weights[i-1]`` is ``W_i``. Everything
    is computed in ``x``'s dtype.
    """
    n_layers = len(weights)  # L + 1
    depth = n_layers - 1
    # Lists are indexed by layer: W[i], V[i], U[i], b[i] for i = 1..L+1; V[0] = X.
    b = [0.0, *([float(beta)] * n_layers if np.isscalar(beta) else [float(v) for v in beta])]
    dtype = x.dtype
    w = [np.zeros((0, 0)), *[np.array(wi, dtype=dtype) for wi in weights]]
    sig = activation

    # Initialisation: a forward pass, zero multipliers.
    v = [x]
    for i in range(1, depth + 1):
        v.append(activation_value_and_deriv(sig, w[i] @ with_ones_row(v[i - 1]))[0])
    v.append(w[depth + 1] @ with_ones_row(v[depth]))
    u = [np.zeros((0, 0)), *[np.zeros_like(vi) for vi in v[1:]]]

    n_samples = x.shape[1]
    history = []
    out = depth + 1
    for _ in range(epochs):
        # 1. Output weights: exact ridge solve.
        a = with_ones_row(v[depth])
        rhs = (b[out] * v[out] - u[out]) @ a.T
        system = lam * np.eye(a.shape[0], dtype=dtype) + b[out] * a @ a.T
        w[out] = np.linalg.solve(system, rhs.T).T

        # 2. Hidden weights, backward, prox-linear (LLA) steps.
        for i in range(depth, 0, -1):
            a = with_ones_row(v[i - 1])
            target = v[i] - u[i] / b[i]
            z = w[i] @ a
            h = np.abs(target).max()
            s, ds = activation_value_and_deriv(sig, z)
            g = (s - target) * ds
            rhs = b[i] * (h * z / 2 - g) @ a.T
            system = lam * np.eye(a.shape[0], dtype=dtype) + b[i] * h * a @ a.T / 2
            w[i] = np.linalg.solve(system, rhs.T).T

        # 3. Hidden outputs, forward. v[i+1] and u are still the previous iterate here.
        for i in range(1, depth + 1):
            p = with_ones_row(v[i - 1])
            s = activation_value_and_deriv(sig, w[i] @ p)[0]
            w_bar, bias = w[i + 1][:, :-1], w[i + 1][:, -1:]
            if i < depth:
                target = v[i + 1] - u[i + 1] / b[i + 1]
                z_w = w_bar @ v[i]
                mu = np.abs(target).max()
                s_next, ds_next = activation_value_and_deriv(sig, z_w + bias)
                g = (s_next - target) * ds_next
                c = s + u[i] / b[i]
                eye = np.eye(w_bar.shape[1], dtype=dtype)
                system = b[i] * eye + b[i + 1] * mu / 2 * w_bar.T @ w_bar
                rhs = b[i] * c + b[i + 1] * w_bar.T @ (mu * z_w / 2 - g)
            else:
                system = b[i] * np.eye(w_bar.shape[1], dtype=dtype) + b[out] * w_bar.T @ w_bar
                rhs = u[i] + b[i] * s - w_bar.T @ (u[out] - b[out] * (v[out] - bias))
            v[i] = np.linalg.solve(system, rhs)

        # 4. Output.
        v[out] = (y + u[out] + b[out] * w[out] @ with_ones_row(v[depth])) / (1 + b[out])

        # 5. Multipliers.
        for i in range(1, depth + 1):
            s = activation_value_and_deriv(sig, w[i] @ with_ones_row(v[i - 1]))[0]
            u[i] = u[i] + b[i] * (s - v[i])
        u[out] = u[out] + b[out] * (w[out] @ with_ones_row(v[depth]) - v[out])

        f = network_output(w[1:], x, sig)
        history.append(np.sum((f - y) ** 2) / n_samples)
    return np.array(history), w[1:]
