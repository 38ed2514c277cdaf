"""Wall time of every sweep at its small budget, of the demo, and of the full depth study.

    python benchmarks/studies.py [--quick] [--projection-only]
                                 [--sgd-dtype float32] [--sgd-impl reference]

(1) Runs the ``# Small budget:`` command documented in each ``sweeps/*.yaml`` as
``python -m admmlab.train …`` in a temporary folder with a temporary MLflow store;
a real-data sweep that fails for want of its data files is reported as skipped.
(2) Runs ``python -m admmlab.demo`` the same way (not with ``--quick``).
(3) Projects the full depth study of docs/studies.md on the square task: the five
competitors at the paper's widths (conf/dataset/square.yaml), sigmoid nets at
depths 1–6 and ReLU nets at every depth of sweeps/depth.yaml, 20 trials each,
2000 epochs SGD-type and 50 iterations ADMM. Each setting trains a few epochs
with its 20 trials batched through the same code as ``admmlab-train`` (tracking
off); the time per epoch (the median after the first) times the full budget is
its projection. ``--quick`` measures the smallest and largest depth of each
competitor only and interpolates linearly in depth. ``--sgd-dtype float32``
projects the SGD-type competitors in float32 (ADMM stays float64),
``--sgd-impl reference`` with the readable autograd step (the one the fast step
replaced: a before/after in one session); ``--projection-only`` skips (1) and (2).
"""

import argparse
import contextlib
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from admmlab.config import validate
from admmlab.paths import conf_dir, sweeps_dir
from admmlab.setting import initial_weights, load_trials, resolve_device
from admmlab.solvers.base import NonFiniteError
from admmlab.solving import run_solver
from benchkit import DEVICE_FLOPS, LAUNCH_S, DeviceWork, header, parse_args, summary, table

SMALL_BUDGET_MARK = "# Small budget"
COMPETITORS = ("admm_sigmoid", "sgd_sigmoid", "sgd_relu", "sgdm_relu", "adam_relu")
SIGMOID_MAX_DEPTH = 6  # docs/studies.md: the paper's sigmoid nets stop at depth 6
FULL_EPOCHS = {"admm": 50, "sgd": 2000, "sgdm": 2000, "adam": 2000}
TRIALS = 20


# ---------------------------------------------------------------- sweeps and demo


def small_budget_command(sweep_file: Path) -> list[str] | None:
    """The documented small-budget command of a sweep file, ready for ``subprocess``.

    It is the first comment line after the ``# Small budget`` mark; its leading
    ``admmlab-train`` becomes this interpreter's ``-m admmlab.train``.
    """
    lines = sweep_file.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(SMALL_BUDGET_MARK):
            words = shlex.split(lines[i + 1].lstrip("#").strip())
            if words and words[0] == "admmlab-train":
                return [sys.executable, "-m", "admmlab.train", *words[1:]]
    return None


@dataclass
class Timed:
    name: str
    seconds: float
    status: str


def run_timed(name: str, command: list[str], folder: Path, env: dict[str, str]) -> Timed:
    """Run ``command`` in ``folder``; failed settings of a sweep count as its failure.

    A sweep goes on past a failed setting (it prints "setting failed"), so the exit
    status alone would hide one. A real-data sweep that fails is reported as
    skipped: its data files are not part of the checkout.
    """
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = (done.stdout + done.stderr).splitlines()
    problems = [line for line in lines if "setting failed:" in line or line.startswith("error:")]
    if done.returncode == 0 and not problems:
        return Timed(name, seconds, "ok")
    message = (problems or lines or ["(no output)"])[-1][:120]
    if name.startswith("real_"):
        return Timed(name, seconds, f"skipped (needs its data files?): {message}")
    return Timed(name, seconds, f"FAILED (exit {done.returncode}): {message}")


def isolated_env(folder: Path) -> dict[str, str]:
    """This environment with the MLflow store and the demo's report inside ``folder``."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "ADMMLAB_REPORT_DIR": str(folder / "reports"),
    }


def time_sweeps(folder: Path) -> list[Timed]:
    """Every sweep file's small budget, each in its own subfolder and store."""
    results = []
    for sweep_file in sorted(sweeps_dir().glob("*.yaml")):
        command = small_budget_command(sweep_file)
        if command is None:
            continue
        sub = folder / sweep_file.stem
        sub.mkdir()
        results.append(run_timed(sweep_file.stem, command, sub, isolated_env(sub)))
    return results


