"""A tracking store and one experiment in it; every write retries while SQLite
reports a concurrent writer and is shielded from interrupts."""

import fcntl
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from admmlab import interrupts
from admmlab.paths import mlruns_dir
from admmlab.tracking.tags import OWNER_TAG, PARENT_TAG, check_store, default_uri, owner

T = TypeVar("T")

MAX_BATCH = 1000  # MLflow's limit of entities per log_batch call


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
