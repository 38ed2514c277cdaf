"""The ADMM solver against the plain NumPy reference of docs/algorithm.md, and its contract."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from admmlab.nets import forward, get_activation, hidden_forward, init_weights
from admmlab.solvers import sgd
from admmlab.solvers.admm import fit
from admmlab.solvers.base import NonFiniteError
from conftest import poison_output
from numpy_admm import admm_reference

Tensor = torch.Tensor


def _problem(
    seed: int, *, depth: int, width: int, n_samples: int = 30, d: int = 2, m: int = 1
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """A small smooth regression task and lecun_gauss weights, all from one seed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_samples, d, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * x).sum(dim=1, keepdim=True) * torch.linspace(1, 2, m, dtype=torch.float64)
    weights = init_weights("lecun_gauss", [d, *[width] * depth, m], generator=g)
    return x, y, weights


def _square_task(width: int = 100) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The paper's demo: y = x² on 1000 points of [−1, 1], MSRA init scaled by 8."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1000, 1, generator=g, dtype=torch.float64) * 2 - 1
    return x, x**2, init_weights("msra", [1, width, width, 1], scale=8.0, generator=g)


def _close(a: Tensor | np.ndarray, b: Tensor | np.ndarray, rel: float) -> bool:
    """``‖a − b‖ ≤ rel · ‖b‖`` (Frobenius), so exact zeros compare equal too."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.linalg.norm(a - b) <= rel * np.linalg.norm(b))


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("per_layer_beta", [False, True])
def test_matches_numpy_reference(depth: int, activation: str, per_layer_beta: bool) -> None:
    x, y, w = _problem(depth, depth=depth, width=5)
    beta = [0.5 + 0.25 * i for i in range(depth + 1)] if per_layer_beta else 0.5
    kwargs = {"lam": 1e-3, "beta": beta, "activation": activation, "epochs": 5}
    result = fit(x, y, w, **kwargs)
    ref_mse, ref_w = admm_reference(x.numpy().T, y.numpy().T, [t.numpy() for t in w], **kwargs)
    assert _close(result.history["train_mse"], ref_mse, 1e-10)
    for got, want in zip(result.weights, ref_w, strict=True):
        assert _close(got, want, 1e-10)


def test_matches_numpy_reference_with_more_outputs_than_hidden_units() -> None:
    """m ≥ n takes the direct n × n solve in step 3 instead of Woodbury."""
    x, y, w = _problem(7, depth=2, width=4, m=5)
    kwargs = {"lam": 1e-3, "beta": [0.5, 1.0, 2.0], "epochs": 5}
    result = fit(x, y, w, **kwargs)
    ref_mse, ref_w = admm_reference(x.numpy().T, y.numpy().T, [t.numpy() for t in w], **kwargs)
    assert _close(result.history["train_mse"], ref_mse, 1e-10)
    for got, want in zip(result.weights, ref_w, strict=True):
        assert _close(got, want, 1e-10)


@pytest.mark.parametrize("shared_data", [False, True])
def test_batched_trials_equal_separate_runs(shared_data: bool) -> None:
    problems = [_problem(seed, depth=2, width=6) for seed in (11, 12, 13)]
    if shared_data:
        problems = [(problems[0][0], problems[0][1], w) for _, _, w in problems]
    kwargs = {"lam": 1e-3, "beta": [0.5, 1.0, 2.0], "epochs": 6}
    x = problems[0][0] if shared_data else torch.stack([p[0] for p in problems])
    y = problems[0][1] if shared_data else torch.stack([p[1] for p in problems])
    stacked = [torch.stack(ws) for ws in zip(*(p[2] for p in problems), strict=True)]
    batched = fit(x, y, stacked, **kwargs)
    for k, (xk, yk, wk) in enumerate(problems):
        single = fit(xk, yk, wk, **kwargs)
        for name, curve in single.history.items():
            if name != "epoch_time_s":
                assert _close(batched.history[name][:, k], curve, 1e-9), name
        for got, want in zip(batched.weights, single.weights, strict=True):
            assert _close(got[k], want, 1e-9)


class _FreshArrays(TorchDispatchMode):
    """Counts, per epoch, the operations that return a new array of at least ``size`` entries."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.epoch, self.fresh = size, 0, Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, Tensor)
        }
        for t in tree_flatten(out)[0]:
            new = isinstance(t, Tensor) and t.untyped_storage().data_ptr() not in given
            if new and t.untyped_storage().nbytes() >= self.size * t.element_size():
                self.fresh[self.epoch] += 1
        return out