def time_demo(folder: Path) -> Timed:
    command = [sys.executable, "-m", "admmlab.demo"]
    return run_timed("demo (python -m admmlab.demo)", command, folder, isolated_env(folder))


# ---------------------------------------------------------------- full depth study


@dataclass
class SettingCost:
    competitor: str
    depth: int
    width: int
    seconds_per_epoch: float
    full_epochs: int
    device_seconds_per_epoch: float  # projected for one GPU by benchkit.DeviceWork

    @property
    def projected_s(self) -> float:
        return self.seconds_per_epoch * self.full_epochs

    @property
    def device_projected_s(self) -> float:
        return self.device_seconds_per_epoch * self.full_epochs


def depth_grid() -> list[int]:
    """The depths of ``sweeps/depth.yaml``."""
    params = OmegaConf.load(sweeps_dir() / "depth.yaml").hydra.sweeper.params
    return [int(d) for d in str(params["model.depth"]).split(",")]


def study_depths(competitor: str, grid: list[int]) -> list[int]:
    """docs/studies.md's ranges: sigmoid nets up to depth 6, ReLU nets the whole grid."""
    return [d for d in grid if "sigmoid" not in competitor or d <= SIGMOID_MAX_DEPTH]


def measure_setting(
    competitor: str, depth: int, epochs: int, n_trials: int = TRIALS, extra: tuple[str, ...] = ()
) -> SettingCost:
    """Seconds per epoch of one setting, ``n_trials`` batched, as ``admmlab-train`` trains
    it; then one more epoch under :class:`benchkit.DeviceWork` for the GPU projection."""
    typed, data, weights, seeds = _setting(competitor, depth, epochs, n_trials, extra)
    try:
        result = run_solver(
            typed.solver, data, weights, activation=typed.activation.name, seeds=seeds
        )
    except NonFiniteError as err:  # every trial diverged, which stops the run: its epochs count
        result = err.partial
    per_epoch = result.history["epoch_time_s"][:, 0].tolist()
    seconds = statistics.median(per_epoch[1:] or per_epoch)  # the first epoch warms up
    typed, data, weights, seeds = _setting(competitor, depth, 1, n_trials, extra)
    # A diverging epoch was still done, and counted.
    with DeviceWork() as work, contextlib.suppress(NonFiniteError):
        run_solver(typed.solver, data, weights, activation=typed.activation.name, seeds=seeds)
    dtype = data.x_train.dtype
    return SettingCost(
        competitor,
        depth,
        typed.model.width,
        seconds,
        FULL_EPOCHS[typed.solver.name],
        work.projected_seconds(dtype),
    )


