"""BCD (solver=bcd) against a NumPy implementation written here from Zeng et al. (2019)'s
block updates, one trial at a time; batched trials against separate runs."""

import numpy as np
import pytest
import torch

from admmlab.nets import get_activation, init_weights
from admmlab.solvers import bcd
from admmlab.solvers.interface import SettingError
from admmlab.solvers.settings import BCD

KNOBS = {"gamma": 2.0, "rho": 1.5, "alpha": 0.5, "lam": 1e-3}


# ------------------------------------------------------------------ NumPy, one trial


def ones_below(a):
    return np.vstack([a, np.ones((1, a.shape[1]))])


def act_np(name, z):
    return np.maximum(z, 0) if name == "relu" else 1 / (1 + np.exp(-z))


def relu_prox_np(v, a, gamma, c):
    """argmin_u gamma/2 (v - relu(u))^2 + c/2 (u - a)^2, by comparing both pieces."""
    candidates = [np.minimum(a, 0), np.maximum((gamma * v + c * a) / (gamma + c), 0)]
    cost = [gamma / 2 * (v - np.maximum(u, 0)) ** 2 + c / 2 * (u - a) ** 2 for u in candidates]
    return np.where(cost[0] <= cost[1], candidates[0], candidates[1])


def sweep_np(W, U, V, Y, name, gamma, rho, alpha, lam):
    """One backward sweep: V_out, U_out, W_out, then V_i, U_i, W_i for i = L..1."""
    W, U, V = list(W), list(U), list(V)  # index 0 unused for W and U; V[0] = X
    out = len(W) - 1
    V[out] = (Y + gamma * U[out] + alpha * V[out]) / (1 + gamma + alpha)
    U[out] = (gamma * V[out] + rho * W[out] @ ones_below(V[out - 1])) / (gamma + rho)
    for i in range(out, 0, -1):
        if i < out:
            Wn, b = W[i + 1][:, :-1], W[i + 1][:, -1:]
            lhs = rho * Wn.T @ Wn + gamma * np.eye(Wn.shape[1])
            V[i] = np.linalg.solve(lhs, rho * Wn.T @ (U[i + 1] - b) + gamma * act_np(name, U[i]))
            a = (rho * W[i] @ ones_below(V[i - 1]) + alpha * U[i]) / (rho + alpha)
            if name == "relu":
                U[i] = relu_prox_np(V[i], a, gamma, rho + alpha)
            else:  # prox-linear: the gradient of gamma/2 ||V - s(U)||^2 at the old U
                s = act_np(name, U[i])
                U[i] = a - gamma / (rho + alpha) * (s - V[i]) * s * (1 - s)
        A = ones_below(V[i - 1])
        lhs = rho * A @ A.T + (alpha + lam) * np.eye(A.shape[0])
        W[i] = np.linalg.solve(lhs, (rho * U[i] @ A.T + alpha * W[i]).T).T
    return W, U, V


def forward_np(W, X, name):
    U, V = [None], [X]
    for i in range(1, len(W)):
        U.append(W[i] @ ones_below(V[-1]))
        V.append(U[-1] if i == len(W) - 1 else act_np(name, U[-1]))
    return U, V


def objective_np(W, U, V, Y, name, gamma, rho, lam):
    out = len(W) - 1
    f = 0.5 * np.sum((V[out] - Y) ** 2) + 0.5 * lam * sum(np.sum(w**2) for w in W[1:])
    f += 0.5 * gamma * np.sum((V[out] - U[out]) ** 2)
    for i in range(1, out + 1):
        if i < out:
            f += 0.5 * gamma * np.sum((V[i] - act_np(name, U[i])) ** 2)
        f += 0.5 * rho * np.sum((U[i] - W[i] @ ones_below(V[i - 1])) ** 2)
    return f


