"""``make demo`` (``python -m admmlab.demo``) on a shrunk study: records and report."""

import os
import signal

import pytest

from admmlab import demo, setting
from admmlab.demo import Setting
from admmlab.report.build import REPORT_DIR_ENV
from admmlab.tracking import PARENT_TAG, STUDY_TAG
from conftest import runs_of

SHRUNK = [
    Setting("ADMM (sigmoid)", 1),
    Setting("Adam (ReLU)", 2),
    Setting("ADMM (sigmoid)", 2, lam_beta=(1e-4, 10.0)),
    Setting("SGD (ReLU)", 6),  # seeds 0 and 2 diverge in epoch 1
]


@pytest.fixture
def shrunk_demo(tmp_path, monkeypatch, store_uri, interrupt_handlers):
    """The demo with three of its settings and a few epochs each, on a scratch store."""
    monkeypatch.setattr(demo, "settings", lambda: SHRUNK)
    monkeypatch.setattr(demo, "EPOCHS", {"admm": 3, "sgd": 4, "sgdm": 4, "adam": 4})
    monkeypatch.setenv(REPORT_DIR_ENV, str(tmp_path / "reports"))


@pytest.mark.slow  # a whole study and its report: make test runs it, make test-fast does not
def test_the_demo_records_its_study_with_every_setting_and_writes_the_report(
    shrunk_demo, client, tmp_path, capsys
):
    demo.main()
    out = capsys.readouterr().out
    assert "[demo]  3/4 ADMM (sigmoid)  depth 2 init msra    lam 0.0001 beta 10 " in out
    (deep,) = [line for line in out.splitlines() if "4/4 SGD (ReLU)" in line]
    assert "(2 of 3 trials diverged)" in deep and "nan" not in deep
    (study,) = runs_of(client, "study")
    assert study.info.status == "FINISHED" and study.data.tags[STUDY_TAG] == "demo"
    assert "best_objective" in study.data.metrics
    settings = runs_of(client, "setting")
    assert sorted(s.info.status for s in settings) == ["FINISHED"] * 4
    assert {s.data.tags[PARENT_TAG] for s in settings} == {study.info.run_id}
    assert sorted(s.data.params["solver.epochs"] for s in settings) == ["3", "3", "4", "4"]
    admm = [s for s in settings if s.data.tags["solver"] == "admm"]
    lam_beta = {(s.data.params["solver.lam"], s.data.params["solver.beta"]) for s in admm}
    assert lam_beta == {("1e-06", "1.0"), ("0.0001", "10.0")}
    trials = sorted(t.info.status for t in runs_of(client, "trial"))
    assert trials == ["FAILED"] * 2 + ["FINISHED"] * (4 * demo.TRIALS - 2)
    index = tmp_path / "reports" / "demo" / "index.md"
    assert "Adam (ReLU)" in index.read_text()
    assert f"report: {index}" in out


def test_an_interrupted_demo_ends_its_study_killed_and_keeps_the_finished_setting(
    shrunk_demo, client, tmp_path, monkeypatch
):
    real, calls = setting.run_solver, []

    def signalled_in_second_setting(*args, callback, **kwargs):
        calls.append(1)

        def each_epoch(epoch, metrics):
            callback(epoch, metrics)
            if len(calls) == 2 and epoch == 2:
                os.kill(os.getpid(), signal.SIGTERM)

        return real(*args, callback=each_epoch, **kwargs)

    monkeypatch.setattr(setting, "run_solver", signalled_in_second_setting)
    with pytest.raises(SystemExit, match=r"\[demo\] interrupted"):
        demo.main()
    (study,) = runs_of(client, "study")
    assert study.info.status == "KILLED"
    assert study.data.tags["failure_reason"] == "interrupted (SIGINT/SIGTERM)"
    first, second = sorted(runs_of(client, "setting"), key=lambda r: r.info.start_time)
    assert (first.info.status, second.info.status) == ("FINISHED", "KILLED")
    assert {t.info.status for t in runs_of(client, "trial")} == {"FINISHED", "KILLED"}
    # the interrupted setting keeps the epochs it logged
    trial = next(t for t in runs_of(client, "trial") if t.info.status == "KILLED")
    steps = [m.step for m in client.get_metric_history(trial.info.run_id, "train_mse")]
    assert sorted(steps) == [1, 2]
    assert not (tmp_path / "reports" / "demo").exists()


def test_a_demo_interrupted_while_reporting_keeps_its_finished_study_and_says_how_to_redo(
    shrunk_demo, client, monkeypatch
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "write_report", interrupted)
    with pytest.raises(SystemExit, match="admmlab-report") as stop:
        demo.main()
    (study,) = runs_of(client, "study")
    assert study.info.status == "FINISHED"
    assert str(stop.value).endswith(f"admmlab-report {study.info.run_id} redoes it")
