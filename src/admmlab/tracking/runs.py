"""Setting runs: one per configuration, with a child run per trial when K > 1,
their per-epoch curves batched into the store, and how each one ends."""

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Metric

from admmlab import interrupts
from admmlab.tracking.store import Store, _finite
from admmlab.tracking.tags import INTERRUPTED, KIND_TAG, StoppedEarly, objective_keys


class SettingRun:
    """One setting: a run, plus one child run per trial when K > 1.

    Per-epoch metrics go to MLflow every ``stride`` epochs (the first, the last
    and the last one seen before a failure always), buffered and written in
    batches every ``flush_every`` epochs: a SQLite store costs ~50 µs a row, so
    a long run's curves are thinned; ``history.csv`` keeps every epoch.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        trial_run_ids: list[str],
        flush_every: int,
        stride: int = 1,
    ):
        self.store, self.run_id, self.trial_run_ids = store, run_id, trial_run_ids
        self.flush_every, self.stride = max(1, flush_every), max(1, stride)
        self._buffer: list[list[Metric]] = [[] for _ in self.targets]
        self._spread: list[Metric] = []  # the setting run's per-epoch mean, min and max
        self._skipped: tuple[int, Mapping[str, Sequence[float]]] | None = None
        self._stopped: set[int] = set()

    @property
    def targets(self) -> list[str]:
        """The run that receives trial k's per-epoch metrics."""
        return self.trial_run_ids or [self.run_id]

    def log_epoch(self, epoch: int, metrics: Mapping[str, Sequence[float]]) -> None:
        """``metrics[name][k]`` is trial k's value at ``epoch``."""
        if epoch > 1 and epoch % self.stride:
            self._skipped = (epoch, metrics)
            return
        self._skipped = None
        self._append(epoch, metrics)
        if epoch % self.flush_every == 0:
            self.flush()

    def _append(self, epoch: int, metrics: Mapping[str, Sequence[float]]) -> None:
        now = int(time.time() * 1000)
        for k, buf in enumerate(self._buffer):
            buf.extend(Metric(name, _finite(v[k]), now, epoch) for name, v in metrics.items())
        if self.trial_run_ids:  # so the setting run, the one a user clicks, has curves too
            self._spread.extend(_spread(metrics, now, epoch))

    def flush(self) -> None:
        pairs = list(zip(self.targets, self._buffer, strict=True))
        if self.trial_run_ids:
            pairs.append((self.run_id, self._spread))
        for run_id, buf in pairs:
            if buf:
                with interrupts.shielded():  # an interrupt between the two would log ``buf`` twice
                    self.store.log_metrics(run_id, buf)
                    buf.clear()

    def stop_trials(self, reasons: Mapping[int, str]) -> None:
        """Trials ``k`` that stopped early (diverged): each trial run is tagged with its
        ``failure_reason`` and will end FAILED; the setting run's ``n_diverged``
        (:meth:`log_summary`) counts them. A setting of one trial has no trial run:
        its own ``failure_reason`` says why."""
        for k, why in reasons.items() if self.trial_run_ids else ():
            self.store.set_tags(self.trial_run_ids[k], {"failure_reason": why[:5000]})
        self._stopped = set(reasons)

    def log_summary(self, summary: Mapping[str, Sequence[float]]) -> None:
        """Per-trial finals on the trial runs; on the setting run, mean and std over the
        trials that did not stop early (NaN when none finished), and ``n_diverged``, the
        number that did."""
        if self.trial_run_ids:
            for k, run_id in enumerate(self.trial_run_ids):
                self.store.log_final(run_id, {n: v[k] for n, v in summary.items()})
        aggregated = {}
        for name, values in summary.items():
            vals = [float(v) for k, v in enumerate(values) if k not in self._stopped]
            finite = bool(vals) and all(math.isfinite(v) for v in vals)
            # statistics works in exact arithmetic: huge finite values do not overflow
            aggregated[name] = statistics.mean(vals) if finite else math.nan
            if len(vals) > 1:
                aggregated[f"{name}_std"] = statistics.stdev(vals) if finite else math.nan
        aggregated["n_diverged"] = len(self._stopped)
        self.store.log_final(self.run_id, aggregated)

    def finish(
        self,
        summary: Mapping[str, Sequence[float]],
        objectives: Mapping[str, float],
        *,
        stopped: Mapping[int, str] | None = None,
        artifacts: Callable[[Path], None] | None = None,
    ) -> None:
        """Record how the setting ended, in one call: the trials that stopped early and
        why (:meth:`stop_trials`), the per-trial finals and their mean and std
        (:meth:`log_summary`), the objective(s) a sweeper reads with their names, and
        last the files ``artifacts`` writes into a scratch folder. The run ends
        FINISHED as its block is left."""
        self.stop_trials(stopped or {})
        self.log_summary(summary)
        keys = objective_keys(len(objectives))
        self.store.log_final(self.run_id, dict(zip(keys, objectives.values(), strict=True)))
        self.store.set_tags(self.run_id, {"objective_name": next(iter(objectives))})
        if artifacts is not None:
            with artifact_dir() as folder:
                artifacts(folder)
                self.store.log_artifacts(self.run_id, folder)

    def end(self, status: str, reason: str | None = None) -> None:
        """Flush what is buffered (and the last epoch seen), then close with ``status``.

        Shielded as a whole, so that an interrupt waits until the run is closed.
        """
        with interrupts.shielded():
            if self._skipped is not None:
                self._append(*self._skipped)
                self._skipped = None  # ended again (KILLED by a signal that came as it ended): once
            self.flush()
            if reason:
                self.store.set_tags(self.run_id, {"failure_reason": reason[:5000]})
            for k, run_id in enumerate(self.trial_run_ids):
                stopped = k in self._stopped and status == "FINISHED"
                self.store.end_run(run_id, "FAILED" if stopped else status)
            self.store.end_run(self.run_id, status)


