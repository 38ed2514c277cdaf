"""SGD-type solvers lower the error; batched trials equal separate ones."""

import pytest
import torch

from admmlab.data import load_dataset
from admmlab.nets import init_weights
from admmlab.solvers import sgd
from admmlab.solvers.base import NonFiniteError

OPTS = {"n_train": 200, "n_test": 100, "noise_std": 0.0, "val_fraction": 0.0}


def setup(seed: int = 0, dims=(1, 20, 20, 1), scheme: str = "msra"):
    d = load_dataset("square", seed=seed, **OPTS)
    w = init_weights(scheme, list(dims), generator=torch.Generator().manual_seed(seed))
    return d, w


@pytest.mark.parametrize(
    ("method", "activation", "lr"),
    [("sgd", "relu", 0.1), ("sgdm", "relu", 0.05), ("adam", "relu", 1e-3), ("sgd", "sigmoid", 1.0)],
)
def test_training_lowers_the_error(method, activation, lr):
    d, w = setup(scheme="msra" if activation == "relu" else "xavier")
    r = sgd.fit(
        d.x_train,
        d.y_train,
        w,
        method=method,
        lr=lr,
        epochs=40,
        batch_size=20,
        activation=activation,
        X_test=d.x_test,
        Y_test=d.y_test,
        seeds=[0],
    )
    h = r.history
    assert h["train_mse"].shape == (40,)
    assert h["train_mse"][-1] < 0.2 * h["train_mse"][0]
    assert h["test_mse"][-1] < 0.2 * h["test_mse"][0]
    assert {"grad_norm/layer_1", "grad_norm/layer_3", "epoch_time_s"} <= set(h)
    assert torch.all(h["grad_norm/layer_1"] > 0)


def test_final_weights_reproduce_the_recorded_error():
    d, w = setup()
    r = sgd.fit(d.x_train, d.y_train, w, method="adam", lr=1e-3, epochs=5, activation="relu")
    from admmlab.nets import forward

    mse = (forward(r.weights, d.x_train, "relu") - d.y_train).square().sum() / 200
    assert mse.item() == pytest.approx(r.history["train_mse"][-1].item(), rel=1e-12)


