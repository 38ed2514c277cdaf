"""The one network representation every solver trains.

A net is a list of weight tensors, layer ``i`` of shape ``(n_i, n_{i-1} + 1)``
with the bias as the last column, optionally with a leading trial dimension K.
"""

from admmlab.nets.activations import ACTIVATIONS, Activation, get_activation
from admmlab.nets.forward import affine, forward, forward_no_grad, hidden_forward, with_ones
from admmlab.nets.init import INIT_SCHEMES, init_weights

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "Activation",
    "affine",
    "forward",
    "forward_no_grad",
    "get_activation",
    "hidden_forward",
    "init_weights",
    "with_ones",
]
