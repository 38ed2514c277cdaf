"""Seconds per ADMM iteration: admmlab against the plain NumPy reference, side by side.

    python benchmarks/admm_iteration.py [--quick]

Prints three small tables: (1) depth 2, width 300, N = 1000, float64, admmlab vs
``tests/numpy_admm.py``; (2) the iteration's GFLOP/s against torch's own matmul
throughput on a 300×1000×300 product, measured in the same run; (3) K = 20 trials
batched in one call against 20 separate calls at width 20. Times are medians over
repeats after a warm-up; nothing is asserted.
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from admmlab.nets import init_weights
from admmlab.solvers.admm import fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from numpy_admm import admm_reference

LAM, BETA = 1e-6, 1.0


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


def square_task(width: int, depth: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1000, 1, generator=g, dtype=torch.float64) * 2 - 1
    weights = init_weights("msra", [1, *[width] * depth, 1], scale=8.0, generator=g)
    return x, x**2, weights


def iteration_flops(dims: Sequence[int], n_samples: int) -> float:
    """Nominal flops of one iteration of ALGORITHM.md (a multiply-add counts 2).

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


def compare_with_numpy(width: int, epochs: int, repeats: int) -> float:
    x, y, weights = square_task(width, depth=2)
    x_np, y_np, w_np = x.numpy().T, y.numpy().T, [w.numpy() for w in weights]
    seconds = median_seconds(
        {
            "admmlab": lambda: fit(x, y, weights, lam=LAM, beta=BETA, epochs=epochs),
            "numpy": lambda: admm_reference(x_np, y_np, w_np, lam=LAM, beta=BETA, epochs=epochs),
        },
        repeats,
    )
    ours, plain = seconds["admmlab"] / epochs, seconds["numpy"] / epochs
    print(f"\n(1) seconds per iteration, depth 2, width {width}, N = 1000, float64")
    print(f"    {'numpy reference':<18}{plain:>10.4f}")
    print(f"    {'admmlab':<18}{ours:>10.4f}")
    print(f"    {'ratio':<18}{ours / plain:>10.3f}   (admmlab / numpy)")
    return ours


def compare_with_matmul(width: int, seconds_per_iteration: float, repeats: int) -> None:
    a = torch.rand(width, 1000, dtype=torch.float64)
    b = torch.rand(1000, width, dtype=torch.float64)
    matmul = median_seconds({"matmul": lambda: a @ b}, 5 * repeats)["matmul"]
    matmul_rate = 2 * width * 1000 * width / matmul / 1e9
    flops = iteration_flops([1, width, width, 1], 1000)
    rate = flops / seconds_per_iteration / 1e9
    print(f"\n(2) throughput (torch threads: {torch.get_num_threads()})")
    print(f"    {'matmul 300×1000×300':<28}{matmul_rate:>8.1f} GFLOP/s")
    print(f"    {'ADMM iteration':<28}{rate:>8.1f} GFLOP/s   ({flops / 1e9:.2f} GFLOP nominal)")
    print(f"    {'fraction of matmul':<28}{rate / matmul_rate:>8.2f}")


def compare_batched(n_trials: int, width: int, epochs: int, repeats: int) -> None:
    tasks = [square_task(width, depth=2, seed=seed) for seed in range(n_trials)]
    x, y = tasks[0][0], tasks[0][1]
    stacked = [torch.stack(ws) for ws in zip(*(t[2] for t in tasks), strict=True)]

    def separately() -> None:
        for _, _, w in tasks:
            fit(x, y, w, lam=LAM, beta=BETA, epochs=epochs)

    seconds = median_seconds(
        {
            "batched": lambda: fit(x, y, stacked, lam=LAM, beta=BETA, epochs=epochs),
            "separately": separately,
        },
        repeats,
    )
    batched, single = seconds["batched"], seconds["separately"]
    print(f"\n(3) K = {n_trials} trials, width {width}, depth 2, N = 1000, {epochs} epochs")
    print(f"    {'batched (one call)':<22}{batched:>8.3f} s")
    print(f"    {f'{n_trials} separate calls':<22}{single:>8.3f} s")
    print(f"    {'speed-up':<22}{single / batched:>8.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, a smoke run")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    seconds = compare_with_numpy(300, epochs=3 if args.quick else 10, repeats=repeats)
    compare_with_matmul(300, seconds, repeats)
    compare_batched(20, 20, epochs=10 if args.quick else 50, repeats=repeats)


if __name__ == "__main__":
    main()