def _setting(
    competitor: str, depth: int, epochs: int, n_trials: int, extra: tuple[str, ...]
) -> tuple:
    """The validated config, data, initial weights and seeds of one setting."""
    overrides = [
        f"experiment={competitor}",
        f"model.depth={depth}",
        f"trials={n_trials}",
        f"solver.epochs={epochs}",
        "tracking.enabled=false",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        typed = validate(compose(config_name="config", overrides=overrides))
    seeds = [typed.seed + k for k in range(typed.trials)]
    data = load_trials(typed, seeds, resolve_device(typed.device))
    return typed, data, initial_weights(typed, data, seeds), seeds


def project_competitor(
    competitor: str, depths: list[int], epochs: int, quick: bool, extra: tuple[str, ...] = ()
) -> list[SettingCost]:
    """Costs at ``depths``; with ``quick``, only the ends measured, the rest interpolated.

    ``extra`` overrides every setting (``device=cuda``, say)."""
    measured = [
        measure_setting(competitor, d, epochs, extra=extra)
        for d in ([depths[0], depths[-1]] if quick and len(depths) > 2 else depths)
    ]
    if len(measured) == len(depths):
        return measured
    at = [m.depth for m in measured]
    host = [m.seconds_per_epoch for m in measured]
    device = [m.device_seconds_per_epoch for m in measured]
    first = measured[0]
    return [
        SettingCost(
            competitor,
            d,
            first.width,
            float(np.interp(d, at, host)),
            first.full_epochs,
            float(np.interp(d, at, device)),
        )
        for d in depths
    ]


def report_projection(
    costs: list[SettingCost], grid: list[int], timed_on: str = "this machine"
) -> tuple[float, float]:
    """Print the projection; return the study's hours where it was timed and by the
    launch-and-flop model of one GPU."""
    rows, total, device_total = [], 0.0, 0.0
    for competitor in COMPETITORS:
        own = [c for c in costs if c.competitor == competitor]
        in_study = [c for c in own if c.depth in study_depths(competitor, grid)]
        hours = sum(c.projected_s for c in in_study) / 3600
        device_hours = sum(c.device_projected_s for c in in_study) / 3600
        total += hours
        device_total += device_hours
        rows.append(
            (
                competitor,
                own[0].width,
                f"{in_study[0].depth}–{in_study[-1].depth}",
                len(in_study),
                own[0].full_epochs,
                own[0].seconds_per_epoch,
                in_study[-1].seconds_per_epoch,
                hours,
                device_hours,
            )
        )
    table(
        f"Full depth study on the square task, {TRIALS} trials batched per setting "
        f"(projected from a few epochs each on {timed_on})",
        [
            "competitor",
            "width",
            "depths",
            "settings",
            "epochs",
            "s/epoch (min depth)",
            "s/epoch (max depth)",
            "hours",
            "model GPU h",
        ],
        rows,
    )
    grid_hours = sum(c.projected_s for c in costs) / 3600
    print(
        f"  projected total: {total:.1f} h on {timed_on} (tracking and process start not included)"
    )
    print(
        f"  sweeps/depth.yaml as written (all five over depths {grid[0]}–{grid[-1]}): "
        f"{grid_hours:.1f} h"
    )
    rate = DEVICE_FLOPS[torch.float64] / 1e12
    print(
        f"  modelled on one GPU: {device_total:.2f} h, from each setting's count of "
        f"launched operations ({LAUNCH_S * 1e6:g} µs each) and matrix-product flops "
        f"({rate:g} TFLOP/s) per epoch (benchkit.DeviceWork)"
    )
    return total, device_total


# ---------------------------------------------------------------- main


def _sgd_overrides(competitor: str, sgd_dtype: str | None, sgd_impl: str | None) -> tuple:
    """The SGD-type competitors' dtype and step (``solver.impl``) when given; ADMM as is."""
    if competitor.startswith("admm"):
        return ()
    return (*((f"dtype={sgd_dtype}",) if sgd_dtype else ()),
            *((f"solver.impl={sgd_impl}",) if sgd_impl else ()))  # fmt: skip


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--projection-only", action="store_true", help="skip sweeps and demo")
    parser.add_argument(
        "--sgd-dtype", default=None, help="dtype of the SGD-type competitors (default: preset)"
    )
    parser.add_argument(
        "--sgd-impl",
        default=None,
        help="their step: fast (default) or reference (the readable autograd one)",
    )


def main() -> None:
    args = parse_args(__doc__, options)
    header("Studies: small budgets, the demo, and the full depth study projected")
    timed = []
    with tempfile.TemporaryDirectory(prefix="admmlab-bench-") as tmp:
        if not args.projection_only:
            timed = time_sweeps(Path(tmp))
        if not (args.quick or args.projection_only):
            demo = Path(tmp) / "demo"
            demo.mkdir()
            timed.append(time_demo(demo))
    if timed:
        table(
            "Small-budget sweeps (each a fresh process and store)",
            ["sweep", "seconds", "status"],
            [(t.name, t.seconds, t.status) for t in timed],
        )
    grid = depth_grid()
    costs = [
        cost
        for competitor in COMPETITORS
        for cost in project_competitor(
            competitor,
            grid,
            epochs=2,
            quick=args.quick,
            extra=_sgd_overrides(competitor, args.sgd_dtype, args.sgd_impl),
        )
    ]
    hours, device_hours = report_projection(costs, grid)
    summary(
        "studies",
        sweeps_s=sum(t.seconds for t in timed if "demo" not in t.name),
        failed=sum(t.status.startswith("FAILED") for t in timed),
        depth_study_h=hours,
        depth_study_gpu_h=device_hours,
    )


if __name__ == "__main__":
    main()