def _spread(metrics: Mapping[str, Sequence[float]], now: int, epoch: int) -> list[Metric]:
    """Each curve's mean, min and max over the trials still finite at ``epoch``."""
    out = []
    for name, values in metrics.items():
        alive = [float(v) for v in values if math.isfinite(v)]
        if alive:
            out += [
                Metric(name, statistics.fmean(alive), now, epoch),
                Metric(f"{name}_min", min(alive), now, epoch),
                Metric(f"{name}_max", max(alive), now, epoch),
            ]
    return out


@contextmanager
def _ended_on_error(end: Callable[[str, str], None]) -> Iterator[None]:
    """Call ``end(status, reason)`` when the block is left by a signal (KILLED) or an
    exception (FAILED, naming it); either is re-raised."""
    try:
        yield
    except KeyboardInterrupt:
        interrupts.clear()
        end("KILLED", INTERRUPTED)
        raise
    except StoppedEarly as err:
        end("KILLED", str(err))
        raise
    except BaseException as err:
        end("FAILED", f"{type(err).__name__}: {err}")
        raise


@contextmanager
def setting_run(
    store: Store,
    name: str,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    seeds: Sequence[int],
    parent: str | None = None,
    flush_every: int = 100,
    stride: int = 1,
) -> Iterator[SettingRun]:
    """Open a setting run (and its trial runs); end it FINISHED, FAILED or KILLED.

    An exception ends it FAILED with ``failure_reason``; KeyboardInterrupt (also
    raised for SIGTERM by the entry point) ends it KILLED. Both re-raise.
    """
    tags = {k: str(v) for k, v in tags.items()}
    opened: list[str] = []
    run: SettingRun | None = None

    def end(status: str, reason: str) -> None:
        """End ``run``, or, when opening it failed half-way, the runs already opened."""
        if opened:
            (run or SettingRun(store, opened[0], opened[1:], flush_every=1)).end(status, reason)

    with _ended_on_error(end):
        # A signal while the runs open is raised once every run opened is on record.
        with interrupts.shielded():
            opened.append(store.start_run(name, parent=parent, tags={**tags, KIND_TAG: "setting"}))
            for seed in seeds if len(seeds) > 1 else ():
                trial_tags = {**tags, KIND_TAG: "trial", "seed": str(seed)}
                opened.append(
                    store.start_run(f"{name}/seed={seed}", parent=opened[0], tags=trial_tags)
                )
            run = SettingRun(store, opened[0], opened[1:], flush_every, stride)
        store.log_params(run.run_id, params)
        for seed, tid in zip(seeds, run.trial_run_ids, strict=False):
            store.log_params(tid, {**params, "seed": seed})
        yield run
        run.end("FINISHED")  # a signal while it ends makes it KILLED, as the sweep sees it


def record_failed_setting(
    store: Store,
    name: str,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    parent: str,
    reason: str,
) -> str:
    """Record a setting refused before it could train (a bad value, missing data) as a
    FAILED setting run under ``parent``, with its ``failure_reason``; returns its id."""
    all_tags = {**{k: str(v) for k, v in tags.items()}, KIND_TAG: "setting"}
    with interrupts.shielded():  # never left RUNNING half-recorded
        run_id = store.start_run(name, parent=parent, tags=all_tags)
        try:
            store.log_params(run_id, params)
        finally:
            store.set_tags(run_id, {"failure_reason": reason[:5000]})
            store.end_run(run_id, "FAILED")
    return run_id


@contextmanager
def artifact_dir() -> Iterator[Path]:
    """A scratch folder whose files are logged as artifacts, then removed."""
    with tempfile.TemporaryDirectory(prefix="admmlab-") as folder:
        yield Path(folder)
