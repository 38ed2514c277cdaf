"""The tracking layer on a real SQLite store: thinning, statuses, statistics."""

import math

import pytest

from admmlab.tracking import (
    Store,
    TrackingError,
    end_study,
    open_study,
    setting_run,
    study_run,
)
from admmlab.train import curve_stride


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
