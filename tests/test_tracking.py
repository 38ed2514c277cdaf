"""The tracking layer on a real SQLite store: thinning, statuses, statistics."""

import math

import pytest

from admmlab.setting import curve_stride
from admmlab.tracking import (
    Store,
    TrackingError,
    end_study,
    open_study,
    setting_run,
    study_run,
)
from conftest import runs_of


def steps(client, run_id: str, name: str = "loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, name))


def test_long_curves_are_thinned_keeping_first_and_last(store_uri, client):
    store = Store("t", store_uri)
    with setting_run(store, "r", params={}, tags={}, seeds=[0], stride=3, flush_every=4) as run:
        for epoch in range(1, 11):
            run.log_epoch(epoch, {"loss": [1.0 / epoch]})
    assert steps(client, run.run_id) == [1, 3, 6, 9, 10]
    assert curve_stride(2000, 250) == 8 and curve_stride(30, 250) == 1
    assert curve_stride(2000, 0) == 1


def test_failure_keeps_the_last_epoch_seen_and_ends_failed(store_uri, client):
    store = Store("t", store_uri)
    with (
        pytest.raises(RuntimeError),
        setting_run(store, "r", params={}, tags={}, seeds=[0], stride=5) as run,
    ):
        for epoch in range(1, 8):
            run.log_epoch(epoch, {"loss": [float(epoch)]})
        raise RuntimeError("boom")
    info = client.get_run(run.run_id)
    assert info.info.status == "FAILED"
    assert info.data.tags["failure_reason"] == "RuntimeError: boom"
    assert steps(client, run.run_id) == [1, 5, 7]


def test_summary_statistics_survive_huge_and_non_finite_values(store_uri, client):
    store = Store("t", store_uri)
    with setting_run(store, "r", params={}, tags={}, seeds=[0, 1]) as run:
        run.log_summary({"big": [1e195, 3e195], "bad": [1.0, math.inf]})
    metrics = client.get_run(run.run_id).data.metrics
    assert metrics["big"] == pytest.approx(2e195) and metrics["big_std"] == pytest.approx(
        math.sqrt(2) * 1e195
    )
    assert math.isnan(metrics["bad"])
    children = client.search_runs([store.experiment_id], "tags.`admmlab.kind` = 'trial'")
    assert sorted(c.data.metrics["big"] for c in children) == [1e195, 3e195]


def test_unwritable_store_is_refused_naming_it():
    with pytest.raises(TrackingError, match="/dev/null/x"):
        Store("t", "sqlite:////dev/null/x/mlflow.db")


def test_a_study_run_still_running_is_joined_and_a_finished_one_only_when_continued(store_uri):
    store = Store("studies", store_uri)
    tags = {"admmlab.optuna_study": "s", "admmlab.optuna_storage": "default journal"}
    first, joined = open_study(store, "s", {"sweep": "a"}, tags, continues=False)
    assert not joined
    # Another worker of the same study, started before the first asked any trial.
    assert open_study(store, "s", {"sweep": "a"}, tags, continues=False) == (first, True)
    end_study(store, first)
    fresh, joined = open_study(store, "s", {"sweep": "b"}, tags, continues=False)
    assert fresh != first and not joined
    end_study(store, fresh)
    assert open_study(store, "s", {"sweep": "b"}, tags, continues=True) == (fresh, True)
    assert store.client.get_run(fresh).info.status == "RUNNING"
    # A sweep without Optuna tags always opens its own run.
    assert open_study(store, "s", {"sweep": "c"}, {}, continues=False)[0] not in (first, fresh)


def test_a_study_run_that_an_error_stops_ends_failed_naming_it(store_uri, client):
    store = Store("studies", store_uri)
    with pytest.raises(ValueError), study_run(store, "s", {"width": 3}) as run_id:
        raise ValueError("no such depth")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "ValueError: no such depth"
    assert run.data.params == {"width": "3"}


@pytest.mark.slow
def test_a_setting_run_shows_its_trials_curves_and_is_named_by_its_swept_values(cli, client):
    done = cli("-m", "solver=sgd", "activation=relu", "model.width=6", "solver.epochs=5",
               "trials=3", "dataset.n_train=100", "solver.lr=0.01,0.02")  # fmt: skip
    assert done.returncode == 0, done.stderr
    settings = sorted(runs_of(client, "setting"), key=lambda r: r.info.run_name)
    assert [s.info.run_name for s in settings] == [
        "sgd-relu-msra-d2w6-epochs5-n_train100-lr0.01",
        "sgd-relu-msra-d2w6-epochs5-n_train100-lr0.02",
    ]
    setting = settings[0]
    assert not [k for k in setting.data.params if k.startswith("dataset.paper_best.")]
    trials = [t for t in runs_of(client, "trial")
              if t.data.tags["mlflow.parentRunId"] == setting.info.run_id]  # fmt: skip
    assert sorted(t.info.run_name for t in trials) == [
        f"{setting.info.run_name}/seed={k}" for k in range(3)
    ]
    curves = {t.info.run_id: client.get_metric_history(t.info.run_id, "train_mse") for t in trials}
    mean = client.get_metric_history(setting.info.run_id, "train_mse")
    low = client.get_metric_history(setting.info.run_id, "train_mse_min")
    assert [m.step for m in mean] == [1, 2, 3, 4, 5]
    for epoch in range(5):
        values = [sorted(c, key=lambda m: m.step)[epoch].value for c in curves.values()]
        assert sorted(mean, key=lambda m: m.step)[epoch].value == pytest.approx(
            sum(values) / 3, rel=1e-12
        )
        assert sorted(low, key=lambda m: m.step)[epoch].value == pytest.approx(min(values))
