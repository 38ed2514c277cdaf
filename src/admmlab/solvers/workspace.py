"""The fast ADMM iteration's workspace: spare arrays reused from one iteration to the next.

The reference iteration (:mod:`admmlab.solvers.admm_reference`) allocates as it
goes; the fast one (:mod:`admmlab.solvers.admm`) takes its large temporaries from
here, which is the whole of the difference in memory between the two.
"""

from collections import defaultdict

import torch

Tensor = torch.Tensor


class Pool:
    """Spare ``K × n × N`` arrays, by shape: an iteration takes its temporaries from here
    and gives them back, so from the second iteration on it allocates none of that size.

    The resident set then stays at the live arrays' size, and no iteration pays for
    fresh pages: an allocator left to itself fragments or hands such arrays back to
    the system between iterations.
    """

    def __init__(self) -> None:
        self._spare: dict[tuple, list[Tensor]] = defaultdict(list)

    def take(self, like: Tensor, rows: int | None = None, cols: int | None = None) -> Tensor:
        """A contiguous array like ``like``, or with ``rows`` rows or ``cols`` columns;
        its content is stale."""
        *batch, n_rows, n_cols = like.shape
        shape = (*batch, rows or n_rows, cols or n_cols)
        spare = self._spare[(shape, like.dtype, like.device)]
        return spare.pop() if spare else torch.empty(shape, dtype=like.dtype, device=like.device)

    def give(self, *arrays: Tensor) -> None:
        """Return arrays from :meth:`take`; the caller keeps no view of them."""
        for a in arrays:
            self._spare[(tuple(a.shape), a.dtype, a.device)].append(a)
