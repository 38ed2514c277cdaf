"""Reading a study back from MLflow: the report's only contact with the store.

Everything the report draws comes from here, never from a process's memory,
so any past study can be re-drawn.
"""

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from admmlab.tracking import (
    KIND_TAG,
    OPTUNA_STUDY_TAG,
    PARENT_TAG,
    SETTING_KEY_TAG,
    STUDY_TAG,
    Store,
    artifact_dir,
)

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
PAGE = 1000


class StudyNotFound(LookupError):
    """No study run matches the name or id; the message is one line."""


@dataclass(frozen=True)
class RunRecord:
    """What the report needs of one MLflow run (final metric values only)."""

    run_id: str
    name: str
    status: str
    start_time: int
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def of(cls, run: Run) -> "RunRecord":
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or "",
            status=run.info.status,
            start_time=run.info.start_time or 0,
            params=dict(run.data.params),
            tags=dict(run.data.tags),
            metrics=dict(run.data.metrics),
        )


@dataclass
class StudyRecord:
    """A study run, its setting runs and, per setting, its trial runs (K > 1)."""

    study: RunRecord
    experiment: str
    uri: str
    settings: list[RunRecord]
    trials: dict[str, list[RunRecord]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.study.tags.get(STUDY_TAG) or self.study.name


def open_client(uri: str) -> MlflowClient:
    """A client on ``uri``; a SQLite file that does not exist is not created."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StudyNotFound(f"no tracking store at {path} (tracking URI {uri})")
    return MlflowClient(uri)


def _experiment_ids(client: MlflowClient) -> list[str]:
    ids, token = [], None
    while True:
        page = client.search_experiments(ViewType.ACTIVE_ONLY, max_results=PAGE, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def _search(client: MlflowClient, experiments: list[str], query: str) -> list[Run]:
    """Every active run matching ``query``, newest first, across pages."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiments,
            query,
            ViewType.ACTIVE_ONLY,
            max_results=PAGE,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def find_study(client: MlflowClient, ref: str) -> Run:
    """The study run with id ``ref``, else the latest study run named ``ref``."""
    if RUN_ID.match(ref):
        try:
            run = client.get_run(ref)
        except MlflowException:
            run = None
        if run is not None and run.data.tags.get(KIND_TAG) == "study":
            return run
    experiments = _experiment_ids(client)
    # Names are matched here rather than in the filter, so any characters are safe.
    for run in _search(client, experiments, f"tags.`{KIND_TAG}` = 'study'"):
        if ref in _names(run):
            return run
    raise StudyNotFound(f"unknown study {ref!r}: no study run has that name or id")


def _names(run: Run) -> tuple[str | None, ...]:
    """The names a study run answers to: its own, its study tag and its Optuna study's."""
    return (run.info.run_name, run.data.tags.get(STUDY_TAG), run.data.tags.get(OPTUNA_STUDY_TAG))


def _children(client: MlflowClient, experiments: list[str], parent: str) -> list[RunRecord]:
    runs = _search(client, experiments, f"tags.`{PARENT_TAG}` = '{parent}'")
    return sorted((RunRecord.of(r) for r in runs), key=lambda r: (r.start_time, r.run_id))


def newest_per_setting(settings: list[RunRecord]) -> list[RunRecord]:
    """Each setting once: a resumed study ran its killed settings again, and only the
    newest run of a setting (same ``admmlab.setting_key``) counts. Oldest first."""
    newest = {}
    for s in settings:  # oldest first: a later run of the same setting replaces it
        newest[s.tags.get(SETTING_KEY_TAG) or s.run_id] = s
    kept = {s.run_id for s in newest.values()}
    return [s for s in settings if s.run_id in kept]


def load_study(uri: str, ref: str) -> StudyRecord:
    """The study ``ref`` (name or run id) with its settings and trials, read from ``uri``."""
    client = open_client(uri)
    return _record(client, uri, find_study(client, ref), _experiment_ids(client))


def load_study_runs(uri: str, name: str) -> list[StudyRecord]:
    """Every study run named ``name``, oldest first: the chunks of a study run piecewise
    (e.g. its seeds split over several invocations)."""
    client = open_client(uri)
    experiments = _experiment_ids(client)
    runs = [
        run
        for run in _search(client, experiments, f"tags.`{KIND_TAG}` = 'study'")
        if name in _names(run)
    ]
    if not runs:
        raise StudyNotFound(f"unknown study {name!r}: no study run has that name")
    return [_record(client, uri, run, experiments) for run in reversed(runs)]


def _record(client: MlflowClient, uri: str, run: Run, experiments: list[str]) -> StudyRecord:
    settings = newest_per_setting(
        [
            s
            for s in _children(client, experiments, run.info.run_id)
            if s.tags.get(KIND_TAG, "setting") == "setting"
        ]
    )
    trials = {
        s.run_id: _children(client, experiments, s.run_id) for s in settings if _trial_count(s) > 1
    }
    return StudyRecord(
        study=RunRecord.of(run),
        experiment=client.get_experiment(run.info.experiment_id).name,
        uri=uri,
        settings=settings,
        trials=trials,
    )


def _trial_count(setting: RunRecord) -> int:
    try:
        return int(setting.params.get("trials", "1"))
    except ValueError:
        return 1


class Histories:
    """Per-epoch metric histories, fetched on demand and cached."""

    def __init__(self, uri: str):
        self.client = open_client(uri)
        self._cache: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def get(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """``[(step, value), …]`` sorted by step (the last value of a repeated step wins)."""
        if (run_id, key) not in self._cache:
            points = sorted(
                self.client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)
            )
            by_step = {m.step: m.value for m in points}
            self._cache[run_id, key] = sorted(by_step.items())
        return self._cache[run_id, key]


def log_report(record: StudyRecord, folder: Path) -> None:
    """Log every file of ``folder`` on the study run under the artifact path ``report/``."""
    store = Store(record.experiment, record.uri)
    with artifact_dir() as tmp:
        shutil.copytree(folder, Path(tmp) / "report")
        store.log_artifacts(record.study.run_id, Path(tmp))