@pytest.mark.parametrize("method", ["sgd", "sgdm", "adam"])
def test_batched_trials_equal_separate_runs(method):
    seeds = [0, 1, 2]
    draws = [setup(s) for s in seeds]
    x = torch.stack([d.x_train for d, _ in draws])
    y = torch.stack([d.y_train for d, _ in draws])
    ws = [torch.stack(layer) for layer in zip(*(w for _, w in draws), strict=True)]
    kw = {
        "method": method,
        "lr": 1e-2,
        "epochs": 12,
        "batch_size": 25,
        "lam": 1e-4,
        "activation": "sigmoid",
        "lr_every": 5,
    }
    batched = sgd.fit(x, y, ws, seeds=seeds, **kw)
    for k, (d, w) in enumerate(draws):
        alone = sgd.fit(d.x_train, d.y_train, w, seeds=[seeds[k]], **kw)
        torch.testing.assert_close(
            batched.history["train_mse"][:, k], alone.history["train_mse"], rtol=1e-9, atol=0
        )
        for wb, wa in zip(batched.weights, alone.weights, strict=True):
            torch.testing.assert_close(wb[k], wa, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_a_trial_gone_non_finite_stops_alone_and_the_others_run_as_if_alone(method):
    seeds = [0, 1]
    draws = [setup(s) for s in seeds]
    x = torch.stack([d.x_train for d, _ in draws])
    y = torch.stack([d.y_train for d, _ in draws])
    y[1, 7, 0] = float("nan")  # trial 1's data: its first epoch's loss and steps go NaN
    ws = [torch.stack(layer) for layer in zip(*(w for _, w in draws), strict=True)]
    kw = {"method": method, "lr": 1e-2, "epochs": 4, "batch_size": 25, "activation": "relu"}
    batched = sgd.fit(x, y, ws, seeds=seeds, **kw)
    assert batched.diverged == {1: "train_mse became non-finite at epoch 1"}
    alone = sgd.fit(x[0], y[0], [w[0] for w in ws], seeds=[0], **kw)
    for name, curve in alone.history.items():
        if name != "epoch_time_s":
            torch.testing.assert_close(batched.history[name][:, 0], curve, rtol=1e-9, atol=0)
        assert torch.isnan(batched.history[name][:, 1]).all(), name
    for wb, wa, w0 in zip(batched.weights, alone.weights, ws, strict=True):
        torch.testing.assert_close(wb[0], wa, rtol=1e-9, atol=1e-12)
        assert torch.equal(wb[1], w0[1])  # trial 1 keeps its last finite (initial) weights


def test_learning_rate_schedule_is_step_exponential():
    d, w = setup()
    r = sgd.fit(
        d.x_train,
        d.y_train,
        w,
        method="sgd",
        lr=0.5,
        lr_gamma=0.9,
        lr_every=10,
        epochs=25,
        activation="relu",
    )
    rates = r.history["lr"]
    assert rates[9].item() == 0.5
    assert rates[10].item() == pytest.approx(0.45) and rates[24].item() == pytest.approx(0.405)
    still = sgd.fit(d.x_train, d.y_train, w, method="sgd", lr=1e-300, epochs=2, activation="relu")
    torch.testing.assert_close(still.weights[0], w[0])


def test_divergence_raises_with_history_so_far():
    d, w = setup()
    with pytest.raises(NonFiniteError) as err:
        sgd.fit(d.x_train, d.y_train, w, method="sgd", lr=1e8, epochs=20, activation="relu")
    e = err.value
    assert e.epoch >= 1 and e.trials == [0]
    assert e.partial is not None and len(e.partial.history["train_mse"]) == e.epoch


def test_batch_size_larger_than_training_set():
    d, w = setup()
    with pytest.raises(ValueError, match="batch_size"):
        sgd.fit(d.x_train, d.y_train, w, lr=0.1, epochs=1, batch_size=500)


def _max_relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("method", ["sgd", "sgdm", "adam"])
@pytest.mark.parametrize("batched", [True, False])
def test_fast_step_equals_the_autograd_reference_over_epochs(activation, method, batched):
    seeds = [0, 1, 2] if batched else [0]
    draws = [setup(s, dims=(1, 12, 9, 7, 1)) for s in seeds]
    x, y = torch.stack([d.x_train for d, _ in draws]), torch.stack([d.y_train for d, _ in draws])
    ws = [torch.stack(layer) for layer in zip(*(w for _, w in draws), strict=True)]
    if not batched:
        x, y, ws = x[0], y[0], [w[0] for w in ws]
    kw = dict(
        method=method, lr=1e-3 if method == "adam" else 0.02, epochs=6, batch_size=20,
        activation=activation, lam=1e-4, momentum=0.5, lr_gamma=0.8, lr_every=2,
        seeds=seeds, X_test=x, Y_test=y,
    )  # fmt: skip
    fast = sgd.fit(x, y, ws, impl="fast", **kw)
    reference = sgd.fit(x, y, ws, impl="reference", **kw)
    for f, r in zip(fast.weights, reference.weights, strict=True):
        assert f.shape == r.shape
        assert _max_relative(f, r) < 1e-12
    assert set(fast.history) == set(reference.history)
    for name, curve in reference.history.items():
        if name != "epoch_time_s":
            assert _max_relative(fast.history[name], curve) < 1e-12, name
    assert reference.history["train_mse"][-1].max() < reference.history["train_mse"][0].max()


def test_fast_step_leaves_the_callers_weights_alone():
    d, w = setup(dims=(1, 6, 1))
    before = [t.clone() for t in w]
    sgd.fit(d.x_train, d.y_train, w, method="sgd", lr=0.1, epochs=2, activation="relu")
    assert all(torch.equal(a, b) for a, b in zip(w, before, strict=True))


def test_an_unknown_step_implementation_is_refused_in_one_line():
    d, w = setup(dims=(1, 4, 1))
    message = r"solver.impl must be one of fast, reference, got 'fused'"
    with pytest.raises(ValueError, match=message):
        sgd.fit(d.x_train, d.y_train, w, lr=0.1, epochs=1, impl="fused")


GROWTH_SCRIPT = """
import resource, sys, torch
import admmlab
from admmlab.data import load_dataset
from admmlab.nets import init_weights
from admmlab.solvers import sgd

K = 20
d = load_dataset("square", seed=0, n_train=1000, n_test=1000, noise_std=0.0, val_fraction=0.0)
ws = [init_weights("xavier", [1, 60, 60, 1], scale=8.6, generator=torch.Generator().manual_seed(s))
      for s in range(K)]
w = [torch.stack(layer) for layer in zip(*ws)]
x, y = d.x_train.expand(K, -1, -1), d.y_train.expand(K, -1, -1)
peaks = {}

def record(epoch, metrics):
    peaks[epoch] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

sgd.fit(x, y, w, method="sgd", lr=0.042, lr_gamma=0.9989, epochs=100, activation="sigmoid",
        seeds=list(range(K)), X_test=x, Y_test=y, callback=record, impl=sys.argv[1])
print(peaks[100] - peaks[20])
"""


@pytest.mark.slow
def test_a_long_run_does_not_grow_its_memory():
    """The tuned SGD (sigmoid) preset's setting with the autograd step, whose allocations
    fragment glibc's heap most: with admmlab's fixed mmap threshold the resident set
    levels off (with glibc's default, ``ADMMLAB_MMAP_THRESHOLD=0``, it grew here by
    4-13 MB an epoch; admmlab.allocator)."""
    import os
    import subprocess
    import sys

    from admmlab.allocator import ENV

    env = {k: v for k, v in os.environ.items() if k != ENV} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", GROWTH_SCRIPT, "reference"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 100  # MB over 80 epochs
