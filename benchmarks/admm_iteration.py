"""Seconds per ADMM iteration: admmlab against the plain NumPy reference, side by side.

    python benchmarks/admm_iteration.py [--quick]

Prints two tables. (1) For depth 2, width 300 and depth 4, width 100 (N = 1000),
in float64 and float32: admmlab's and ``tests/numpy_admm.py``'s seconds per
iteration and their ratio, and the iteration's nominal GFLOP/s (flops counted from
docs/algorithm.md, :func:`iteration_flops`) as a fraction of torch's own matmul
throughput on that width's ``n × N × n`` product, measured in the same run.
float32 runs at λ = 1e-2: below that the Cholesky factor of ``λI + c·AAᵀ`` fails
in single precision. (2) K = 20 trials batched in one call against 20 separate
calls at width 20. Times are medians over interleaved repeats after a warm-up;
nothing is asserted.
"""

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from admmlab.nets import init_weights
from admmlab.solvers.admm import fit
from benchkit import header, parse_args, summary, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from numpy_admm import admm_reference

BETA = 1.0
LAM = {torch.float64: 1e-6, torch.float32: 1e-2}  # float32 cannot factor at 1e-6
SETTINGS = ((2, 300), (4, 100))  # (depth, width), N = 1000


def median_seconds(
    runs: dict[str, Callable[[], object]], repeats: int, rounds: int = 2
) -> dict[str, float]:
    """Median wall time of each run over ``rounds`` blocks of ``repeats`` calls.

    Each block starts with an untimed call: right after another library's call, its
    idle worker threads still spin for a while (OpenBLAS's and OpenMP's wait
    policies) and would slow the first calls of the next block. Blocks take turns,
    so a change in the machine's load affects every run alike.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            run()
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def square_task(
    width: int, depth: int, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1000, 1, generator=g, dtype=torch.float64) * 2 - 1
    weights = init_weights("msra", [1, *[width] * depth, 1], scale=8.0, generator=g)
    return x.to(dtype), (x**2).to(dtype), [w.to(dtype) for w in weights]


def iteration_flops(dims: Sequence[int], n_samples: int) -> float:
    """Nominal flops of one iteration of docs/algorithm.md (a multiply-add counts 2).

    ``dims = [d, n_1, …, n_L, m]``. Counted as the spec is written, with each
    product computed once (step 3's ``W_i⁺Ṽ_{i-1}⁺`` reused by steps 5 and 2):
    step 1: Gram of ``Ṽ_L`` ``2(n_L+1)²N``, right side ``2m(n_L+1)N``, Cholesky
    ``(n_L+1)³/3``, solve ``2(n_L+1)²m``; step 2, layer i: right side
    ``2n_i(n_{i-1}+1)N``, Gram of ``Ṽ_{i-1}`` (i > 1; ``X̃``'s is constant)
    ``2(n_{i-1}+1)²N``, Cholesky ``(n_{i-1}+1)³/3``, solve ``2(n_{i-1}+1)²n_i``;
    step 3, layer i: ``S`` ``2n_i(n_{i-1}+1)N``, ``W̄ᵀW̄`` ``2n_i²n_{i+1}``, Cholesky
    ``n_i³/3``, solve ``2n_i²N``, ``W̄ᵀ(…)`` ``2n_in_{i+1}N``, and for i < L also
    ``Z_w`` ``2n_{i+1}n_iN``; step 4: ``2m(n_L+1)N``; the network's forward pass for
    train_mse: its layer 1 is step 3's ``S_1``, the rest ``Σ_{i≥2} 2n_i(n_{i-1}+1)N``.
    Elementwise work is left out. (admmlab does fewer: the Gram matrices' upper
    blocks are skipped and step 3's ``i = L`` system is solved through Woodbury.)
    """
    n, depth = list(dims), len(dims) - 2
    flops = 2 * (n[depth] + 1) ** 2 * n_samples + 2 * n[-1] * (n[depth] + 1) * n_samples
    flops += (n[depth] + 1) ** 3 / 3 + 2 * (n[depth] + 1) ** 2 * n[-1]
    for i in range(1, depth + 1):
        fan_in = n[i - 1] + 1
        flops += 2 * n[i] * fan_in * n_samples + fan_in**3 / 3 + 2 * fan_in**2 * n[i]
        flops += 2 * fan_in**2 * n_samples if i > 1 else 0
        flops += 2 * n[i] * fan_in * n_samples  # S = σ(W_i⁺Ṽ_{i-1}⁺)
        flops += 2 * n[i] ** 2 * n[i + 1] + n[i] ** 3 / 3 + 2 * n[i] ** 2 * n_samples
        flops += 2 * n[i] * n[i + 1] * n_samples * (2 if i < depth else 1)
        flops += 2 * n[i] * fan_in * n_samples if i > 1 else 0  # forward pass
    flops += 2 * 2 * n[-1] * (n[depth] + 1) * n_samples  # step 4 and the forward output
    return flops


def matmul_rate(width: int, dtype: torch.dtype, repeats: int) -> float:
    """torch's GFLOP/s on one ``width × 1000 × width`` product in ``dtype``."""
    a = torch.rand(width, 1000, dtype=dtype)
    b = torch.rand(1000, width, dtype=dtype)
    seconds = median_seconds({"matmul": lambda: a @ b}, 5 * repeats)["matmul"]
    return 2 * width * 1000 * width / seconds / 1e9


def compare_with_numpy(
    depth: int, width: int, dtype: torch.dtype, epochs: int, repeats: int
) -> tuple[object, ...]:
    """One row of table (1): seconds per iteration, ratio, throughput against matmul."""
    x, y, weights = square_task(width, depth, dtype=dtype)
    x_np, y_np, w_np = x.numpy().T, y.numpy().T, [w.numpy() for w in weights]
    lam = LAM[dtype]
    seconds = median_seconds(
        {
            "admmlab": lambda: fit(x, y, weights, lam=lam, beta=BETA, epochs=epochs),
            "numpy": lambda: admm_reference(x_np, y_np, w_np, lam=lam, beta=BETA, epochs=epochs),
        },
        repeats,
    )
    ours, plain = seconds["admmlab"] / epochs, seconds["numpy"] / epochs
    flops = iteration_flops([1, *[width] * depth, 1], 1000)
    rate, peak = flops / ours / 1e9, matmul_rate(width, dtype, repeats)
    name = str(dtype).removeprefix("torch.")
    return (f"({depth}, {width})", name, plain, ours, ours / plain, rate, peak, rate / peak)


def compare_batched(n_trials: int, width: int, epochs: int, repeats: int) -> float:
    """Table (2); returns the batched call's time over the separate calls' total."""
    tasks = [square_task(width, depth=2, seed=seed) for seed in range(n_trials)]
    x, y = tasks[0][0], tasks[0][1]
    stacked = [torch.stack(ws) for ws in zip(*(t[2] for t in tasks), strict=True)]
    lam = LAM[torch.float64]

    def separately() -> None:
        for _, _, w in tasks:
            fit(x, y, w, lam=lam, beta=BETA, epochs=epochs)

    seconds = median_seconds(
        {
            "batched": lambda: fit(x, y, stacked, lam=lam, beta=BETA, epochs=epochs),
            "separately": separately,
        },
        repeats,
    )
    batched, single = seconds["batched"], seconds["separately"]
    table(
        f"(2) K = {n_trials} trials, width {width}, depth 2, N = 1000, {epochs} iterations",
        ["batched (one call) s", f"{n_trials} separate calls s", "batched / separate"],
        [(batched, single, batched / single)],
    )
    return batched / single


def main() -> None:
    args = parse_args(__doc__)
    header("ADMM seconds per iteration against the plain NumPy implementation of the spec")
    repeats = 2 if args.quick else 5
    epochs = 3 if args.quick else 10
    rows = [
        compare_with_numpy(depth, width, dtype, epochs, repeats)
        for depth, width in SETTINGS
        for dtype in (torch.float64, torch.float32)
    ]
    table(
        "(1) seconds per iteration, N = 1000 (float32 at lam = 1e-2)",
        ["(depth, width)", "dtype", "numpy s", "admmlab s", "ratio",
         "GFLOP/s", "matmul GFLOP/s", "fraction"],
        rows,
    )  # fmt: skip
    batched = compare_batched(20, 20, epochs=10 if args.quick else 50, repeats=repeats)
    first = rows[0]
    summary("admm_iteration", ratio_2_300=first[4], matmul_fraction=first[7], batched=batched)


if __name__ == "__main__":
    main()
