"""Optuna storages from one string, as the sweeper, its jobs and the report read it.

RDB URLs (``sqlite:///…``, ``postgresql://…``) are taken as they are; a path ending
in ``.log``/``.journal``/``.jsonl`` or written ``journal:<path>`` is a journal file;
nothing is the project's journal. Optuna advises against SQLite for parallel
workers: the journal is safe for several processes on one machine; across
machines use an RDB such as PostgreSQL.
"""

from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from admmlab.paths import JOURNAL_SUFFIXES, default_journal


class StorageUnavailable(LookupError):
    """A storage that cannot be read without creating it; the message says why."""


def journal_path(spec: str | None) -> Path | None:
    """The journal file ``spec`` names, else None (an RDB URL)."""
    if not spec:
        return default_journal()
    if spec.startswith("journal:"):
        return Path(spec.removeprefix("journal:")).expanduser()
    if "://" not in spec and spec.endswith(JOURNAL_SUFFIXES):
        return Path(spec).expanduser()
    return None


def open_storage(spec: str | None) -> BaseStorage:
    """The storage ``spec`` names, created if it does not exist yet."""
    path = journal_path(spec)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    # pre-ping: a worker whose pooled connection the server dropped reconnects
    return RDBStorage(str(spec), engine_kwargs={"pool_pre_ping": True})


def open_readonly(spec: str | None) -> BaseStorage:
    """The storage ``spec`` names, opened without creating a file, a table or a row."""
    path = journal_path(spec)
    if path is not None:
        if not path.is_file():  # the backend would create it
            raise StorageUnavailable(f"no Optuna journal at {path}")
        return JournalStorage(JournalFileBackend(str(path)))
    spec = str(spec)
    if spec.startswith("sqlite:///") and not Path(spec.removeprefix("sqlite:///")).is_file():
        raise StorageUnavailable(f"no Optuna database at {spec}")
    return RDBStorage(spec, skip_table_creation=True, skip_compatibility_check=True)


def study_trials(opened: BaseStorage, study_name: str) -> list[FrozenTrial]:
    """The trials of the study ``study_name`` in ``opened`` (none if there is no such study)."""
    try:
        study_id = opened.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return opened.get_all_trials(study_id, deepcopy=False)


def describe(spec: str | None) -> str:
    """What ``optuna-dashboard`` takes to open this storage."""
    if not spec:
        return str(default_journal())
    return spec.removeprefix("journal:")
