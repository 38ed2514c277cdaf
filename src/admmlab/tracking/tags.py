"""What every tracking module shares and nothing else needs mlflow for: the tags
that structure a store, the reasons a run ends early, the store's address and the
errors. Light to import: a command that fails before training never loads mlflow.
"""

import hashlib
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from admmlab.paths import mlruns_dir

PARENT_TAG = "mlflow.parentRunId"

STUDY_TAG = "admmlab.study"

# A study run of the Optuna sweeper names its Optuna study and storage
OPTUNA_STUDY_TAG = "admmlab.optuna_study"

OPTUNA_STORAGE_TAG = "admmlab.optuna_storage"

KIND_TAG = "admmlab.kind"  # "study", "setting" or "trial"

OWNER_TAG = "admmlab.owner"  # host:pid of the process that opened the run

SETTING_KEY_TAG = "admmlab.setting_key"  # a setting's values, hashed: equal runs, equal keys

SWEEP_KEY_TAG = "admmlab.sweep_key"  # a grid sweep's overrides, hashed
# One per invocation of a sweep (``.<hash of hydra.sweep.dir>``): how its jobs find
# their study run, when the invocation began and how many settings it launches
INVOCATION_TAG = "admmlab.invocation"

INTERRUPTED = "interrupted (SIGINT/SIGTERM)"

STALE_REASON = (
    "left RUNNING by a process that ended without closing it (killed); "
    "the resumed study runs the setting again"
)


class TrackingError(RuntimeError):
    """The store cannot be reached or written; the message names the URI."""


class StoppedEarly(Exception):
    """A run stopped on purpose before its last epoch (e.g. pruned by a sweeper): it
    ends KILLED, with this message as its reason, and is no failure."""


def objective_keys(count: int) -> list[str]:
    """The metrics a setting run records its sweeper value(s) under: ``objective``,
    then ``objective_1``, … for the further objectives of a multi-objective study."""
    return ["objective", *(f"objective_{i}" for i in range(1, count))]


def default_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


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
