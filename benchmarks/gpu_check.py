"""The ADMM and batched-trials benchmarks on a CUDA device, if there is one.

    python benchmarks/gpu_check.py [--quick]

Without CUDA it prints "no CUDA device" and exits 0. With it (a few minutes at
most on an H100): (1) seconds per ADMM iteration at depth 2, width 300, N = 1000
and 10000, float64 and float32 (with λ = 0.1: see LAM), on the GPU and on this
machine's CPU, their ratio, and the iteration's GFLOP/s against the GPU's own
matmul throughput on a 300×N×300 product of the same precision; (2) K = 20
trials batched against 20 separate calls at width 20 on the GPU, for ADMM, SGD and Adam, with the
per-trial differences, as ``batched_trials.py`` prints them; (3) the full depth study's
settings timed on the GPU, as ``studies.py`` projects them on the CPU (``--quick``: the
ends of each depth range only), beside its launch-and-flop model of one GPU; (4) the SGD
epoch at square (18, 100), K = 20 and 1, both dtypes, as ``sgd_epoch.py`` measures it,
with the fast step replayed from CUDA graphs and run eagerly.
"""

from dataclasses import dataclass

import torch

import sgd_epoch
from admm_iteration import iteration_flops
from admmlab.nets import init_weights
from admmlab.solvers import admm, sgd_graphs
from batched_trials import SOLVERS, compare
from batched_trials import report as report_batched
from benchkit import header, interleaved, parse_args, summary, table

Tensor = torch.Tensor
WIDTH = 300
# The paper's λ = 1e-6 leaves the float32 Gram systems numerically singular here (the
# first iteration's Cholesky fails); the float32 timing uses a λ that keeps them SPD.
# The cost of an iteration does not depend on λ.
LAM = {torch.float64: 1e-6, torch.float32: 0.1}


@dataclass
class IterationTiming:
    n_samples: int
    dtype: torch.dtype
    device_s: float
    cpu_s: float
    matmul_flops_per_s: float

    @property
    def flops_per_s(self) -> float:
        return iteration_flops([1, WIDTH, WIDTH, 1], self.n_samples) / self.device_s


def _problem(n_samples: int, dtype: torch.dtype, device: str) -> tuple[Tensor, Tensor, list]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_samples, 1, generator=g, dtype=torch.float64) * 2 - 1
    weights = init_weights("msra", [1, WIDTH, WIDTH, 1], scale=8.0, generator=g)
    return (x.to(device, dtype), (x**2).to(device, dtype), [w.to(device, dtype) for w in weights])


def matmul_rate(n_samples: int, dtype: torch.dtype, device: str, repeats: int) -> float:
    """FLOP/s of a ``300 × N`` by ``N × 300`` product (20 back to back, timed together)."""
    a = torch.rand(WIDTH, n_samples, dtype=dtype, device=device)
    b = torch.rand(n_samples, WIDTH, dtype=dtype, device=device)

    def twenty() -> None:
        for _ in range(20):
            a @ b

    seconds = interleaved({"matmul": twenty}, repeats, device=device)["matmul"] / 20
    return 2 * WIDTH * n_samples * WIDTH / seconds


def time_iteration(
    n_samples: int, dtype: torch.dtype, device: str, epochs: int, repeats: int
) -> IterationTiming:
    """Seconds per ADMM iteration on ``device`` and on the CPU, interleaved."""
    runs = {}
    for where in (device, "cpu"):
        x, y, weights = _problem(n_samples, dtype, where)
        runs[where] = lambda x=x, y=y, w=weights: admm.fit(
            x, y, w, lam=LAM[dtype], beta=1.0, epochs=epochs
        )
    times = interleaved(runs, repeats, device=device)
    return IterationTiming(
        n_samples,
        dtype,
        times[device] / epochs,
        times["cpu"] / epochs,
        matmul_rate(n_samples, dtype, device, repeats),
    )


