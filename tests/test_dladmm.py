"""dlADMM (solver=dladmm) against a NumPy implementation written here from Wang et al.
(2019)'s sub-problems, one trial at a time, weights and biases apart; batched trials
against separate runs."""

import numpy as np
import pytest
import torch

from admmlab.nets import get_activation, init_weights
from admmlab.solvers import dladmm
from admmlab.solvers.interface import SettingError
from admmlab.solvers.settings import DLADMM

KNOBS = {"rho": 0.7, "nu": 1.3, "theta": 0.5, "tau": 0.25}


# ------------------------------------------------------------------ NumPy, one trial


def relu(z):
    return np.maximum(z, 0)


def backtracked_step(x, grad, f, start):
    """x - grad/t for the least t = start 2^k with f(x - grad/t) <= its quadratic model."""
    t = start
    while True:
        new = x - grad / t
        if f(new) <= f(x) + np.sum(grad * (new - x)) + t / 2 * np.sum((new - x) ** 2):
            return new
        t *= 2


class NumpyDlAdmm:
    """W[i], b[i], z[i] for i = 1..n (n = L+1 layers), a[i] for i = 0..L, multiplier u."""

    def __init__(self, weights, x, rho, nu, theta, tau):
        self.W = [None] + [w[:, :-1].copy() for w in weights]
        self.b = [None] + [w[:, -1:].copy() for w in weights]
        self.n = len(weights)
        self.rho, self.nu, self.theta, self.tau = rho, nu, theta, tau
        self.a, self.z = [x] + [None] * self.n, [None] * (self.n + 1)
        for i in range(1, self.n + 1):
            self.z[i] = self.W[i] @ self.a[i - 1] + self.b[i]
            if i < self.n:
                self.a[i] = relu(self.z[i])
        self.u = np.zeros_like(self.z[self.n])

    def c(self, i):
        return self.rho if i == self.n else self.nu

    def t(self, i):  # what layer i's link term pulls W_i a_{i-1} + b_i towards
        return self.z[i] + self.u / self.rho if i == self.n else self.z[i]

    def update_z(self, i, y):
        m = self.W[i] @ self.a[i - 1] + self.b[i]
        if i == self.n:  # 1/2||z - y||^2 + <u, z - m> + rho/2 ||z - m||^2
            self.z[i] = (y + self.rho * m - self.u) / (1 + self.rho)
            return
        a = self.a[i]  # nu/2 (z - m)^2 + nu/2 (a - relu z)^2 on z <= 0 and on z >= 0
        low, high = np.minimum(m, 0), np.maximum((m + a) / 2, 0)
        f_low = (low - m) ** 2 + (a - relu(low)) ** 2
        f_high = (high - m) ** 2 + (a - relu(high)) ** 2
        self.z[i] = np.where(f_low > f_high, high, low)

    def update_b(self, i):
        self.b[i] = np.mean(self.t(i) - self.W[i] @ self.a[i - 1], axis=1, keepdims=True)

    def update_W(self, i):
        a, t, b, c = self.a[i - 1], self.t(i), self.b[i], self.c(i)

        def f(W):
            return c / 2 * np.sum((t - W @ a - b) ** 2)

        grad = c * (self.W[i] @ a + b - t) @ a.T
        self.W[i] = backtracked_step(self.W[i], grad, f, self.theta)

    def update_a(self, i):
        W, b, t, c, s = self.W[i + 1], self.b[i + 1], self.t(i + 1), self.c(i + 1), relu(self.z[i])

        def f(a):
            return c / 2 * np.sum((t - W @ a - b) ** 2) + self.nu / 2 * np.sum((a - s) ** 2)

        grad = c * W.T @ (W @ self.a[i] + b - t) + self.nu * (self.a[i] - s)
        self.a[i] = backtracked_step(self.a[i], grad, f, self.tau)

    def iteration(self, y):
        for i in range(self.n, 0, -1):
            self.update_z(i, y)
            self.update_b(i)
            self.update_W(i)
            if i > 1:
                self.update_a(i - 1)
        for i in range(1, self.n + 1):
            self.update_W(i)
            self.update_b(i)
            self.update_z(i, y)
            if i < self.n:
                self.update_a(i)
        n = self.n
        self.u = self.u + self.rho * (self.z[n] - self.W[n] @ self.a[n - 1] - self.b[n])

    def lagrangian(self, y):
        n, nu = self.n, self.nu
        gap = self.z[n] - self.W[n] @ self.a[n - 1] - self.b[n]
        f = 0.5 * np.sum((self.z[n] - y) ** 2) + np.sum(self.u * gap)
        f += self.rho / 2 * np.sum(gap**2)
        for i in range(1, n):
            f += nu / 2 * np.sum((self.z[i] - self.W[i] @ self.a[i - 1] - self.b[i]) ** 2)
            f += nu / 2 * np.sum((self.a[i] - relu(self.z[i])) ** 2)
        return f


