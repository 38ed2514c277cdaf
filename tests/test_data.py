"""Each synthetic task's targets match its formula; seeds fix the draws."""

import math

import pytest
import torch

from admmlab.data import load_dataset

OPTS = {"n_train": 400, "n_test": 300, "noise_std": 0.0, "val_fraction": 0.0}


def expected(name: str, x: torch.Tensor) -> torch.Tensor:
    """The formulas of docs/studies.md, written out independently."""
    out = []
    for row in x.tolist():
        if name == "square":
            out.append(row[0] ** 2)
        elif name == "product_gate":
            out.append(row[0] * row[1])
        else:
            r = math.hypot(*row)
            if name == "radial_piecewise":
                out.append(min(1.0, max(0.0, (1.0 - r) / 0.5)))
            else:
                out.append(max(0.0, 1 - r) ** 4 * (4 * r + 1))
    return torch.tensor(out, dtype=torch.float64).unsqueeze(1)


@pytest.mark.parametrize("name", ["square", "product_gate", "radial_piecewise", "radial_smooth"])
def test_targets_match_formula(name):
    d = load_dataset(name, seed=3, **OPTS)
    assert d.x_train.shape == (400, 1 if name == "square" else 2)
    assert d.x_test.shape[0] == 300 and d.kind == "regression"
    assert d.x_train.abs().max() <= 1
    torch.testing.assert_close(d.y_train, expected(name, d.x_train))
    torch.testing.assert_close(d.y_test, expected(name, d.x_test))


def test_noise_only_on_training_targets_of_learning_tasks():
    d = load_dataset("radial_smooth", seed=1, **{**OPTS, "noise_std": 0.05})
    residual = d.y_train - expected("radial_smooth", d.x_train)
    assert 0.04 < residual.std().item() < 0.06
    torch.testing.assert_close(d.y_test, expected("radial_smooth", d.x_test))
    clean = load_dataset("square", seed=1, **{**OPTS, "noise_std": 0.05})
    torch.testing.assert_close(clean.y_train, expected("square", clean.x_train))


def test_seed_fixes_the_draw():
    a, b = load_dataset("square", seed=5, **OPTS), load_dataset("square", seed=5, **OPTS)
    c = load_dataset("square", seed=6, **OPTS)
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_validation_split_comes_from_training_part():
    d = load_dataset("square", seed=0, **{**OPTS, "val_fraction": 0.25})
    assert d.x_train.shape[0] == 300 and d.x_val.shape[0] == 100
    torch.testing.assert_close(d.y_val, expected("square", d.x_val))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope", seed=0, **OPTS)
