"""MLflow bookkeeping: this package is the only place that imports mlflow.

This module writes; :mod:`admmlab.tracking.reader` reads studies back for reports.

A *setting run* holds one configuration; with K > 1 trials its seeds are
child runs and the setting run holds the mean and std of each final metric.
A *study run* (one per sweep; a continued Optuna study keeps its run) is the
parent of its setting runs. Parents are passed by id, so the hierarchy holds
across processes.

A grid sweep run again with the same overrides continues its study run: runs a
killed process left RUNNING are marked KILLED, and each setting that FINISHED
there (found by its ``admmlab.setting_key``) is not trained again.
"""

import fcntl
import hashlib
import math
import os
import socket
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from admmlab import interrupts
from admmlab.paths import mlruns_dir

T = TypeVar("T")
PARENT_TAG = "mlflow.parentRunId"
STUDY_TAG = "admmlab.study"
KIND_TAG = "admmlab.kind"  # "study", "setting" or "trial"
OWNER_TAG = "admmlab.owner"  # host:pid of the process that opened the run
SETTING_KEY_TAG = "admmlab.setting_key"  # a setting's values, hashed: equal runs, equal keys
SWEEP_KEY_TAG = "admmlab.sweep_key"  # a grid sweep's overrides, hashed
STALE_REASON = (
    "left RUNNING by a process that ended without closing it (killed); "
    "the resumed study runs the setting again"
)
MAX_BATCH = 1000  # MLflow's limit of entities per log_batch call


class TrackingError(RuntimeError):
    """The store cannot be reached or written; the message names the URI."""


