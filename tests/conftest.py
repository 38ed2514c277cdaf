"""Shared fixtures: composed configs and a throw-away MLflow store."""

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from admmlab.paths import conf_dir


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose ``conf/`` with overrides, as the command line would."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def store_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite store that every run in the test writes to."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def client(store_uri: str) -> MlflowClient:
    return MlflowClient(store_uri)
