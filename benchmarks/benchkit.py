"""What the benchmark scripts share: the command line, side-by-side timing, tables.

Timings on a shared machine are noisy, so every comparison is measured in one run,
the candidates interleaved repeat by repeat, and reported as medians and ratios.
"""

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from admmlab.data import load_dataset
from admmlab.data.base import stack_trials
from admmlab.nets import init_weights
from admmlab.seeding import generator

Tensor = torch.Tensor


def parse_args(doc: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    """``--quick``: smaller budgets and fewer repeats (a smoke run, not a measurement);
    ``extra`` adds a script's own options."""
    first_line = (doc or "").strip().splitlines()[0] if doc else None
    parser = argparse.ArgumentParser(description=first_line)
    parser.add_argument("--quick", action="store_true", help="small budgets, few repeats")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def header(title: str) -> None:
    """The title and what the numbers depend on: torch's thread count above all."""
    print(
        f"{title}\n(torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        "set OMP_NUM_THREADS to change)"
    )


def sync(device: torch.device | str) -> None:
    """Wait for queued device work, so a timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(
    candidates: dict[str, Callable[[], object]],
    repeats: int,
    *,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Median wall seconds of each candidate, run in turn within every repeat.

    Interleaving spreads the machine's load changes evenly over the candidates; one
    warm-up call each comes first (lazy initialisation, allocator growth).
    """
    for run in candidates.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table; floats in compact scientific or fixed notation."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.2e}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  " + "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def summary(name: str, **values: object) -> None:
    """One ``summary:`` line that ``run_all.py`` collects into its final table."""
    parts = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"summary: {name} {parts}")


def square_trials(
    n_trials: int,
    dims: Sequence[int],
    *,
    n_train: int = 1000,
    scheme: str = "msra",
    scale: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor]]:
    """K square-task trials as ``admmlab.train`` builds them: per-seed data and weights.

    Returns ``X, Y, X_test, Y_test`` of shape ``(K, N, ·)`` and weights drawn by
    ``scheme`` with a leading K; trial k uses seed k.
    """
    options = {"n_train": n_train, "n_test": n_train, "noise_std": 0.0, "val_fraction": 0.0}
    data = stack_trials([load_dataset("square", seed=k, **options) for k in range(n_trials)])
    per_trial = [
        init_weights(scheme, dims, scale=scale, generator=generator(k, "init"), dtype=dtype)
        for k in range(n_trials)
    ]
    weights = [torch.stack(layer).to(device) for layer in zip(*per_trial, strict=True)]
    data = data.to(device, dtype)
    return data.x_train, data.y_train, data.x_test, data.y_test, weights


def max_relative_difference(a: Tensor, b: Tensor) -> float:
    """``max|a − b| / max|b|`` (0 when both are zero)."""
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale else diff


# ---------------------------------------------------------------- device projection

# What a projection of eager PyTorch on one GPU assumes. Each operation that is not
# a view costs the host about this much to dispatch and launch; for the small nets
# of the studies the device finishes each kernel sooner, so the host sets the pace.
# Measured on one H100 (torch 2.11, gpu_check.py): the depth study's settings, timed
# there, add up to 1.0 h; this projection says 0.9 h (with 8 µs it said 0.37 h).
LAUNCH_S = 20e-6
# Sustained matrix-product rate, FLOP/s: about a third of an H100's float64 tensor
# core peak (67 TFLOP/s) and of its float32 peak without TF32, as small products get.
DEVICE_FLOPS = {torch.float64: 25e12, torch.float32: 25e12}


class DeviceWork(TorchDispatchMode):
    """Counts the operations that would each launch device work, and the flops of the
    matrix products and factorisations among them (a multiply-add counts 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.launches = 0
        self.flops = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and func.overloadpacket.__name__ not in _NO_KERNEL:
            self.launches += 1
            self.flops += _op_flops(func.overloadpacket.__name__, args)
        return out

    def projected_seconds(self, dtype: torch.dtype) -> float:
        return self.launches * LAUNCH_S + self.flops / DEVICE_FLOPS[dtype]


_NO_KERNEL = {"detach", "alias", "lift_fresh", "_unsafe_view", "set_", "empty", "empty_strided"}


def _op_flops(name: str, args: tuple) -> float:
    """Flops of one product or factorisation, from its operands' shapes; 0 otherwise."""
    shapes = [tuple(a.shape) for a in args if isinstance(a, Tensor)]
    if name in ("mm", "bmm", "addmm", "baddbmm"):
        *batch, m, k = shapes[-2]
        n = shapes[-1][-1]
        return 2.0 * math.prod(batch) * m * k * n
    if name in ("linalg_cholesky_ex", "cholesky_inverse"):
        *batch, n, _ = shapes[0]
        return math.prod(batch) * n**3 * (1 / 3 if name == "linalg_cholesky_ex" else 2 / 3)
    if name in ("linalg_solve_triangular", "cholesky_solve"):
        factor = shapes[0] if name == "linalg_solve_triangular" else shapes[1]
        rhs = shapes[1] if name == "linalg_solve_triangular" else shapes[0]
        *batch, n, _ = factor
        solves = 1 if name == "linalg_solve_triangular" else 2
        return solves * math.prod(batch) * n * n * (math.prod(rhs[-2:]) / n)
    return 0.0
