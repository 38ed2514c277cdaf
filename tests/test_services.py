"""Scaling out for real: an MLflow tracking server, and Optuna workers sharing a
study in a journal file and in a throw-away PostgreSQL server."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import journal_study, runs_of

OPTUNA_TINY = (
    "solver=admm",
    "dataset=square",
    "model.width=6",
    "solver.epochs=3",
    "dataset.n_train=200",
    "solver.lam=tag(log, interval(1e-8, 1e-2))",
    "hydra.sweeper.study_name=shared",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("service did not come up")


def train(args, env, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "admmlab.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(uri + "/health", timeout=2).status == 200)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_training_against_a_tracking_server(mlflow_server, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    p = train(
        ["solver=sgd", "activation=relu", "model.width=6", "solver.epochs=5", "trials=2"],
        env,
        tmp_path,
    )
    finish([p])
    client = MlflowClient(mlflow_server)
    (setting,) = runs_of(client, "setting")
    assert setting.info.status == "FINISHED"
    assert setting.data.params["model.width"] == "6"
    assert len(runs_of(client, "trial")) == 2
    for trial in runs_of(client, "trial"):
        assert len(client.get_metric_history(trial.info.run_id, "train_mse")) == 5
    artifacts = {a.path for a in client.list_artifacts(setting.info.run_id)}
    assert {"config.yaml", "history.csv", "learning_curve.png", "weights.pt"} <= artifacts
    local = client.download_artifacts(setting.info.run_id, "history.csv", str(tmp_path))
    assert Path(local).read_text().startswith("epoch,trial,seed")


def two_workers(storage: str, store_uri: str, tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri}
    args = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        *OPTUNA_TINY,
    ]
    workers = []
    for i in range(2):
        (tmp_path / f"w{i}").mkdir()
        workers.append(train(args, env, tmp_path / f"w{i}"))
    finish(workers)


@pytest.mark.slow
def test_two_optuna_workers_share_a_journal_study(tmp_path, store_uri, client):
    journal = tmp_path / "journal.log"
    two_workers(str(journal), store_uri, tmp_path)
    study = journal_study("shared", journal)
    assert len(study.trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({t.number for t in study.trials}) == 6
    settings = runs_of(client, "setting")
    assert len(settings) == 6 and all(s.info.status == "FINISHED" for s in settings)


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on a free port, as the ``postgres`` user."""
    bin_dir = postgres_bin()
    if bin_dir is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries are not installed (.ci/run installs them)")
    # pytest's tmp_path is private to root; the server's user must reach its folder
    home = Path(tempfile.mkdtemp(prefix="admmlab-pg-"))
    home.chmod(0o755)
    data = home / "data"
    data.mkdir()
    shutil.chown(data, "postgres")
    port = free_port()

    def as_postgres(*cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    as_postgres(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(data / "log"),
        "-w",
        "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "optuna")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_two_optuna_workers_share_a_postgres_study(postgres, tmp_path, store_uri):
    optuna.create_study(study_name="shared", storage=postgres)  # avoids a create race
    two_workers(postgres, store_uri, tmp_path)
    study = optuna.load_study(study_name="shared", storage=postgres)
    assert len(study.trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


GRID = ("-m", "solver=admm", "solver.epochs=3", "dataset.n_train=50", "model.width=4,5",
        "solver.beta=0.5,1")  # fmt: skip


def objectives_by_setting(client: MlflowClient) -> dict[tuple[str, str], float]:
    """(width, beta) → objective of each FINISHED setting run of the store."""
    return {
        (s.data.params["model.width"], s.data.params["solver.beta"]): s.data.metrics["objective"]
        for s in runs_of(client, "setting")
        if s.info.status == "FINISHED"
    }


def owners(runs) -> set[str]:
    return {r.data.tags["admmlab.owner"] for r in runs}


@pytest.fixture
def ray_cluster(tmp_path):
    """A one-node Ray cluster on 127.0.0.1 in a temporary folder, stopped afterwards."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must be short
    start = [str(ray), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
             f"--temp-dir={temp}"]  # fmt: skip
    subprocess.run(start, check=True, capture_output=True, timeout=300)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_grid_and_an_optuna_study_run_on_a_ray_cluster(
    ray_cluster, mlflow_server, postgres, tmp_path, store_uri
):
    """Jobs go to a running Ray cluster's workers, write to the tracking server and to
    Optuna in PostgreSQL, and give the numbers the same sweep gives run locally."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "RAY_ADDRESS": ray_cluster,
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    finish([train([*GRID, "hydra/launcher=ray_cluster"], env, tmp_path)])
    server = MlflowClient(mlflow_server)
    (study,) = runs_of(server, "study")
    assert study.info.status == "FINISHED"
    settings = runs_of(server, "setting")
    assert len(settings) == 4 and {s.info.status for s in settings} == {"FINISHED"}
    assert {s.data.tags["mlflow.parentRunId"] for s in settings} == {study.info.run_id}
    for s in settings:
        assert len(server.get_metric_history(s.info.run_id, "train_mse")) == 3
    assert not owners(settings) & owners([study])  # each job ran in a Ray worker
    again = train([*GRID, "hydra/launcher=ray_cluster"], env, tmp_path)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert "4 setting(s) finished there before and are skipped" in out  # resumed, on Ray
    assert len(runs_of(server, "setting")) == 4  # (Ray folds the workers' repeated lines)

    optuna_args = ["-m", "hydra/launcher=ray_cluster", "hydra/sweeper=optuna",
                   "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                   f"hydra.sweeper.storage={postgres}", *OPTUNA_TINY]  # fmt: skip
    finish([train(optuna_args, env, tmp_path)])
    trials = optuna.load_study(study_name="shared", storage=postgres).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    tuned = [s for s in runs_of(server, "setting") if s.data.params["model.width"] == "6"]
    assert sorted(t.value for t in trials) == pytest.approx(
        sorted(s.data.metrics["objective"] for s in tuned), rel=1e-12
    )

    # locally, as the README's joblib line runs it
    local = train([*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                  {**env, "MLFLOW_TRACKING_URI": store_uri}, tmp_path)  # fmt: skip
    finish([local])
    on_ray = objectives_by_setting(server)
    here = objectives_by_setting(MlflowClient(store_uri))
    assert len(here) == 4
    assert {k: on_ray[k] for k in here} == pytest.approx(here, rel=1e-12)


@pytest.mark.slow
def test_a_sweep_runs_as_submitit_jobs(tmp_path, store_uri, client):
    """hydra/launcher=submitit_local: each setting a submitit job (pickled, run in a
    process of its own, its return value sent back), as on SLURM."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "OMP_NUM_THREADS": "1"}
    journal = tmp_path / "journal.log"
    args = ["-m", "hydra/launcher=submitit_local", "hydra/sweeper=optuna",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
            f"hydra.sweeper.storage={journal}", *OPTUNA_TINY]  # fmt: skip
    finish([train(args, env, tmp_path)])
    (study,) = runs_of(client, "study")
    settings = runs_of(client, "setting")
    assert study.info.status == "FINISHED"
    assert len(settings) == 2 and {s.info.status for s in settings} == {"FINISHED"}
    assert len(owners(settings) | owners([study])) == 3  # three processes
    trials = journal_study("shared", journal).trials
    assert sorted(t.value for t in trials) == pytest.approx(
        sorted(s.data.metrics["objective"] for s in settings), rel=1e-12
    )
    assert list((tmp_path / "multirun").glob("*/*/.submitit/*/*_result.pkl"))

    # The README's grid through submitit gives the numbers of the same grid in one process.
    grid_store = f"sqlite:///{tmp_path / 'grid.db'}"
    finish(
        [
            train(
                [*GRID, "hydra/launcher=submitit_local"],
                {**env, "MLFLOW_TRACKING_URI": grid_store},
                tmp_path,
            )
        ]
    )
    local_store = f"sqlite:///{tmp_path / 'local.db'}"
    finish([train(GRID, {**env, "MLFLOW_TRACKING_URI": local_store}, tmp_path)])
    as_jobs = objectives_by_setting(MlflowClient(grid_store))
    here = objectives_by_setting(MlflowClient(local_store))
    assert len(here) == 4 and as_jobs == pytest.approx(here, rel=1e-12)
