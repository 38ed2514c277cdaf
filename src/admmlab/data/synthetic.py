"""The four synthetic tasks of docs/studies.md.

Approximation tasks (``square``, ``product_gate``) are noise-free; learning tasks
(the two radial ones) add Gaussian noise to the training targets only. Every
draw comes from the trial's generator, so a seed fixes the data.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from admmlab.data.base import Dataset, split_validation

Tensor = torch.Tensor

# Platform's choice for the lost piecewise-radial formula (docs/studies.md).
PIECEWISE_R0, PIECEWISE_R = 0.5, 1.0


def square(x: Tensor) -> Tensor:
    """``y = x²``."""
    return x.square()


def product_gate(x: Tensor) -> Tensor:
    """``y = x₁ x₂``."""
    return x[:, :1] * x[:, 1:2]


def radial_piecewise(x: Tensor) -> Tensor:
    """``g(r) = clip((R − r)/(R − r₀), 0, 1)``, ``r = ‖x‖₂`` (the platform's choice)."""
    r = x.norm(dim=1, keepdim=True)
    return ((PIECEWISE_R - r) / (PIECEWISE_R - PIECEWISE_R0)).clamp(0.0, 1.0)


def radial_smooth(x: Tensor) -> Tensor:
    """Wendland function ``g(r) = (1 − r)₊⁴ (4r + 1)``, ``r = ‖x‖₂``."""
    r = x.norm(dim=1, keepdim=True)
    return (1 - r).clamp(min=0.0).pow(4) * (4 * r + 1)


@dataclass(frozen=True)
class SyntheticTask:
    target: Callable[[Tensor], Tensor]
    dim: int
    learning: bool  # learning tasks get noisy training targets


TASKS: dict[str, SyntheticTask] = {
    "square": SyntheticTask(square, 1, learning=False),
    "product_gate": SyntheticTask(product_gate, 2, learning=False),
    "radial_piecewise": SyntheticTask(radial_piecewise, 2, learning=True),
    "radial_smooth": SyntheticTask(radial_smooth, 2, learning=True),
}


def make_synthetic(
    name: str,
    *,
    n_train: int,
    n_test: int,
    noise_std: float,
    val_fraction: float,
    generator: torch.Generator,
) -> Dataset:
    """Draw train (+ validation) and clean test sets on ``[−1, 1]^d``.

    Noise goes on the training (and validation) targets of learning tasks only.
    """
    task = TASKS[name]

    def draw(n: int) -> Tensor:
        return torch.rand(n, task.dim, generator=generator, dtype=torch.float64) * 2 - 1

    x_train, x_test = draw(n_train), draw(n_test)
    y_train, y_test = task.target(x_train), task.target(x_test)
    if task.learning and noise_std > 0:
        noise = torch.randn(y_train.shape, generator=generator, dtype=torch.float64)
        y_train = y_train + noise_std * noise
    x_train, y_train, x_val, y_val = split_validation(x_train, y_train, val_fraction, generator)
    return Dataset(name, "regression", x_train, y_train, x_test, y_test, x_val, y_val)