def run_checks(
    device: str,
    sizes: tuple[int, ...],
    epochs: int,
    repeats: int,
    trial_epochs: dict[str, int],
    n_trials: int = 20,
) -> None:
    timings = [
        time_iteration(n, dtype, device, epochs, repeats)
        for n in sizes
        for dtype in (torch.float64, torch.float32)
    ]
    table(
        f"ADMM, depth 2, width {WIDTH}: seconds per iteration on {device} and on the CPU",
        ["N", "dtype", device, "cpu", "cpu / " + device, "GFLOP/s", "matmul GFLOP/s", "fraction"],
        [
            (
                t.n_samples,
                str(t.dtype).removeprefix("torch."),
                t.device_s,
                t.cpu_s,
                t.cpu_s / t.device_s,
                t.flops_per_s / 1e9,
                t.matmul_flops_per_s / 1e9,
                t.flops_per_s / t.matmul_flops_per_s,
            )
            for t in timings
        ],
    )
    comparisons = [
        compare(s, 20, epochs=trial_epochs[s], repeats=repeats, n_trials=n_trials, device=device)
        for s in SOLVERS
    ]
    report_batched(comparisons, n_trials)
    for t in timings:
        summary(
            f"gpu_check[N={t.n_samples},{str(t.dtype).removeprefix('torch.')}]",
            speedup_vs_cpu=t.cpu_s / t.device_s,
            matmul_fraction=t.flops_per_s / t.matmul_flops_per_s,
        )


def depth_study(device: str, epochs: int, quick: bool) -> tuple[float, float]:
    """(3): the depth study's hours timed on ``device``, and by the model."""
    # Imported here: it needs Hydra and the whole package, checks (1) and (2) torch alone.
    import studies

    grid = studies.depth_grid()
    costs = [
        cost
        for competitor in studies.COMPETITORS
        for cost in studies.project_competitor(
            competitor, grid, epochs, quick, extra=(f"device={device}",)
        )
    ]
    return studies.report_projection(costs, grid, timed_on=device)


def sgd_epochs(
    device: str, rounds: int, name: str = "square (18, 100)", trials: tuple[int, ...] = (20, 1)
) -> dict[bool, list[sgd_epoch.Row]]:
    """(4): ``sgd_epoch.measure``'s rows with the fast step replayed from graphs and not."""
    rows = {}
    for graphs in (True, False):
        sgd_graphs.ENABLED = graphs
        try:
            rows[graphs] = [
                sgd_epoch.measure(name, k, dtype, device, rounds)
                for k in trials
                for dtype in (torch.float64, torch.float32)
            ]
        finally:
            sgd_graphs.ENABLED = True
        where = "the fast step replayed from CUDA graphs" if graphs else "the fast step eager"
        sgd_epoch.report(rows[graphs], f"; on {device}, {where}")
    return rows


def main() -> None:
    args = parse_args(__doc__)
    if not torch.cuda.is_available():
        print("no CUDA device")
        return
    header(f"GPU check on {torch.cuda.get_device_name()}")
    trial_epochs = (
        {"admm": 10, "sgd": 4, "adam": 4} if args.quick else {"admm": 50, "sgd": 20, "adam": 20}
    )
    run_checks(
        "cuda",
        sizes=(1000, 10000),
        epochs=3 if args.quick else 10,
        repeats=1 if args.quick else 3,
        trial_epochs=trial_epochs,
    )
    hours, model_hours = depth_study("cuda", epochs=4, quick=args.quick)
    summary("gpu_check", depth_study_h=hours, depth_study_model_h=model_hours)
    rows = sgd_epochs("cuda", rounds=2 if args.quick else sgd_epoch.ROUNDS)
    graphed, eager = rows[True][0], rows[False][0]  # K = 20, float64
    summary(
        "gpu_check[sgd_epoch]",
        limit_share_f64=graphed.limit_share,
        over_plain_f64=graphed.over_plain,
        graphed_over_eager_f64=graphed.fast_s / eager.fast_s,
    )


if __name__ == "__main__":
    main()
