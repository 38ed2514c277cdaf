"""The run's solver trains: config → solvers, through the one interface every solver
has (:class:`admmlab.solvers.interface.Solver`); the solvers know nothing of the config
or the data sets."""

from collections.abc import Sequence

import torch

from admmlab.data import Dataset
from admmlab.solvers.base import Callback, FitResult
from admmlab.solvers.interface import Solver

Tensor = torch.Tensor


def run_solver(
    settings: Solver,
    data: Dataset,
    weights: list[Tensor],
    *,
    activation: str,
    seeds: Sequence[int],
    callback: Callback | None = None,
) -> FitResult:
    """Train ``weights`` (with a trial dimension) on ``data`` with the run's solver."""
    return settings.fit(data, weights, activation=activation, seeds=seeds, callback=callback)
