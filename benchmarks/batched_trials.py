"""K trials batched in one call against K separate calls, for ADMM, SGD and Adam.

    python benchmarks/batched_trials.py [--quick]

The square task, depth 2, N = 1000, K = 20 trials (seed k: its own data and
weights, as ``admmlab.train`` draws them), widths 20 and 100; ADMM 50 iterations,
SGD and Adam 20 epochs of batch 50. Prints, per solver and width, the median wall
time of the batched call and of the K separate calls (interleaved), their ratio,
and how far trial k of the batched run is from the k-th separate run (largest
relative difference of the final train_mse and of the weights; 0 means identical).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from admmlab.solvers import admm, sgd
from admmlab.solvers.base import FitResult
from benchkit import (
    header,
    interleaved,
    max_relative_difference,
    parse_args,
    square_trials,
    summary,
    table,
)

Tensor = torch.Tensor
SOLVERS = ("admm", "sgd", "adam")
# Each solver as its preset configures it (conf/solver, conf/experiment).
INIT_SCALE = {"admm": 8.0, "sgd": 1.0, "adam": 1.0}


@dataclass
class Comparison:
    """One solver at one width: times in seconds and the largest per-trial differences."""

    solver: str
    width: int
    batched_s: float
    separate_s: float
    mse_difference: float
    weight_difference: float

    @property
    def ratio(self) -> float:
        """Batched time over the separate calls' total: below 1 is a gain."""
        return self.batched_s / self.separate_s


def _solve(solver: str, epochs: int) -> Callable[..., FitResult]:
    """``f(X, Y, X_test, Y_test, weights, seeds)`` training with ``solver``'s preset."""

    def run(x, y, x_test, y_test, weights, seeds) -> FitResult:
        if solver == "admm":
            return admm.fit(
                x,
                y,
                weights,
                lam=1e-6,
                beta=1.0,
                activation="sigmoid",
                epochs=epochs,
                X_test=x_test,
                Y_test=y_test,
            )
        lr = 1e-3 if solver == "adam" else 0.1
        return sgd.fit(
            x,
            y,
            weights,
            method=solver,
            lr=lr,
            epochs=epochs,
            batch_size=50,
            activation="relu",
            seeds=seeds,
            X_test=x_test,
            Y_test=y_test,
        )

    return run


def compare(
    solver: str,
    width: int,
    *,
    epochs: int,
    repeats: int,
    n_trials: int = 20,
    n_train: int = 1000,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Comparison:
    """Time one batched call against ``n_trials`` separate ones and compare results."""
    x, y, x_test, y_test, weights = square_trials(
        n_trials, [1, width, width, 1], n_train=n_train, scale=INIT_SCALE[solver],
        dtype=dtype, device=device,
    )  # fmt: skip
    run = _solve(solver, epochs)
    seeds = list(range(n_trials))
    results: dict[str, list[FitResult]] = {}

    def batched() -> None:
        results["batched"] = [run(x, y, x_test, y_test, weights, seeds)]

    def separately() -> None:
        results["separate"] = [
            run(x[k], y[k], x_test[k], y_test[k], [w[k] for w in weights], [k]) for k in seeds
        ]

    times = interleaved({"batched": batched, "separate": separately}, repeats, device=device)
    mse, weight = _differences(results["batched"][0], results["separate"])
    return Comparison(solver, width, times["batched"], times["separate"], mse, weight)


def _differences(batched: FitResult, separate: list[FitResult]) -> tuple[float, float]:
    """Largest relative difference, over trials, of the final train_mse and the weights."""
    mse, weight = 0.0, 0.0
    for k, alone in enumerate(separate):
        final = batched.history["train_mse"][-1, k]
        mse = max(mse, max_relative_difference(final, alone.history["train_mse"][-1]))
        for wb, wa in zip(batched.weights, alone.weights, strict=True):
            weight = max(weight, max_relative_difference(wb[k], wa))
    return mse, weight


def report(comparisons: list[Comparison], n_trials: int) -> None:
    rows = [
        (c.solver, c.width, c.batched_s, c.separate_s, c.ratio, c.mse_difference,
         c.weight_difference)
        for c in comparisons
    ]  # fmt: skip
    table(
        f"K = {n_trials} trials: one batched call vs {n_trials} separate calls (median seconds)",
        ["solver", "width", "batched", "separate", "ratio", "Δ train_mse", "Δ weights"],
        rows,
    )
    print("  ratio = batched / separate total; Δ = max relative difference, trial k vs run k")
    for c in comparisons:
        summary(
            f"batched_trials[{c.solver},w={c.width}]",
            ratio=c.ratio,
            identical=c.mse_difference == 0 and c.weight_difference == 0,
        )


def main() -> None:
    args = parse_args(__doc__)
    header("Batched trials (square task, depth 2, N = 1000, float64)")
    n_trials, repeats = 20, 1 if args.quick else 3
    epochs = {"admm": 5, "sgd": 2, "adam": 2} if args.quick else {"admm": 50, "sgd": 20, "adam": 20}
    comparisons = [
        compare(solver, width, epochs=epochs[solver], repeats=repeats, n_trials=n_trials)
        for width in (20, 100)
        for solver in SOLVERS
    ]
    report(comparisons, n_trials)


if __name__ == "__main__":
    main()
