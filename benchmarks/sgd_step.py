"""Per-step cost of the SGD-type solvers on a small net, and where it goes.

    python benchmarks/sgd_step.py [--quick]

Depth 2, width 20, N = 1000, batch 50 (20 steps an epoch), the square task.
(1) Microseconds per step of ``sgd.fit`` for SGD and Adam, one trial and K = 20
batched (the epoch's evaluation included, as in a real run). (2) The gradient
of one mini-batch by the solver's hand-written back-propagation against
autograd, interleaved, with their largest difference (0: the same numbers).
"""

from admmlab.nets import get_activation
from admmlab.solvers import sgd
from benchkit import (
    header,
    interleaved,
    max_relative_difference,
    parse_args,
    square_trials,
    summary,
    table,
)

DIMS = [1, 20, 20, 1]
BATCH = 50
LEARNING_RATE = {"sgd": 0.1, "adam": 1e-3}


def step_microseconds(method: str, n_trials: int, epochs: int, repeats: int) -> float:
    """Median wall time of ``sgd.fit`` per optimisation step."""
    x, y, x_test, y_test, weights = square_trials(n_trials, DIMS)
    steps = epochs * (x.shape[1] // BATCH)

    def train() -> None:
        sgd.fit(x, y, weights, method=method, lr=LEARNING_RATE[method], epochs=epochs,
                batch_size=BATCH, activation="relu", seeds=list(range(n_trials)),
                X_test=x_test, Y_test=y_test)  # fmt: skip

    return interleaved({"fit": train}, repeats)["fit"] / steps * 1e6


def gradient_comparison(
    n_trials: int, repeats: int, lam: float = 0.0
) -> tuple[float, float, float]:
    """Microseconds of hand-written and autograd gradients of one batch, and their difference."""
    x, y, _, _, weights = square_trials(n_trials, DIMS)
    xb, yb, act = x[:, :BATCH], y[:, :BATCH], get_activation("relu")
    times = interleaved(
        {
            "hand": lambda: sgd.gradients(weights, xb, yb, act, lam),
            "autograd": lambda: sgd.autograd_gradients(weights, xb, yb, act, lam),
        },
        repeats,
    )
    hand = sgd.gradients(weights, xb, yb, act, lam)
    auto = sgd.autograd_gradients(weights, xb, yb, act, lam)
    difference = max(max_relative_difference(h, a) for h, a in zip(hand, auto, strict=True))
    return times["hand"] * 1e6, times["autograd"] * 1e6, difference


def main() -> None:
    args = parse_args(__doc__)
    header("SGD-type solvers: per-step cost (depth 2, width 20, N = 1000, batch 50, float64)")
    epochs, repeats = (2, 3) if args.quick else (10, 7)
    rows = [
        (method, k, step_microseconds(method, k, epochs, repeats))
        for method in ("sgd", "adam")
        for k in (1, 20)
    ]
    table("sgd.fit, microseconds per step (median)", ["method", "trials", "µs/step"], rows)
    grad_rows = []
    for k in (1, 20):
        hand, auto, difference = gradient_comparison(k, 50 if args.quick else 300)
        grad_rows.append((k, hand, auto, hand / auto, difference))
    table(
        "Gradient of one batch: hand-written back-propagation vs autograd (median µs)",
        ["trials", "hand", "autograd", "ratio", "max rel. difference"],
        grad_rows,
    )
    summary("sgd_step", adam_us_per_step=rows[2][2], hand_over_autograd=grad_rows[0][3],
            identical=all(r[4] == 0 for r in grad_rows))  # fmt: skip


if __name__ == "__main__":
    main()
