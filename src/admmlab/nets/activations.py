"""Hidden activations with their derivatives (ALGORITHM.md: σ and σ')."""

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Activation:
    """An entry-wise activation. ``smooth`` says whether ADMM's theory covers it.

    ``times_deriv(g, out)`` is ``g ⊙ σ'(z)`` computed from the output ``out = σ(z)``
    with the kernels autograd itself calls, so hand-written backward passes give
    autograd's numbers bit for bit and ``σ'`` is never stored.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    value_and_deriv: Callable[[Tensor], tuple[Tensor, Tensor]]
    smooth: bool
    times_deriv: Callable[[Tensor, Tensor], Tensor]

    def deriv(self, z: Tensor) -> Tensor:
        return self.value_and_deriv(z)[1]


def _sigmoid_vd(z: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(z)
    return s, s * (1 - s)


def _tanh_vd(z: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.tanh(z)
    return t, 1 - t * t


def _relu_vd(z: Tensor) -> tuple[Tensor, Tensor]:
    return torch.relu(z), (z > 0).to(z.dtype)


def _relu_times_deriv(g: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(g, out, 0)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(
        "sigmoid", torch.sigmoid, _sigmoid_vd, True, torch.ops.aten.sigmoid_backward
    ),
    "tanh": Activation("tanh", torch.tanh, _tanh_vd, True, torch.ops.aten.tanh_backward),
    "relu": Activation("relu", torch.relu, _relu_vd, False, _relu_times_deriv),
}


def get_activation(name: str | Activation) -> Activation:
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None
