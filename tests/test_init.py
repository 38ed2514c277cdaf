"""Each initialisation has the right shape, mean, variance or orthogonality."""

import importlib
import math

import pytest
import torch

from admmlab.nets import INIT_SCHEMES, forward, forward_no_grad, get_activation, init_weights

DIMS = [40, 300, 200, 3]


def hidden(weights):
    """The weight part of every layer (bias column dropped)."""
    return [w[:, :-1] for w in weights]


@pytest.mark.parametrize("scheme", sorted(INIT_SCHEMES))
def test_shapes_and_zero_bias(scheme):
    ws = init_weights(scheme, DIMS, generator=torch.Generator().manual_seed(0))
    assert [tuple(w.shape) for w in ws] == [(300, 41), (200, 301), (3, 201)]
    assert all(w.dtype == torch.float64 for w in ws)
    assert all(torch.all(w[:, -1] == 0) for w in ws)


@pytest.mark.parametrize(
    ("scheme", "variance"),
    [
        ("lecun_uniform", lambda fi, fo, out: 1 / fi),
        ("lecun_gauss", lambda fi, fo, out: 1 / fi),
        ("xavier", lambda fi, fo, out: 2 / (fi + fo)),
        ("msra", lambda fi, fo, out: (1 if out else 2) / fo),
    ],
)
def test_random_schemes_have_the_table_variance(scheme, variance):
    scale = 3.0
    ws = init_weights(scheme, DIMS, scale=scale, generator=torch.Generator().manual_seed(1))
    for i, w in enumerate(hidden(ws)[:2]):
        fan_out, fan_in = w.shape
        want = scale**2 * variance(fan_in, fan_out, False)
        assert abs(w.mean().item()) < 4 * math.sqrt(want / w.numel())
        assert w.var().item() == pytest.approx(want, rel=0.05), f"layer {i + 1}"
    out = hidden(ws)[2]
    assert out.var().item() == pytest.approx(
        scale**2 * variance(out.shape[1], out.shape[0], True), rel=0.15
    )


def test_uniform_schemes_are_bounded():
    w = hidden(init_weights("lecun_uniform", DIMS, generator=torch.Generator().manual_seed(2)))[0]
    assert w.abs().max() <= math.sqrt(3 / 40) and w.abs().max() > 0.95 * math.sqrt(3 / 40)


@pytest.mark.parametrize("scheme", ["orth_uniform", "orth_gauss"])
def test_orthogonal_schemes(scheme):
    s = 2.0
    ws = hidden(init_weights(scheme, [5, 8, 3], scale=s, generator=torch.Generator()))
    tall, wide = ws  # (8, 5): WᵀW = s²I;  (3, 8): WWᵀ = s²I
    torch.testing.assert_close(tall.T @ tall, s**2 * torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(wide @ wide.T, s**2 * torch.eye(3, dtype=torch.float64))


def test_zero_and_errors():
    assert all(torch.all(w == 0) for w in init_weights("zero", DIMS))
    with pytest.raises(ValueError, match="unknown init scheme"):
        init_weights("he", DIMS)


def test_generator_fixes_weights_and_forward_shapes():
    a = init_weights("msra", DIMS, generator=torch.Generator().manual_seed(7))
    b = init_weights("msra", DIMS, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    x = torch.rand(10, 40, dtype=torch.float64)
    assert forward(a, x, "sigmoid").shape == (10, 3)
    batched = [torch.stack([w, w]) for w in a]
    torch.testing.assert_close(forward(batched, x, "tanh")[1], forward(a, x, "tanh"))


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize(
    ("k_w", "k_x"), [(None, None), (3, 3), (3, None), (None, 3)], ids=["plain", "K", "Kw", "Kx"]
)
@pytest.mark.parametrize(
    "group_bytes", [1 << 20, 11 * 9 * 8, 2 * 11 * 9 * 8], ids=["all", "1", "2"]
)
def test_the_evaluation_forward_equals_the_forward(act, k_w, k_x, group_bytes, monkeypatch):
    """Two take-turns buffers instead of one array per layer, the trials in cache-sized
    groups (one trial's activations are 11 × 9 doubles here; groups of 1 and 2 leave a
    ragged last one), each hidden bias added after its product: equal to rounding (BLAS
    may block a product differently when it writes into a given buffer), for every mix
    of a trial dimension on weights and data."""
    monkeypatch.setattr(importlib.import_module("admmlab.nets.forward"), "CACHE_BYTES", group_bytes)
    g = torch.Generator().manual_seed(0)
    dims = [2, 7, 5, 9, 3]
    w = init_weights("xavier", dims, generator=g)
    if k_w:
        w = [torch.stack([t * (1 + 0.1 * j) for j in range(k_w)]) for t in w]
    x = torch.randn(*((k_x,) if k_x else ()), 11, 2, generator=g, dtype=torch.float64)
    expected = forward(w, x, act)
    torch.testing.assert_close(forward_no_grad(w, x, act), expected, rtol=1e-13, atol=1e-15)
    v = torch.ones(*x.shape[:-1], 9, dtype=torch.float64)  # an output layer alone
    torch.testing.assert_close(forward_no_grad(w[-1:], v, act), forward(w[-1:], v, act))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_add_fn_writes_sigma_of_the_biased_input_into_it(name):
    """ReLU's one-pass kernel gives the two-pass numbers bit for bit; the bias broadcasts."""
    act = get_activation(name)
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        z = torch.randn(3, 5, 4, generator=g).to(dtype)
        b = torch.randn(3, 1, 4, generator=g).to(dtype)
        expected = act.fn(z + b)
        out = act.add_fn_(z, b)
        assert out.data_ptr() == z.data_ptr()
        assert torch.equal(out, expected)