def close(a, b, rel: float) -> bool:
    """``‖a − b‖ ≤ rel · ‖b‖`` (Frobenius): batched products round differently."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.linalg.norm(a - b) <= rel * np.linalg.norm(b))


def problem(depth: int, seed: int = 0, n: int = 30):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2))
    y = np.stack([x[:, 0] * x[:, 1], x[:, 0] ** 2], axis=1)
    gen = torch.Generator().manual_seed(seed)
    weights = init_weights("msra", [2, *[6] * depth, 2], generator=gen)
    return x, y, weights


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_five_sweeps_equal_numpy_from_the_papers_blocks(depth, name):
    x, y, weights = problem(depth)
    act = get_activation(name)
    it = bcd.initial_lifted(torch.as_tensor(x).T[None], [w[None] for w in weights], act)
    W = [None, *(w.numpy() for w in weights)]
    U, V = forward_np(W, x.T, name)
    yt = torch.as_tensor(y).T[None]
    for _ in range(5):
        it = bcd.bcd_sweep(it, yt, act, **KNOBS)
        W, U, V = sweep_np(W, U, V, y.T, name, **KNOBS)
    for i in range(1, depth + 2):
        np.testing.assert_allclose(it.w[i][0].numpy(), W[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(it.u[i][0].numpy(), U[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(it.v[i][0].numpy(), V[i], rtol=1e-10, atol=1e-12)
    knobs = {k: KNOBS[k] for k in ("gamma", "rho", "lam")}
    ours = bcd.lifted_objective(it, yt, act, **knobs).item()
    assert ours == pytest.approx(objective_np(W, U, V, y.T, name, **knobs), rel=1e-10)


def test_the_relu_block_is_the_exact_minimiser_entry_by_entry():
    rng = np.random.default_rng(1)
    v, a = rng.normal(size=200), rng.normal(size=200)
    gamma, c = 1.3, 0.7
    got = bcd.relu_pre_block(torch.as_tensor(v), torch.as_tensor(a), gamma=gamma, c=c).numpy()
    grid = np.linspace(-6, 6, 240001)[:, None]  # brute force on a fine grid
    cost = gamma / 2 * (v - np.maximum(grid, 0)) ** 2 + c / 2 * (grid - a) ** 2
    best = cost.min(axis=0)
    mine = gamma / 2 * (v - np.maximum(got, 0)) ** 2 + c / 2 * (got - a) ** 2
    assert np.all(mine <= best + 1e-12)


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_batched_trials_equal_separate_runs(name):
    x, y, _ = problem(2)
    seeds = [3, 4, 5]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    draws = [init_weights("msra", [2, 6, 6, 2], generator=g) for g in gens]
    batched = [torch.stack(layer) for layer in zip(*draws, strict=True)]
    together = bcd.fit(x, y, batched, activation=name, epochs=4, **KNOBS)
    for k, weights in enumerate(draws):
        alone = bcd.fit(x, y, weights, activation=name, epochs=4, **KNOBS)
        for w_all, w_one in zip(together.weights, alone.weights, strict=True):
            assert close(w_all[k], w_one, 1e-10)
        for key, values in alone.history.items():
            if key != "epoch_time_s":
                assert close(together.history[key][:, k], values, 1e-10), key


def test_each_sweep_records_the_metrics_admm_records():
    x, y, weights = problem(2)
    result = bcd.fit(x, y, weights, activation="relu", epochs=3, **KNOBS)
    expected = {"lifted_objective", "train_mse", "residual/layer_1", "residual/layer_3",
                "saturation/layer_1", "saturation/layer_2"}  # fmt: skip
    assert expected <= set(result.history)
    assert result.history["train_mse"].shape == (3,)
    # the lifted objective is not increased by a sweep: each block is minimised
    objective = result.history["lifted_objective"]
    assert torch.all(objective[1:] <= objective[:-1] + 1e-12)


@pytest.mark.parametrize("key", ["gamma", "rho", "alpha"])
def test_a_penalty_that_is_not_positive_is_refused_in_one_line(key):
    with pytest.raises(SettingError, match=f"solver.{key} must be positive, got 0.0"):
        BCD(**{key: 0.0})
