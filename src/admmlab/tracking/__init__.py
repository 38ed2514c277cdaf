"""MLflow bookkeeping: this package is the only place that imports mlflow.

By concept: :mod:`~admmlab.tracking.tags` (the tags, reasons and errors every
module shares; light), :mod:`~admmlab.tracking.store` (a store and its writes),
:mod:`~admmlab.tracking.runs` (setting runs and their trials),
:mod:`~admmlab.tracking.studies` (study runs, resuming) and
:mod:`~admmlab.tracking.reader` (reading studies back for reports).

A *setting run* holds one configuration; with K > 1 trials its seeds are child
runs and the setting run holds the mean and std of each final metric. A *study
run* (one per sweep; a continued Optuna study keeps its run) is the parent of its
setting runs. Parents are passed by id, so the hierarchy holds across processes.

The names below are importable from the package itself. Those that need mlflow
load their module on first use, so a command refused before training never
imports it.
"""

import importlib
from typing import Any

from admmlab.tracking.tags import (
    INTERRUPTED,
    INVOCATION_TAG,
    KIND_TAG,
    OPTUNA_STORAGE_TAG,
    OPTUNA_STUDY_TAG,
    OWNER_TAG,
    PARENT_TAG,
    SETTING_KEY_TAG,
    STALE_REASON,
    STUDY_TAG,
    SWEEP_KEY_TAG,
    StoppedEarly,
    TrackingError,
    check_store,
    default_uri,
    digest,
    objective_keys,
    owner,
    owner_alive,
)

_LAZY = {
    "store": ("Store",),
    "runs": ("SettingRun", "artifact_dir", "record_failed_setting", "setting_run"),
    "studies": (
        "StudyContext",
        "abort_study",
        "close_stale_runs",
        "end_study",
        "finished_setting",
        "invocation_study",
        "latest_study",
        "mark_invocation",
        "open_study",
        "record_best",
        "reopen_study",
        "resumable_study",
        "start_study",
        "study_name_of",
        "study_run",
        "study_settings",
    ),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "INTERRUPTED",
    "INVOCATION_TAG",
    "KIND_TAG",
    "OPTUNA_STORAGE_TAG",
    "OPTUNA_STUDY_TAG",
    "OWNER_TAG",
    "PARENT_TAG",
    "SETTING_KEY_TAG",
    "STALE_REASON",
    "STUDY_TAG",
    "SWEEP_KEY_TAG",
    "StoppedEarly",
    "TrackingError",
    "check_store",
    "default_uri",
    "digest",
    "objective_keys",
    "owner",
    "owner_alive",
    *_HOME,
]


def __getattr__(name: str) -> Any:
    """The mlflow-backed names, imported from their module on first use."""
    if name in _HOME:
        return getattr(importlib.import_module(f"admmlab.tracking.{_HOME[name]}"), name)
    raise AttributeError(f"module 'admmlab.tracking' has no attribute {name!r}")
