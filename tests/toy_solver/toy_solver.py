"""A solver that lives outside the package: the test that a new solver is one module
and one config file (README, "Adding a solver").

It trains only the output layer, by full-batch gradient descent on the square loss,
and runs through the platform's one epoch loop.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch

from admmlab.nets import get_activation
from admmlab.solvers.base import FitResult, as_problem, evaluate, finite_per_trial
from admmlab.solvers.interface import Solver, held_out_sets, require
from admmlab.solvers.loop import run_epochs


@dataclass
class Toy(Solver):
    """Gradient descent on ``W_{L+1}`` alone (``solver=toy``)."""

    name: str = "toy"
    epochs: int = 5
    lr: float = 0.1

    label: ClassVar[str] = "Toy"
    step_key: ClassVar[str | None] = "lr"

    def check(self) -> None:
        require(self.lr > 0, "lr", "positive", self.lr)

    def fit(self, problem, weights, *, activation, seeds, callback=None) -> FitResult:
        held = held_out_sets(problem)
        x, y, ws, sets = as_problem(
            problem.x_train,
            problem.y_train,
            weights,
            {"test": (held["X_test"], held["Y_test"]), "val": (held["X_val"], held["Y_val"])},
        )
        act = get_activation(activation)
        return run_epochs(
            OutputLayerEpochs(x, y, ws, act, self.lr),
            epochs=self.epochs,
            activation=act,
            held_out=sets,
            classification=problem.classification,
            batched=True,
            callback=callback,
        )


class OutputLayerEpochs:
    """One epoch: one gradient step on the output layer, the hidden layers fixed."""

    def __init__(self, x, y, ws, act, lr: float) -> None:
        self.x, self.y, self.ws, self.act, self.lr = x, y, [w.clone() for w in ws], act, lr

    def _features(self) -> torch.Tensor:
        h = self.x
        for w in self.ws[:-1]:
            h = self.act.fn(h @ w[..., :-1].mT + w[..., -1].unsqueeze(-2))
        return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)

    def epoch(self, epoch: int) -> dict[str, torch.Tensor]:
        feats = self._features()
        residual = feats @ self.ws[-1].mT - self.y
        grad = 2 * residual.mT @ feats / self.y.shape[-2]
        self.ws[-1] = self.ws[-1] - self.lr * grad
        return evaluate(self.ws, self.act, {"train": (self.x, self.y)})

    def weights(self) -> list[torch.Tensor]:
        return list(self.ws)

    def finite(self, metrics):
        return finite_per_trial(metrics["train_mse"].unsqueeze(-1))

    def quantities(self, metrics):
        return [("train_mse", metrics["train_mse"], "")]