@pytest.mark.parametrize("n_trials", [None, 3])
def test_iterations_after_the_first_allocate_no_n_by_N_array(n_trials: int | None) -> None:
    """The pool keeps the resident set at the live arrays (benchmarks/memory.py)."""
    n_samples, widths = 400, [9, 7, 8]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_samples, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = x.prod(dim=1, keepdim=True)
    draws = [init_weights("msra", [2, *widths, 1], generator=g) for _ in range(n_trials or 1)]
    weights = draws[0] if n_trials is None else [torch.stack(w) for w in zip(*draws, strict=True)]
    mode = _FreshArrays(size=min(widths) * n_samples)

    def next_epoch(epoch: int, metrics: dict) -> None:
        mode.epoch = epoch

    with mode:
        fit(x, y, weights, lam=1e-4, beta=1.0, epochs=4, callback=next_epoch)
    assert mode.fresh[0] > 0  # the check sees the arrays the first iteration makes
    assert [mode.fresh[e] for e in (1, 2, 3)] == [0, 0, 0]


def test_square_task_converges() -> None:
    x, y, w = _square_task()
    result = fit(x, y, w, lam=1e-6, beta=1.0, epochs=50)
    h = result.history
    assert result.summary["best_train_mse"] <= 1e-8
    assert torch.isfinite(h["aug_lagrangian"]).all()
    total_residual = sum(h[f"residual/layer_{i}"] ** 2 for i in (1, 2, 3)).sqrt()
    assert total_residual[-10:].max() < 1e-3 * total_residual[0]
    # Theorem 4: 𝓛 converges; by the last epochs it barely moves.
    tail = h["aug_lagrangian"][-10:]
    assert (tail.max() - tail.min()) < 1e-2 * tail.abs().max()


def test_history_keys_shapes_and_callback() -> None:
    problems = [_problem(seed, depth=2, width=5) for seed in (1, 2)]
    x, y = problems[0][0], problems[0][1]
    stacked = [torch.stack(ws) for ws in zip(*(p[2] for p in problems), strict=True)]
    seen = []
    result = fit(
        x, y, stacked, lam=1e-3, beta=1.0, epochs=4, X_test=x[:10], Y_test=y[:10],
        X_val=x[10:], Y_val=y[10:], callback=lambda epoch, metrics: seen.append((epoch, metrics)),
    )  # fmt: skip
    expected = {
        "train_mse", "test_mse", "val_mse", "aug_lagrangian", "epoch_time_s",
        "residual/layer_1", "residual/layer_2", "residual/layer_3",
        "saturation/layer_1", "saturation/layer_2",
    }  # fmt: skip
    assert set(result.history) == expected
    assert all(v.shape == (4, 2) for v in result.history.values())
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4]
    assert all(v.shape == (2,) for v in seen[0][1].values())
    assert [w.shape for w in result.weights] == [w.shape for w in stacked]
    assert torch.isfinite(result.history["aug_lagrangian"]).all()
    saturation = result.history["saturation/layer_2"]
    assert ((saturation >= 0) & (saturation <= 1)).all()
    times = result.history["epoch_time_s"]
    assert (times[:, 0] == times[:, 1]).all() and (times > 0).all()