# ------------------------------------------------------------------ the tests


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


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_five_iterations_equal_numpy_from_the_papers_subproblems(depth):
    x, y, weights = problem(depth)
    relu_act = get_activation("relu")
    it = dladmm.initial_iterate(torch.as_tensor(x).T[None], [w[None] for w in weights], relu_act)
    ref = NumpyDlAdmm([w.numpy() for w in weights], x.T, **KNOBS)
    knobs = dladmm.Knobs(**KNOBS)
    yt = torch.as_tensor(y).T[None]
    for _ in range(5):
        it = dladmm.dladmm_iteration(it, yt, knobs)
        ref.iteration(y.T)
    for i in range(1, depth + 2):
        w = np.hstack([ref.W[i], ref.b[i]])
        np.testing.assert_allclose(it.w[i][0].numpy(), w, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(it.z[i][0].numpy(), ref.z[i], rtol=1e-10, atol=1e-12)
        if i <= depth:
            np.testing.assert_allclose(it.a[i][0].numpy(), ref.a[i], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(it.u[0].numpy(), ref.u, rtol=1e-10, atol=1e-12)
    ours = dladmm.augmented_lagrangian(it, yt, knobs).item()
    assert ours == pytest.approx(ref.lagrangian(y.T), rel=1e-10)


def test_a_backtracked_step_lies_under_its_quadratic_model_and_doubles_only_as_needed():
    rng = np.random.default_rng(2)
    a = torch.as_tensor(rng.normal(size=(3, 5, 7)))
    target = torch.as_tensor(rng.normal(size=(3, 4, 7)))
    w = torch.as_tensor(rng.normal(size=(3, 4, 5))) * torch.tensor([1.0, 10.0, 0.1])[:, None, None]

    def f(v):
        return 0.5 * ((target - w @ v) ** 2).sum(dim=(-2, -1))

    grad = -w.mT @ (target - w @ a)
    new = dladmm.backtrack(a, grad, f, 1.0)
    s = grad.flatten(1).norm(dim=1) / (a - new).flatten(1).norm(dim=1)  # the accepted curvature
    lipschitz = torch.linalg.matrix_norm(w.mT @ w, ord=2)
    assert torch.all(f(new) <= f(a))
    # each trial doubles its own curvature from 1, and stops below twice the Lipschitz
    # bound (past which the model always holds); the flat third trial needs no doubling
    assert torch.equal(torch.log2(s), torch.log2(s).round())
    assert torch.all(s <= torch.clamp(2 * lipschitz, min=1.0) * (1 + 1e-9))
    assert s[1] > s[0] > s[2] == 1.0


def test_batched_trials_equal_separate_runs():
    x, y, _ = problem(2)
    gens = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
    draws = [init_weights("msra", [2, 6, 6, 2], generator=g) for g in gens]
    batched = [torch.stack(layer) for layer in zip(*draws, strict=True)]
    together = dladmm.fit(x, y, batched, epochs=4, **KNOBS)
    for k, weights in enumerate(draws):
        alone = dladmm.fit(x, y, weights, epochs=4, **KNOBS)
        for w_all, w_one in zip(together.weights, alone.weights, strict=True):
            assert close(w_all[k], w_one, 1e-10)
        for key, values in alone.history.items():
            if key != "epoch_time_s":
                assert close(together.history[key][:, k], values, 1e-10), key


def test_each_iteration_records_the_metrics_admm_records():
    x, y, weights = problem(2)
    result = dladmm.fit(x, y, weights, epochs=3, **KNOBS)
    expected = {"aug_lagrangian", "train_mse", "residual/layer_1", "residual/layer_3",
                "saturation/layer_1", "saturation/layer_2"}  # fmt: skip
    assert expected <= set(result.history)
    assert result.history["train_mse"].shape == (3,)
    assert torch.all(result.history["residual/layer_3"] > 0)


def test_training_lowers_the_error_of_the_starting_net():
    x, y, weights = problem(2, n=60)
    first = dladmm.fit(x, y, weights, epochs=1, **KNOBS).history["train_mse"][0]
    last = dladmm.fit(x, y, weights, epochs=40, **KNOBS).history["train_mse"][-1]
    assert last < 0.5 * first


@pytest.mark.parametrize("key", ["rho", "nu", "theta", "tau"])
def test_a_setting_that_is_not_positive_is_refused_in_one_line(key):
    with pytest.raises(SettingError, match=f"solver.{key} must be positive, got 0.0"):
        DLADMM(**{key: 0.0})


def test_a_sigmoid_net_is_refused_in_one_line():
    x, y, weights = problem(1)
    with pytest.raises(ValueError, match="dlADMM trains ReLU nets only, got activation 'sigmoid'"):
        dladmm.fit(x, y, weights, activation="sigmoid", epochs=1, **KNOBS)
