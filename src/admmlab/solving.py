"""Solver name → a call that trains from the run's typed settings (config → solvers: the
solvers themselves know nothing of the config or the data sets)."""

from collections.abc import Sequence

import torch

from admmlab.config import SolverConfig
from admmlab.data import Dataset
from admmlab.solvers import admm, sgd
from admmlab.solvers.base import Callback, FitResult

Tensor = torch.Tensor


def run_solver(
    settings: SolverConfig,
    data: Dataset,
    weights: list[Tensor],
    *,
    activation: str,
    seeds: Sequence[int],
    callback: Callback | None = None,
) -> FitResult:
    """Train ``weights`` (with a trial dimension) on ``data`` with the named solver."""
    common = {
        "epochs": settings.epochs,
        "activation": activation,
        "X_test": data.x_test,
        "Y_test": data.y_test,
        "X_val": data.x_val,
        "Y_val": data.y_val,
        "classification": data.classification,
        "callback": callback,
    }
    if settings.name == "admm":
        beta = list(settings.beta) if isinstance(settings.beta, list | tuple) else settings.beta
        return admm.fit(
            data.x_train,
            data.y_train,
            weights,
            lam=settings.lam,
            beta=beta,
            impl=settings.impl,
            **common,
        )
    return sgd.fit(
        data.x_train,
        data.y_train,
        weights,
        method=settings.name,
        lr=settings.lr,
        lam=settings.lam,
        batch_size=settings.batch_size,
        momentum=settings.momentum,
        lr_gamma=settings.lr_gamma,
        lr_every=settings.lr_every,
        betas=settings.betas,
        eps=settings.eps,
        seeds=seeds,
        impl=settings.impl,
        **common,
    )
