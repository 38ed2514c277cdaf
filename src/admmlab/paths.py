"""Where the project's folders are, whatever the working directory."""

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding ``conf/`` (``ADMMLAB_HOME`` overrides)."""
    if home := os.environ.get("ADMMLAB_HOME"):
        return Path(home).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "conf" / "config.yaml").is_file() and (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def conf_dir() -> Path:
    return project_root() / "conf"


def sweeps_dir() -> Path:
    return project_root() / "sweeps"


def mlruns_dir() -> Path:
    return project_root() / "mlruns"


# Optuna storage strings ending so are journal files; the sweeper and the reports read
# them alike.
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def default_journal() -> Path:
    """Where Optuna studies live unless a storage is given."""
    return mlruns_dir() / "optuna" / "journal.log"
