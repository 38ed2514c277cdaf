"""A grid study resumes where it stopped: an invocation stopped with SIGTERM or killed
with SIGKILL is run again with the same command, which skips the settings that finished,
runs the others (the killed one again) and leaves one study run with every setting
FINISHED once and nothing RUNNING."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from admmlab import tracking
from conftest import runs_of

WIDTHS = "model.width=4,5,6,7,8,9"
GRID = ("-m", "solver=sgd", "activation=relu", "solver.epochs=150", "dataset.n_train=200", WIDTHS)


def start(args: tuple[str, ...], tmp_path: Path, store_uri: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "admmlab.train", *args],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": store_uri, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its launcher's workers too receive the signal
    )


def settings_by_status(client) -> Counter:
    return Counter(r.info.status for r in runs_of(client, "setting"))


def stop_after_two_settings(proc: subprocess.Popen, client, signum: int, tmp_path: Path) -> None:
    """Wait until at least 2 settings FINISHED (and some not), then signal the process
    group; returns once it has exited."""
    end = time.monotonic() + 300
    while time.monotonic() < end and proc.poll() is None:
        if (tmp_path / "store" / "mlflow.db").exists() and settings_by_status(client)[
            "FINISHED"
        ] >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before it could be stopped"
    os.killpg(proc.pid, signum)
    proc.communicate(timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "signum"),
    [
        pytest.param((), signal.SIGTERM, id="basic-SIGTERM"),
        pytest.param((), signal.SIGKILL, id="basic-SIGKILL"),
        pytest.param(
            ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
            signal.SIGKILL,
            id="joblib-SIGKILL",
        ),
    ],
)
def test_a_stopped_grid_study_resumes_without_training_a_setting_twice(
    tmp_path, store_uri, client, launcher, signum
):
    args = (*GRID, *launcher)
    first = start(args, tmp_path, store_uri)
    stop_after_two_settings(first, client, signum, tmp_path)
    finished_before = settings_by_status(client)["FINISHED"]
    assert 2 <= finished_before < 6
    if signum == signal.SIGKILL:  # no handler ran: the study is left RUNNING
        (study,) = runs_of(client, "study")
        assert study.info.status == "RUNNING"

    second = start(args, tmp_path, store_uri)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    assert "resumes MLflow run" in out
    assert f"{finished_before} setting(s) finished there before and are skipped" in out
    assert out.count("[admmlab] skipped") == finished_before

    (study,) = runs_of(client, "study")
    assert study.info.status == "FINISHED"
    settings = runs_of(client, "setting")
    finished = [r for r in settings if r.info.status == "FINISHED"]
    assert len(finished) == 6
    assert sorted(r.data.params["model.width"] for r in finished) == list("456789")
    keys = Counter(r.data.tags[tracking.SETTING_KEY_TAG] for r in finished)
    assert set(keys.values()) == {1}
    # Every other setting run is one the signal stopped, now KILLED, never trained twice:
    # a run per setting started, and at most one more per worker in flight.
    others = [r for r in settings if r.info.status != "FINISHED"]
    assert {r.info.status for r in others} <= {"KILLED"}
    assert len(others) <= (2 if launcher else 1)
    assert not [r for r in runs_of(client) if r.info.status == "RUNNING"]
    assert all(r.data.tags[tracking.PARENT_TAG] == study.info.run_id for r in settings)


TINY = ("-m", "solver=admm", "solver.epochs=2", "dataset.n_train=50", "model.width=4,5")


@pytest.mark.slow
def test_a_finished_study_run_again_skips_everything_and_restart_opens_a_new_one(cli, client):
    assert cli(*TINY).returncode == 0
    again = cli(*TINY)
    assert again.returncode == 0, again.stderr
    assert "2 setting(s) finished there before and are skipped" in again.stdout
    assert len(runs_of(client, "study")) == 1 and len(runs_of(client, "setting")) == 2

    other = cli(*TINY, "seed=3")  # other overrides: another study run
    assert other.returncode == 0 and "resumes" not in other.stdout
    fresh = cli(*TINY, "restart=true")
    assert fresh.returncode == 0 and "resumes" not in fresh.stdout
    assert len(runs_of(client, "study")) == 3 and len(runs_of(client, "setting")) == 6
    # The plain command now continues the newest run of its sweep: the restarted one.
    last = cli(*TINY)
    assert "2 setting(s) finished there before" in last.stdout
    assert len(runs_of(client, "setting")) == 6


def test_the_setting_key_ignores_where_a_setting_is_recorded_but_not_its_values():
    from admmlab.runinfo import setting_key

    base = {"model.width": 8, "seed": 0, "tracking.uri": "a", "study": "x", "restart": False}
    moved = {**base, "tracking.uri": "b", "study": "y", "restart": True}
    assert setting_key(base) == setting_key(moved)
    assert setting_key(base) != setting_key({**base, "seed": 1})
    assert setting_key(base) != setting_key({**base, "model.width": 9})
