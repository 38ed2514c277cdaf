"""The paper's six initialisation schemes plus ``zero`` (docs/algorithm.md's table).

``fan_in = n_{i-1}``, ``fan_out = n_i``; biases start at 0; every scheme takes a
scale factor that multiplies the weights.
"""

import itertools
import math
from collections.abc import Callable, Sequence

import torch

Tensor = torch.Tensor
Draw = Callable[[int, int, bool, torch.Generator | None, torch.dtype], Tensor]


def _lecun_uniform(fan_out, fan_in, is_output, gen, dtype):
    u = torch.rand(fan_out, fan_in, generator=gen, dtype=dtype) * 2 - 1
    return u * math.sqrt(3 / fan_in)


def _lecun_gauss(fan_out, fan_in, is_output, gen, dtype):
    return torch.randn(fan_out, fan_in, generator=gen, dtype=dtype) * math.sqrt(1 / fan_in)


def _orthonormalise(m: Tensor) -> Tensor:
    """Orthonormal rows if wide (``WWᵀ = I``), orthonormal columns otherwise."""
    wide = m.shape[0] < m.shape[1]
    q, r = torch.linalg.qr(m.T if wide else m)
    # Sign fix makes the result the unique Q with positive diag(R) (Haar-distributed).
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
    return q.T if wide else q


def _orth_uniform(fan_out, fan_in, is_output, gen, dtype):
    return _orthonormalise(torch.rand(fan_out, fan_in, generator=gen, dtype=dtype) * 2 - 1)


def _orth_gauss(fan_out, fan_in, is_output, gen, dtype):
    return _orthonormalise(torch.randn(fan_out, fan_in, generator=gen, dtype=dtype))


def _xavier(fan_out, fan_in, is_output, gen, dtype):
    u = torch.rand(fan_out, fan_in, generator=gen, dtype=dtype) * 2 - 1
    return u * math.sqrt(6 / (fan_in + fan_out))


def _msra(fan_out, fan_in, is_output, gen, dtype):
    gain = 1.0 if is_output else 2.0
    return torch.randn(fan_out, fan_in, generator=gen, dtype=dtype) * math.sqrt(gain / fan_out)


def _zero(fan_out, fan_in, is_output, gen, dtype):
    return torch.zeros(fan_out, fan_in, dtype=dtype)


INIT_SCHEMES: dict[str, Draw] = {
    "lecun_uniform": _lecun_uniform,
    "lecun_gauss": _lecun_gauss,
    "orth_uniform": _orth_uniform,
    "orth_gauss": _orth_gauss,
    "xavier": _xavier,
    "msra": _msra,
    "zero": _zero,
}


def init_weights(
    scheme: str,
    dims: Sequence[int],
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> list[Tensor]:
    """Weights for layer sizes ``dims = [d, n_1, …, n_L, m]``, bias as last column.

    Draws happen on the CPU in layer order from ``generator``, so a seed gives the
    same weights on every device; move them with ``.to(device)`` afterwards.
    """
    try:
        draw = INIT_SCHEMES[scheme]
    except KeyError:
        raise ValueError(
            f"unknown init scheme {scheme!r}; choose one of {sorted(INIT_SCHEMES)}"
        ) from None
    if len(dims) < 2 or any(int(n) < 1 for n in dims):
        raise ValueError(f"dims must be at least two positive sizes, got {list(dims)}")
    weights = []
    last = len(dims) - 2
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        w = draw(int(fan_out), int(fan_in), i == last, generator, dtype) * scale
        bias = torch.zeros(int(fan_out), 1, dtype=dtype)
        weights.append(torch.cat([w, bias], dim=1))
    return weights
