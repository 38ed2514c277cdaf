"""What MLflow tracking adds to a run: a 2000-epoch SGD run with and without it.

    python benchmarks/tracking_overhead.py [--quick]

Composes the run as ``admmlab-train`` would (solver=sgd activation=relu, depth 2,
width 20, N = 1000, 2000 epochs; ``--quick``: 200) and calls ``admmlab.setting.run``
with tracking on (a temporary SQLite store through ``MLFLOW_TRACKING_URI``) and
with ``tracking.enabled=false``, interleaved. Prints the overhead as a fraction of
the untracked run, the first run's extra cost of creating the store, and where a
tracked run's tracking time goes (cProfile, cumulative seconds).
"""

import cProfile
import os
import pstats
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from admmlab import setting
from admmlab.paths import conf_dir
from benchkit import header, interleaved, parse_args, summary, table

BASE_OVERRIDES = (
    "solver=sgd",
    "activation=relu",
    "model.width=20",
    "model.depth=2",
    "dataset.n_train=1000",
)
# Tracking's parts, as (file, function) in the profile.
TRACKING_PARTS = {
    "open the store (Store.__init__)": ("admmlab/tracking/store.py", "__init__"),
    "start the run (Store.start_run)": ("admmlab/tracking/store.py", "start_run"),
    "params (Store.log_params)": ("admmlab/tracking/store.py", "log_params"),
    "per-epoch callback (setting.log_epoch)": ("admmlab/setting.py", "log_epoch"),
    "  of which batched writes (SettingRun.flush)": ("admmlab/tracking/runs.py", "flush"),
    "end of the setting (SettingRun.finish)": ("admmlab/tracking/runs.py", "finish"),
    "  of which the summary (SettingRun.log_summary)": ("admmlab/tracking/runs.py", "log_summary"),
    "  of which the artifacts (setting.write_artifacts)": ("admmlab/setting.py", "write_artifacts"),
    "  of which the learning-curve figure": ("admmlab/artifacts.py", "learning_curve"),
    "close (SettingRun.end)": ("admmlab/tracking/runs.py", "end"),
}


@dataclass
class Overhead:
    epochs: int
    tracked_s: float
    untracked_s: float
    first_tracked_s: float

    @property
    def fraction(self) -> float:
        """Extra time of a tracked run over an untracked one, per untracked second."""
        return (self.tracked_s - self.untracked_s) / self.untracked_s


def composed(epochs: int, tracking: bool, extra: Sequence[str] = ()) -> DictConfig:
    overrides = [*BASE_OVERRIDES, f"solver.epochs={epochs}", f"tracking.enabled={tracking}"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=[*overrides, *extra])


def measure(epochs: int, repeats: int, store: Path, extra: Sequence[str] = ()) -> Overhead:
    """Tracked against untracked runs into the SQLite store at ``store`` (a folder)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    tracked, untracked = composed(epochs, True, extra), composed(epochs, False, extra)
    start = time.perf_counter()
    setting.run(tracked)  # creates the store's schema: a one-time cost, reported apart
    first = time.perf_counter() - start
    times = interleaved(
        {"tracked": lambda: setting.run(tracked), "untracked": lambda: setting.run(untracked)},
        repeats,
    )
    return Overhead(epochs, times["tracked"], times["untracked"], first)


def profile_tracked(epochs: int, store: Path, extra: Sequence[str] = ()) -> dict[str, float]:
    """Cumulative seconds of each part of tracking in one profiled tracked run."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    cfg = composed(epochs, True, extra)
    profiler = cProfile.Profile()
    profiler.runcall(setting.run, cfg)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    parts = {"whole run (profiled)": ("admmlab/setting.py", "run"), **TRACKING_PARTS}
    out = dict.fromkeys(parts, 0.0)
    for (path, _, name), (_, _, _, cumulative, _) in stats.items():
        for label, (file, function) in parts.items():
            if name == function and path.endswith(file):
                out[label] += cumulative
    return out


def report(result: Overhead, parts: dict[str, float]) -> None:
    table(
        f"SGD, depth 2, width 20, N = 1000, {result.epochs} epochs (median seconds)",
        ["run", "seconds"],
        [
            ("tracking.enabled=false", result.untracked_s),
            ("tracked (existing store)", result.tracked_s),
            ("tracked, first run (new store)", result.first_tracked_s),
        ],
    )
    print(f"  overhead: {result.fraction:.1%} of the untracked run (target ≤ 10 %)")
    table(
        "Where a tracked run's tracking time goes (cProfile; indented rows are inside the "
        "row above)",
        ["part", "seconds"],
        list(parts.items()),
    )
    summary("tracking_overhead", fraction=result.fraction, epochs=result.epochs)


def main() -> None:
    args = parse_args(__doc__)
    header("Tracking overhead of admmlab.setting.run")
    epochs, repeats = (200, 1) if args.quick else (2000, 3)
    with tempfile.TemporaryDirectory(prefix="admmlab-bench-") as tmp:
        result = measure(epochs, repeats, Path(tmp))
        parts = profile_tracked(epochs, Path(tmp))
    report(result, parts)


if __name__ == "__main__":
    main()