def test_unbatched_call_keeps_shapes_and_test_mse_is_the_network_error() -> None:
    x, y, w = _problem(3, depth=1, width=5)
    result = fit(x, y, w, lam=1e-3, beta=1.0, epochs=3, X_test=x, Y_test=y)
    assert all(v.shape == (3,) for v in result.history.values())
    assert [t.shape for t in result.weights] == [t.shape for t in w]
    assert _close(result.history["test_mse"], result.history["train_mse"], 1e-12)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturation_and_train_mse_are_those_of_the_network(activation: str) -> None:
    x, y, w = _square_task(width=20)
    result = fit(x, y, w, lam=1e-6, beta=1.0, activation=activation, epochs=3)
    deriv = get_activation(activation).deriv
    for i, z in enumerate(hidden_forward(result.weights, x, activation), start=1):
        expected = (deriv(z) < 1e-3).double().mean()
        assert result.history[f"saturation/layer_{i}"][-1] == expected
    assert result.history["saturation/layer_2"][-1] > 0
    f = forward(result.weights, x, activation)
    assert _close(result.history["train_mse"][-1], ((f - y) ** 2).sum() / len(x), 1e-12)


def test_classification_metrics() -> None:
    x, _, w = _problem(4, depth=1, width=5, m=3)
    labels = torch.nn.functional.one_hot((x[:, 0] > 0).long() + (x[:, 1] > 0).long(), 3)
    result = fit(x, labels.double(), w, lam=1e-3, beta=1.0, epochs=3, classification=True)
    acc = result.history["train_acc"]
    assert acc.shape == (3,) and ((acc >= 0) & (acc <= 1)).all()