def default_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def _retry(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call ``fn`` shielded from interrupts, retrying while SQLite reports a concurrent writer."""
    delay = 0.05
    for attempt in range(40):
        try:
            with interrupts.shielded():
                return fn(*args, **kwargs)
        except MlflowException as err:
            if "locked" not in str(err) or attempt == 39:
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
    raise AssertionError("unreachable")


def check_store(uri: str) -> None:
    """Fail fast, naming ``uri``, if the store cannot be reached or written."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
                return
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(f"tracking URI {uri} cannot be reached: {err}") from None
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"tracking store {uri} cannot be created: {err}") from None
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking store {uri} is not writable (folder {folder})")


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise a store's find-then-create steps across the processes of one machine.

    MLflow creates and migrates a SQLite schema on first use, and two workers doing so
    at once on a fresh file collide ("table … already exists"); two workers of one
    sweep started together would each find no study run and open one. A store that
    is not a SQLite file is locked through a file in the project's ``mlruns/``.
    """
    if uri.startswith("sqlite:///"):
        lock_path = Path(uri.removeprefix("sqlite:///")).with_suffix(".lock")
    else:
        lock_path = mlruns_dir() / "tracking.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Store:
    """A tracking store and one experiment in it."""

    def __init__(self, experiment: str, uri: str | None = None):
        self.uri = uri or default_uri()
        check_store(self.uri)
        with _store_lock(self.uri), interrupts.shielded():  # not half-way through a migration
            self.client = MlflowClient(self.uri)
            self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        found = _retry(self.client.get_experiment_by_name, name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            # A SQLite store has no artifact root of its own: keep artifacts beside it.
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
        try:
            return _retry(self.client.create_experiment, name, artifact_location=location)
        except MlflowException:  # another process created it first
            return _retry(self.client.get_experiment_by_name, name).experiment_id

    def start_run(
        self, name: str, *, parent: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        all_tags = {OWNER_TAG: owner(), **(tags or {})}
        if parent:
            all_tags[PARENT_TAG] = parent
        run = _retry(self.client.create_run, self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            _retry(self.client.log_batch, run_id, params=items[i : i + 100])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        _retry(self.client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: Sequence[Metric]) -> None:
        for i in range(0, len(metrics), MAX_BATCH):
            _retry(self.client.log_batch, run_id, metrics=list(metrics[i : i + MAX_BATCH]))

    def log_final(self, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.log_metrics(run_id, [Metric(k, _finite(v), now, step) for k, v in values.items()])

    def log_text(self, run_id: str, text: str, name: str) -> None:
        _retry(self.client.log_text, run_id, text, name)

    def log_artifacts(self, run_id: str, folder: Path) -> None:
        _retry(self.client.log_artifacts, run_id, str(folder))

    def end_run(self, run_id: str, status: str) -> None:
        _retry(self.client.set_terminated, run_id, status)


def _finite(v: float) -> float:
    """MLflow stores NaN, but not every backend takes ±inf: clamp those."""
    v = float(v)
    return v if math.isfinite(v) or math.isnan(v) else math.copysign(1.7e308, v)


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


INTERRUPTED = "interrupted (SIGINT/SIGTERM)"


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


def artifact_dir() -> tempfile.TemporaryDirectory:
    """A scratch folder whose files are logged as artifacts, then removed."""
    return tempfile.TemporaryDirectory(prefix="admmlab-")


def start_study(
    store: Store,
    name: str,
    definition: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
) -> str:
    """Open a study run (one per sweep) tagged with its name; returns its id."""
    run_id = store.start_run(name, tags={**(tags or {}), KIND_TAG: "study", STUDY_TAG: name})
    store.log_params(run_id, definition)
    return run_id


@contextmanager
def study_run(store: Store, name: str, definition: Mapping[str, Any]) -> Iterator[str]:
    """A new study run for the body, which ends it (:func:`end_study`); a signal ends
    it KILLED and an exception FAILED, with ``failure_reason``. Both re-raise."""
    run_id = None

    def end(status: str, reason: str) -> None:
        if run_id:
            abort_study(store, run_id, status, reason)

    with _ended_on_error(end):
        with interrupts.shielded():  # a signal while it opens waits until it can be closed
            run_id = start_study(store, name, definition)
        yield run_id


def latest_study(store: Store, name: str | None, tags: Mapping[str, str]) -> str | None:
    """The newest study run named ``name`` (any name if None) and carrying ``tags`` in the
    store's experiment, if any."""
    wanted = {KIND_TAG: "study", **({STUDY_TAG: name} if name else {}), **tags}
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in wanted.items())
    runs = _retry(
        store.client.search_runs,
        [store.experiment_id],
        filter_string=query,
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


def open_study(
    store: Store,
    name: str,
    definition: Mapping[str, Any],
    tags: Mapping[str, str],
    *,
    continues: bool,
    sweep_key: str | None = None,
) -> tuple[str, bool]:
    """The study run of a sweep, and whether it was one already there.

    With ``tags`` (an Optuna study's), the newest run named ``name`` carrying them is
    reopened when the sweep ``continues`` that study or when the run is still RUNNING
    (another worker of the study opened it). With a ``sweep_key`` (a grid sweep's), the
    newest run of the same sweep is reopened unless a live process still runs it
    (:func:`resumable_study`), its stale runs marked KILLED. Otherwise a new run is
    opened. Find and open happen under one lock, so workers started together on one
    machine share a run.
    """
    with _store_lock(store.uri):
        if tags:
            previous = latest_study(store, name, tags)
            if previous and (continues or _status(store, previous) == "RUNNING"):
                reopen_study(store, previous)
                return previous, True
        elif sweep_key:
            previous = resumable_study(store, sweep_key)
            if previous:
                close_stale_runs(store, previous)
                reopen_study(store, previous)
                return previous, True
            tags = {SWEEP_KEY_TAG: sweep_key}
        return start_study(store, name, definition, tags), False


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(tag: str | None) -> bool:
    """Whether the process an ``admmlab.owner`` tag names still runs. A process on
    another host cannot be asked: its run counts as stale."""
    host, _, pid = (tag or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def digest(text: str) -> str:
    """A short, stable key for ``text`` (a tag value MLflow can search for)."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def resumable_study(store: Store, sweep_key: str) -> str | None:
    """The newest study run of this grid sweep (its name is among its overrides, or was
    a timestamp), unless a live process still runs it: the sweep continues it (a finished
    one too, whose settings are then all skipped; ``restart=true`` opens a new one)."""
    previous = latest_study(store, None, {SWEEP_KEY_TAG: sweep_key})
    if previous is None:
        return None
    run = _retry(store.client.get_run, previous)
    if run.info.status == "RUNNING" and owner_alive(run.data.tags.get(OWNER_TAG)):
        return None  # another invocation is running it now
    return previous


def close_stale_runs(store: Store, study_id: str) -> list[str]:
    """Mark KILLED every setting run (and its trial runs) of the study that a process
    ended without closing; returns the settings' ids."""
    stale = [r for r in study_settings(store, study_id) if r.info.status == "RUNNING"]
    for setting in stale:
        for trial in _children(store, setting.info.run_id):
            if trial.info.status == "RUNNING":
                _end_stale(store, trial.info.run_id)
        _end_stale(store, setting.info.run_id)
    return [r.info.run_id for r in stale]


def _end_stale(store: Store, run_id: str) -> None:
    store.set_tags(run_id, {"failure_reason": STALE_REASON})
    store.end_run(run_id, "KILLED")


def _children(store: Store, run_id: str) -> list[Any]:
    query = f"tags.`{PARENT_TAG}` = '{run_id}'"
    return _retry(
        store.client.search_runs, [store.experiment_id], filter_string=query, max_results=50000
    )


def finished_setting(store: Store, study_id: str, setting_key: str) -> Any | None:
    """The study's FINISHED setting run with this ``setting_key``, if any."""
    query = (
        f"tags.`{PARENT_TAG}` = '{study_id}' and tags.`{SETTING_KEY_TAG}` = '{setting_key}' "
        "and attributes.status = 'FINISHED'"
    )
    runs = _retry(
        store.client.search_runs, [store.experiment_id], filter_string=query, max_results=1
    )
    return runs[0] if runs else None


def study_name_of(store: Store, run_id: str) -> str:
    return _retry(store.client.get_run, run_id).data.tags[STUDY_TAG]


def _status(store: Store, run_id: str) -> str:
    return _retry(store.client.get_run, run_id).info.status


def reopen_study(store: Store, run_id: str) -> None:
    """Mark a study run RUNNING again, for a sweep that goes on with the same study."""
    _retry(store.client.update_run, run_id, status="RUNNING")
    store.set_tags(run_id, {OWNER_TAG: owner()})
    if "failure_reason" in _retry(store.client.get_run, run_id).data.tags:
        _retry(store.client.delete_tag, run_id, "failure_reason")


def abort_study(store: Store, run_id: str, status: str, reason: str) -> None:
    """End a study run that is still RUNNING with ``status`` and ``failure_reason``."""
    with interrupts.shielded():
        if _status(store, run_id) != "RUNNING":
            return
        store.set_tags(run_id, {"failure_reason": reason})
        store.end_run(run_id, status)


def record_best(store: Store, run_id: str, best: Mapping[str, Any] | None) -> None:
    """Record a study's best setting so far (objective and parameters) on its run."""
    if best:
        store.set_tags(run_id, {f"best.{k}": v for k, v in best.items()})
        if "objective" in best:
            store.log_final(run_id, {"best_objective": float(best["objective"])})


def end_study(
    store: Store, run_id: str, *, best: Mapping[str, Any] | None = None, status: str = "FINISHED"
) -> None:
    """Close a study run, recording the best objective and its parameters."""
    record_best(store, run_id, best)
    store.end_run(run_id, status)


def study_settings(store: Store, study_id: str) -> list[Any]:
    """The setting runs of a study (children of its run), newest first."""
    query = f"tags.`{PARENT_TAG}` = '{study_id}' and tags.`{KIND_TAG}` = 'setting'"
    return _retry(
        store.client.search_runs, [store.experiment_id], filter_string=query, max_results=50000
    )
