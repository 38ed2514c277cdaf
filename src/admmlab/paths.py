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
