"""The readable ADMM iteration (admmlab.solvers.admm_reference) against the fast path and
against the NumPy implementation of docs/algorithm.md."""

import pytest
import torch

from admmlab.nets import init_weights
from admmlab.solvers.admm import fit
from admmlab.solvers.base import NonFiniteError
from numpy_admm import admm_reference

Tensor = torch.Tensor
EPOCHS = 5


def _problem(
    seed: int, *, depth: int, width: int = 4, n_samples: int = 40, d: int = 6, m: int = 1
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """A small regression task whose iterates float64 pins down to about 1e-13.

    Two implementations of the same iteration agree only as far as its systems let
    rounding through. More inputs than hidden units (``Ṽ_1`` has full row rank) and
    weights scaled so that the hidden outputs spread keep them well conditioned. (On
    test_admm.py's tasks, ``d = 2`` and lecun_gauss weights, ``λ = 0`` leaves the sigmoid
    weight systems with condition numbers up to 1e11, and the fast path, this one and
    NumPy's differ there by 1e-3 and more after a few iterations.)
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_samples, d, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * x).sum(dim=1, keepdim=True) * torch.linspace(1, 2, m, dtype=torch.float64)
    weights = init_weights("orth_gauss", [d, *[width] * depth, m], scale=3.0, generator=g)
    return x, y, weights


def _stacked(problems: list[tuple[Tensor, Tensor, list[Tensor]]]) -> list[Tensor]:
    return [torch.stack(layer) for layer in zip(*(w for _, _, w in problems), strict=True)]


def _max_relative(a: Tensor, b: Tensor) -> float:
    """``max|a − b| / max|b|``: every entry held to a share of the largest."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    assert a.shape == b.shape
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def _tolerance(depth: int, activation: str) -> float:
    """1e-12, except for three sigmoid layers: there, against an extended-precision run of
    tests/numpy_admm.py, each float64 implementation is itself up to 3e-12 off."""
    return 1e-10 if (depth, activation) == (3, "sigmoid") else 1e-12


def _assert_same_run(reference, fast, rel: float) -> None:
    """Equal weights and equal recorded curves (all but the wall-clock time)."""
    for got, want in zip(reference.weights, fast.weights, strict=True):
        assert _max_relative(got, want) <= rel
    assert list(reference.history) == list(fast.history)
    for name, curve in fast.history.items():
        if name != "epoch_time_s":
            assert _max_relative(reference.history[name], curve) <= rel, name


def _betas(depth: int) -> list[float]:
    return [0.5 + 0.25 * i for i in range(depth + 1)]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("lam", [0.0, 1e-3])
@pytest.mark.parametrize("batched", [False, True])
def test_reference_equals_fast_over_iterations(depth, activation, lam, batched) -> None:
    problems = [_problem(seed, depth=depth) for seed in (0, 1, 2)]
    if batched:
        x, y = torch.stack([p[0] for p in problems]), torch.stack([p[1] for p in problems])
        w = _stacked(problems)
    else:
        x, y, w = problems[0]
    kwargs = {"lam": lam, "beta": _betas(depth), "activation": activation, "epochs": EPOCHS}
    fast = fit(x, y, w, impl="fast", **kwargs)
    reference = fit(x, y, w, impl="reference", **kwargs)
    _assert_same_run(reference, fast, _tolerance(depth, activation))
    assert reference.history["train_mse"][-1].max() < reference.history["train_mse"][0].max()


def test_reference_equals_fast_with_shared_data_held_out_sets_and_classification() -> None:
    """Shared X̃ (no trial dimension in step 2's layer 1), test and validation sets, and
    more outputs than hidden units (the fast path's direct step-3 solve, not Woodbury)."""
    problems = [_problem(seed, depth=2, m=5) for seed in (3, 4)]
    x = problems[0][0]
    labels = torch.nn.functional.one_hot((x[:, :4] > 0).sum(dim=1), 5).double()
    kwargs = {
        "lam": 1e-4, "beta": 1.0, "epochs": EPOCHS, "classification": True,
        "X_test": x[:10], "Y_test": labels[:10], "X_val": x[10:], "Y_val": labels[10:],
    }  # fmt: skip
    fast = fit(x, labels, _stacked(problems), impl="fast", **kwargs)
    reference = fit(x, labels, _stacked(problems), impl="reference", **kwargs)
    assert {"train_acc", "test_acc", "val_mse"} <= set(reference.history)
    _assert_same_run(reference, fast, 1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("lam", [0.0, 1e-3])
def test_reference_equals_the_numpy_implementation(depth, activation, lam) -> None:
    x, y, w = _problem(depth, depth=depth)
    kwargs = {"lam": lam, "beta": _betas(depth), "activation": activation, "epochs": EPOCHS}
    result = fit(x, y, w, impl="reference", **kwargs)
    mse, weights = admm_reference(x.numpy().T, y.numpy().T, [t.numpy() for t in w], **kwargs)
    rel = _tolerance(depth, activation)
    assert _max_relative(result.history["train_mse"], torch.from_numpy(mse)) <= rel
    for got, want in zip(result.weights, weights, strict=True):
        assert _max_relative(got, torch.from_numpy(want)) <= rel


def test_reference_runs_in_the_weights_dtype() -> None:
    x, y, w = _problem(5, depth=2)
    w32 = [t.float() for t in w]
    result = fit(x, y, w32, lam=1e-2, beta=1.0, epochs=EPOCHS, impl="reference")
    assert all(t.dtype == torch.float32 for t in result.weights)
    fast = fit(x, y, w32, lam=1e-2, beta=1.0, epochs=EPOCHS, impl="fast")
    for got, want in zip(result.weights, fast.weights, strict=True):
        assert _max_relative(got, want) <= 1e-4


def test_reference_reports_a_non_finite_iterate_as_the_fast_path_does() -> None:
    x, y, w = _problem(0, depth=2)
    x[5, 0] = float("nan")
    errors = []
    for impl in ("fast", "reference"):
        with pytest.raises(NonFiniteError) as info:
            fit(x, y, w, lam=1e-6, beta=1.0, epochs=3, impl=impl)
        errors.append(str(info.value))
    assert errors[0] == errors[1] == "W_3 became non-finite at epoch 1 in trial(s) [0]"


def test_an_unknown_implementation_is_refused_in_one_line() -> None:
    x, y, w = _problem(0, depth=1)
    with pytest.raises(ValueError) as info:
        fit(x, y, w, lam=1e-6, beta=1.0, epochs=1, impl="fused")
    message = str(info.value)
    assert message == "solver.impl must be one of fast, reference, got 'fused'"
    assert "\n" not in message


def test_the_solver_settings_choose_the_implementation(monkeypatch) -> None:
    """``solver.impl`` reaches admm.fit (admmlab.solving)."""
    from types import SimpleNamespace

    from admmlab import solving
    from admmlab.solvers import admm
    from admmlab.solvers.settings import ADMM

    calls = []
    monkeypatch.setattr(admm, "fit", lambda *args, **kwargs: calls.append(kwargs))
    x, y, w = _problem(0, depth=1)
    data = SimpleNamespace(
        x_train=x, y_train=y, x_test=None, y_test=None, x_val=None, y_val=None,
        classification=False,
    )  # fmt: skip
    settings = ADMM(impl="reference")
    solving.run_solver(settings, data, w, activation="sigmoid", seeds=[0])
    assert calls[0]["impl"] == "reference"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reference_on_cuda_matches_the_cpu() -> None:
    x, y, w = _problem(5, depth=2)
    kwargs = {"lam": 1e-3, "beta": _betas(2), "epochs": EPOCHS, "impl": "reference"}
    cpu = fit(x, y, w, **kwargs)
    gpu = fit(x.cuda(), y.cuda(), [t.cuda() for t in w], **kwargs)
    assert gpu.weights[0].device.type == "cuda"
    for got, want in zip(gpu.weights, cpu.weights, strict=True):
        assert _max_relative(got.cpu(), want) <= 1e-12
