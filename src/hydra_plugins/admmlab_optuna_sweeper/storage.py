"""Optuna storages from one string: RDB URLs as they are, journal files by path.

Optuna advises against SQLite for parallel workers: the default is a journal
file (safe for several processes on one machine); across machines use an RDB
such as PostgreSQL.
"""

from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from admmlab.paths import JOURNAL_SUFFIXES, default_journal

__all__ = ["JOURNAL_SUFFIXES", "default_journal", "journal", "study_trials"]


def journal(path: Path) -> JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_storage(spec: str | None) -> BaseStorage:
    """``None`` → the project's journal; ``journal:<path>`` or ``*.log`` → a journal
    file; anything else (``sqlite:///…``, ``postgresql://…``) → an RDB storage."""
    if not spec:
        return journal(default_journal())
    if spec.startswith("journal:"):
        return journal(Path(spec.removeprefix("journal:")).expanduser())
    if "://" not in spec and spec.endswith(JOURNAL_SUFFIXES):
        return journal(Path(spec).expanduser())
    # pre-ping: a worker whose pooled connection the server dropped reconnects
    return RDBStorage(spec, engine_kwargs={"pool_pre_ping": True})


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
