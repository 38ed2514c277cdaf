"""Shared fixtures: composed configs, a throw-away MLflow store, a poisoned ADMM step."""

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from admmlab import interrupts
from admmlab.paths import conf_dir
from admmlab.solvers import admm

# Fixtures that start a process or a server: a test using one is slow.
PROCESS_FIXTURES = frozenset({"cli", "mlflow_server", "postgres"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark slow every test that starts a process or a server, so ``make test-fast``
    (``-m "not slow"``) leaves them out; CI runs everything."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose ``conf/`` with overrides, as the command line would."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def interrupt_handlers() -> Iterator[None]:
    """The entry point's SIGINT/SIGTERM handlers, restored afterwards."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    interrupts.clear()
    for signum, handler in old.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="session")
def new_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], str]:
    """Make a fresh, empty SQLite store in a folder and give its URI.

    MLflow builds a new store's tables in seconds, longer than most tests take, so the
    tables are built once per test process and each store starts as a copy of them."""
    template = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{template}").search_experiments()

    def _new(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return _new


@pytest.fixture
def store_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store: Callable[[Path], str]
) -> str:
    """A fresh SQLite store that every run in the test writes to."""
    uri = new_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def client(store_uri: str) -> MlflowClient:
    return MlflowClient(store_uri)


@pytest.fixture
def cli(tmp_path: Path, store_uri: str) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``admmlab-train`` as a user would, in a scratch folder, on the test's store."""

    def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "PYTHONUNBUFFERED": "1"}
        return subprocess.run(
            [sys.executable, "-m", "admmlab.train", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run


def runs_of(client: MlflowClient, kind: str | None = None) -> list:
    """Every run of the store (optionally of one ``admmlab.kind``)."""
    ids = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.`admmlab.kind` = '{kind}'" if kind else ""
    return client.search_runs(ids, filter_string=query, max_results=10000)


def journal_study(name: str, path: Path) -> optuna.Study:
    """The Optuna study ``name`` in the journal file at ``path``."""
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def poison_output(monkeypatch: pytest.MonkeyPatch, at: dict[int, int]) -> None:
    """Make ADMM's ``V_{L+1}`` of trial k non-finite in the iteration ``at[k]``."""
    calls = []
    real_update_output = admm.update_output

    def poisoned(*args, **kwargs):
        out = real_update_output(*args, **kwargs)
        calls.append(1)
        for trial, epoch in at.items():
            if len(calls) == epoch:
                out[trial, 0, 0] = float("nan")
        return out

    monkeypatch.setattr(admm, "update_output", poisoned)