def test_relu_is_refused() -> None:
    x, y, w = _problem(0, depth=1, width=3)
    with pytest.raises(
        ValueError, match=r"ADMM needs a smooth activation \(sigmoid or tanh\), got 'relu'"
    ):
        fit(x, y, w, lam=1e-6, beta=1.0, activation="relu", epochs=1)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"beta": [1.0, 1.0]}, "3 values"),
        ({"beta": [1.0, 0.0, 1.0]}, r"solver.beta must be positive \(every entry\)"),
        ({"lam": -1.0}, "solver.lam must be non-negative, got -1.0"),
        ({"epochs": 0}, "epochs must be"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    x, y, w = _problem(0, depth=2, width=3)
    kwargs = {"lam": 1e-6, "beta": 1.0, "epochs": 1} | settings
    with pytest.raises(ValueError, match=message):
        fit(x, y, w, **kwargs)


def _solve(solver: str, x, y, w, **kwargs):
    if solver == "admm":
        return fit(x, y, w, lam=1e-6, beta=1.0, epochs=2, **kwargs)
    return sgd.fit(x, y, w, lr=0.01, epochs=2, batch_size=10, **kwargs)


def _wide(t: Tensor, columns: int) -> Tensor:
    return t[..., :1].repeat_interleave(columns, dim=-1)


BAD_SHAPES = [
    (lambda x, y, w: (_wide(x, 3), y, w, {}), r"X has 3 features, but W_1 of shape \(3, 3\)"),
    (lambda x, y, w: (x, _wide(y, 2), w, {}), r"Y has 2 columns, but the output layer W_3"),
    (lambda x, y, w: (x, y[:20], w, {}), r"X has 30 samples and Y 20"),
    (lambda x, y, w: (x, y[:, 0], w, {}), r"Y must be \(N, m\) or \(K, N, m\), got \(30,\)"),
    (lambda x, y, w: (x, y, [w[0], w[0]], {}), r"W_2 of shape \(3, 3\) does not follow W_1"),
    (lambda x, y, w: (x, y, w, {"X_test": x}), r"X_test is given without Y_test"),
    (lambda x, y, w: (x, y, w, {"X_val": x[:, :1], "Y_val": y}), r"X_val has 1 features"),
    (lambda x, y, w: (x.expand(3, -1, -1), y.expand(2, -1, -1), w, {}), r"number of trials"),
    (
        lambda x, y, w: (x, y, [w[0].expand(3, -1, -1), *(t.expand(2, -1, -1) for t in w[1:])], {}),
        r"number of trials",
    ),
    (
        lambda x, y, w: (x, y, w, {"X_test": x.expand(2, -1, -1), "Y_test": y.expand(2, -1, -1)}),
        r"a held-out set has a trial dimension K, but X, Y and the weights do not",
    ),
]


@pytest.mark.parametrize("solver", ["admm", "sgd"])
@pytest.mark.parametrize(("bad", "message"), BAD_SHAPES)
def test_inputs_that_disagree_with_the_network_are_refused_in_one_line(solver, bad, message):
    x, y, w = _problem(0, depth=2, width=3)
    x, y, w, held_out = bad(x, y, w)
    with pytest.raises(ValueError, match=message) as err:
        _solve(solver, x, y, w, **held_out)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("solver", ["admm", "sgd"])
def test_numpy_arrays_are_taken_as_they_are(solver):
    x, y, w = _problem(0, depth=2, width=3)
    as_numpy = [t.numpy() for t in w]
    from_numpy = _solve(solver, x.numpy(), y.numpy(), as_numpy, X_test=x.numpy(), Y_test=y.numpy())
    from_torch = _solve(solver, x, y, w, X_test=x, Y_test=y)
    assert set(from_numpy.history) == set(from_torch.history)
    for name, values in from_torch.history.items():
        if name != "epoch_time_s":
            assert torch.equal(from_numpy.history[name], values), name
    pairs = zip(from_numpy.weights, from_torch.weights, strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("solver", ["admm", "sgd"])
def test_unbatched_weights_start_every_trial_of_batched_data(solver):
    x, y, w = _problem(0, depth=2, width=3)
    same_batches = {"seeds": [5, 5]} if solver == "sgd" else {}
    both = _solve(solver, x.expand(2, -1, -1), y.expand(2, -1, -1), w, **same_batches)
    one = _solve(solver, x, y, w, **({"seeds": [5]} if solver == "sgd" else {}))
    assert both.weights[0].shape == (2, 3, 3)
    for k in range(2):
        assert _close(both.history["train_mse"][:, k], one.history["train_mse"], 1e-9)


@pytest.mark.parametrize("solver", ["admm", "sgd"])
def test_inputs_are_taken_in_the_weights_dtype(solver):
    x, y, w = _problem(0, depth=2, width=3)
    fit32 = _solve(solver, x.float().numpy(), y.float().numpy(), w)
    assert fit32.history["train_mse"].dtype == torch.float64
    assert _close(
        fit32.history["train_mse"], _solve(solver, x.float(), y.float(), w).history["train_mse"], 0
    )


def test_nan_in_data_is_reported_at_first_epoch() -> None:
    x, y, w = _problem(0, depth=2, width=3)
    x[5, 0] = float("nan")
    with pytest.raises(NonFiniteError) as info:
        fit(x, y, w, lam=1e-6, beta=1.0, epochs=3)
    err = info.value
    assert (err.quantity, err.epoch, err.trials) == ("W_3", 1, [0])
    # The bad epoch is recorded, NaN, as every stopped trial's metrics read.
    assert err.partial is not None and err.partial.history["train_mse"].isnan().all()
    assert err.partial.history["train_mse"].shape == (1,)


def _two_trials() -> tuple[Tensor, Tensor, list[Tensor], list[list[Tensor]]]:
    problems = [_problem(seed, depth=2, width=4) for seed in (1, 2)]
    stacked = [torch.stack(ws) for ws in zip(*(p[2] for p in problems), strict=True)]
    return problems[0][0], problems[0][1], stacked, [p[2] for p in problems]


def test_a_diverging_trial_stops_alone_and_the_others_run_as_if_alone(monkeypatch) -> None:
    x, y, stacked, single_weights = _two_trials()
    kwargs = {"lam": 1e-6, "beta": 1.0, "epochs": 5}
    alone = [fit(x, y, w, **kwargs) for w in single_weights]
    before = fit(x, y, single_weights[1], **{**kwargs, "epochs": 2})
    poison_output(monkeypatch, {1: 3})
    result = fit(x, y, stacked, **kwargs)

    assert result.diverged == {1: "V_3 became non-finite at epoch 3"}
    for name, curve in alone[0].history.items():
        if name != "epoch_time_s":
            assert _close(result.history[name][:, 0], curve, 1e-9), name
    for name, curve in result.history.items():
        assert torch.isnan(curve[2:, 1]).all(), name
    assert _close(result.history["train_mse"][:2, 1], before.history["train_mse"], 1e-9)
    for got, want, stopped in zip(result.weights, alone[0].weights, before.weights, strict=True):
        assert _close(got[0], want, 1e-9)
        assert _close(got[1], stopped, 1e-9)  # its last finite weights, from epoch 2


def test_a_trial_diverging_in_the_first_iteration_keeps_its_initial_weights(
    monkeypatch,
) -> None:
    """The fast iteration writes its first weights over the initial ones in place."""
    x, y, stacked, single_weights = _two_trials()
    initial = [w.clone() for w in single_weights[1]]
    poison_output(monkeypatch, {1: 1})
    result = fit(x, y, stacked, lam=1e-6, beta=1.0, epochs=3)
    assert result.diverged == {1: "V_3 became non-finite at epoch 1"}
    for got, want in zip(result.weights, initial, strict=True):
        assert torch.equal(got[1], want)


def test_nan_in_every_trial_raises_naming_quantity_epoch_trial_and_keeps_history(
    monkeypatch,
) -> None:
    x, y, stacked, _ = _two_trials()
    poison_output(monkeypatch, {1: 3, 0: 4})
    with pytest.raises(NonFiniteError) as info:
        fit(x, y, stacked, lam=1e-6, beta=1.0, epochs=5)
    err = info.value
    assert (err.quantity, err.epoch, err.trials) == ("V_3", 4, [0])
    assert "epoch 4" in str(err)
    partial = err.partial
    assert partial is not None
    assert partial.diverged == {1: "V_3 became non-finite at epoch 3"}
    assert partial.history["train_mse"].shape == (4, 2)  # the bad epoch recorded, NaN
    assert torch.isnan(partial.history["train_mse"][2, 1])
    assert torch.isnan(partial.history["train_mse"][3]).all()
    assert torch.isfinite(partial.history["train_mse"][2, 0])
    assert all(torch.isfinite(w).all() for w in partial.weights)


def test_float32_names_the_failed_factorisation_and_runs_at_a_larger_lam() -> None:
    x, y, w = _square_task(width=300)
    x, y, w = x.float(), y.float(), [t.float() for t in w]
    with pytest.raises(NonFiniteError) as info:
        fit(x, y, w, lam=1e-6, beta=1.0, epochs=3)
    assert info.value.quantity == "W_3"
    assert "float32" in str(info.value) and "lam=1e-06" in str(info.value)
    fitted = fit(x, y, w, lam=1e-2, beta=1.0, epochs=5)
    assert fitted.weights[0].dtype == torch.float32
    assert fitted.history["train_mse"][-1] < 1e-2 * fitted.history["train_mse"][0]


def test_float64_failure_has_no_precision_hint() -> None:
    x, y, w = _problem(0, depth=2, width=3)
    x[5, 0] = float("nan")
    with pytest.raises(NonFiniteError) as info:
        fit(x, y, w, lam=1e-6, beta=1.0, epochs=3)
    assert str(info.value) == "W_3 became non-finite at epoch 1 in trial(s) [0]"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x, y, w = _problem(5, depth=2, width=8)
    kwargs = {"lam": 1e-3, "beta": [0.5, 1.0, 2.0], "epochs": 5}
    cpu = fit(x, y, w, **kwargs)
    gpu = fit(x.cuda(), y.cuda(), [t.cuda() for t in w], **kwargs)
    assert gpu.weights[0].device.type == "cuda"
    assert _close(gpu.history["train_mse"].cpu(), cpu.history["train_mse"], 1e-9)
    for got, want in zip(gpu.weights, cpu.weights, strict=True):
        assert _close(got.cpu(), want, 1e-9)
