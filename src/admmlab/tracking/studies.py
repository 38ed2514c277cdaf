"""Study runs: one per sweep, the parent of its setting runs; found again when a
sweep resumes or an Optuna study goes on, and closed with its best setting."""

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from admmlab import interrupts
from admmlab.tracking.runs import _ended_on_error
from admmlab.tracking.store import Store, _retry, _store_lock
from admmlab.tracking.tags import (
    INVOCATION_TAG,
    KIND_TAG,
    OWNER_TAG,
    PARENT_TAG,
    SETTING_KEY_TAG,
    STALE_REASON,
    STUDY_TAG,
    SWEEP_KEY_TAG,
    digest,
    owner,
    owner_alive,
)


@dataclass(frozen=True)
class StudyContext:
    """The study run that a sweep's settings are recorded under, as a job sees it."""

    run_id: str
    name: str
    experiment: str
    since_ms: int = 0  # when this invocation began: its failure rate counts from then
    size: int | None = None  # settings this invocation launches, where known


def mark_invocation(
    store: Store, study: StudyContext, sweep_dir: str, size: int | None = None
) -> None:
    """Tag the study run with this invocation of its sweep (its ``hydra.sweep.dir``), so
    that its jobs, in this process or any other, find it (:func:`invocation_study`).
    Workers of one Optuna study each tag their own."""
    value = json.dumps({"dir": sweep_dir, "since": study.since_ms, "size": size})
    store.set_tags(study.run_id, {f"{INVOCATION_TAG}.{digest(sweep_dir)}": value})


def invocation_study(uri: str, sweep_dir: str) -> StudyContext | None:
    """The study run of the sweep invocation writing to ``sweep_dir``, if any."""
    client = MlflowClient(uri)
    key = f"{INVOCATION_TAG}.{digest(sweep_dir)}"
    experiments = [e.experiment_id for e in _retry(client.search_experiments, ViewType.ALL)]
    runs = _retry(
        client.search_runs,
        experiments,
        filter_string=f"tags.`{KIND_TAG}` = 'study' and tags.`{key}` LIKE '%'",
        max_results=100,
    )
    if not runs:
        return None
    # Two sweeps written to one fixed folder: the one invoked last (a resumed one too)
    run = max(runs, key=lambda r: json.loads(r.data.tags[key])["since"])
    invocation = json.loads(run.data.tags[key])
    return StudyContext(
        run.info.run_id,
        run.data.tags[STUDY_TAG],
        _retry(client.get_experiment, run.info.experiment_id).name,
        int(invocation["since"]),
        invocation["size"],
    )


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
