"""Hidden activations with their derivatives (docs/algorithm.md: σ and σ')."""

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Activation:
    """An entry-wise activation. ``smooth`` says whether ADMM's theory covers it.

    ``times_deriv(g, out)`` is ``g ⊙ σ'(z)`` computed from the output ``out = σ(z)``
    with the kernels autograd itself calls, so hand-written backward passes give
    autograd's numbers bit for bit and ``σ'`` is never stored. ``fn_`` and
    ``times_deriv_`` are the same, written into their first argument (for solvers
    whose memory peak is a handful of ``n × N`` arrays). ``add_fn_(z, b)`` writes
    ``σ(z + b)`` into ``z``: one pass over ``z`` for ReLU, whose kernel adds and
    clips together.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    fn_: Callable[[Tensor], Tensor]
    value_and_deriv: Callable[[Tensor], tuple[Tensor, Tensor]]
    smooth: bool
    times_deriv: Callable[[Tensor, Tensor], Tensor]
    times_deriv_: Callable[[Tensor, Tensor], Tensor]
    add_fn_: Callable[[Tensor, Tensor], Tensor]

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


def _add_then(fn_: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda z, b: fn_(z.add_(b))


def _add_relu_(z: Tensor, b: Tensor) -> Tensor:
    if z.is_cpu:  # the fused kernel exists for the CPU only
        return torch.ops.aten._add_relu_(z, b)
    return z.add_(b).relu_()


def _relu_times_deriv(g: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(g, out, 0)


def _relu_times_deriv_(g: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward.grad_input(g, out, 0, grad_input=g)


def _sigmoid_times_deriv_(g: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.sigmoid_backward.grad_input(g, out, grad_input=g)


def _tanh_times_deriv_(g: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.tanh_backward.grad_input(g, out, grad_input=g)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(
        name="sigmoid",
        fn=torch.sigmoid,
        fn_=torch.sigmoid_,
        value_and_deriv=_sigmoid_vd,
        smooth=True,
        times_deriv=torch.ops.aten.sigmoid_backward,
        times_deriv_=_sigmoid_times_deriv_,
        add_fn_=_add_then(torch.sigmoid_),
    ),
    "tanh": Activation(
        name="tanh",
        fn=torch.tanh,
        fn_=torch.tanh_,
        value_and_deriv=_tanh_vd,
        smooth=True,
        times_deriv=torch.ops.aten.tanh_backward,
        times_deriv_=_tanh_times_deriv_,
        add_fn_=_add_then(torch.tanh_),
    ),
    "relu": Activation(
        name="relu",
        fn=torch.relu,
        fn_=torch.relu_,
        value_and_deriv=_relu_vd,
        smooth=False,
        times_deriv=_relu_times_deriv,
        times_deriv_=_relu_times_deriv_,
        add_fn_=_add_relu_,
    ),
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
