"""End to end from the shell: what a run records, and what a bad run leaves."""

import math
import statistics

import pytest
import torch

from admmlab.setting import run
from admmlab.solvers.base import NonFiniteError
from conftest import poison_output, runs_of

ARTIFACTS = {"config.yaml", "history.csv", "learning_curve.png", "weights.pt"}


def test_single_run_records_params_metrics_and_artifacts(cli, client):
    done = cli(
        "solver=adam",
        "activation=relu",
        "init=msra",
        "dataset=square",
        "model.depth=3",
        "model.width=50",
        "solver.epochs=30",
    )
    assert done.returncode == 0, done.stderr
    assert "[admmlab] solver=adam" in done.stdout
    (r,) = runs_of(client)
    assert r.info.status == "FINISHED"
    assert r.data.params["model.depth"] == "3" and r.data.params["solver.lr"] == "0.001"
    assert r.data.tags["solver"] == "adam" and r.data.tags["init"] == "msra"
    assert r.data.tags["competitor"] == "Adam (ReLU)"
    assert {"git_commit", "git_dirty", "command", "version.torch"} <= set(r.data.tags)
    history = client.get_metric_history(r.info.run_id, "train_mse")
    assert sorted(m.step for m in history) == list(range(1, 31))
    for name in ("final_train_mse", "best_train_mse", "final_test_mse", "objective"):
        assert math.isfinite(r.data.metrics[name])
    assert r.data.metrics["best_train_mse"] == min(m.value for m in history)
    assert r.data.metrics["objective"] == r.data.metrics["best_train_mse"]
    assert {a.path for a in client.list_artifacts(r.info.run_id)} == ARTIFACTS
    for i in range(1, 5):
        assert len(client.get_metric_history(r.info.run_id, f"grad_norm/layer_{i}")) == 30


def test_trials_are_child_runs_and_the_parent_holds_mean_and_std(cli, client):
    done = cli(
        "solver=sgd",
        "activation=relu",
        "model.depth=1",
        "model.width=8",
        "solver.epochs=4",
        "trials=3",
        "seed=10",
    )
    assert done.returncode == 0, done.stderr
    (parent,) = runs_of(client, "setting")
    children = runs_of(client, "trial")
    assert sorted(c.data.tags["seed"] for c in children) == ["10", "11", "12"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    finals = [c.data.metrics["final_train_mse"] for c in children]
    assert parent.data.metrics["final_train_mse"] == pytest.approx(statistics.mean(finals))
    assert parent.data.metrics["final_train_mse_std"] == pytest.approx(statistics.stdev(finals))
    for c in children:
        assert c.info.status == "FINISHED"
        assert len(client.get_metric_history(c.info.run_id, "train_mse")) == 4


def test_multirun_over_six_init_schemes_records_six_runs(cli, client):
    schemes = "lecun_uniform,lecun_gauss,orth_uniform,orth_gauss,xavier,msra"
    done = cli(
        "-m",
        "solver=sgd",
        "activation=sigmoid",
        "dataset=square",
        f"init={schemes}",
        "solver.epochs=2",
        "model.width=8",
        "dataset.n_train=200",
    )
    assert done.returncode == 0, done.stderr
    settings = runs_of(client, "setting")
    assert sorted(r.data.tags["init"] for r in settings) == sorted(schemes.split(","))
    assert all(r.info.status == "FINISHED" for r in settings)


def test_bad_value_stops_before_any_work_with_one_line(cli, client):
    done = cli("solver=sgd", "model.width=-3")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.width" in lines[0] and "-3" in lines[0]
    assert runs_of(client) == []


def test_diverging_run_ends_failed_with_reason_and_history(cli, client):
    done = cli(
        "solver=sgd",
        "activation=relu",
        "dataset=square",
        "solver.lr=1e8",
        "solver.epochs=20",
        "model.width=20",
    )
    assert done.returncode != 0
    assert "non-finite" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    (r,) = runs_of(client)
    assert r.info.status == "FAILED"
    reason = r.data.tags["failure_reason"]
    assert "non-finite at epoch" in reason and "trial" in reason
    epoch = int(reason.split("at epoch ")[1].split()[0])
    assert len(client.get_metric_history(r.info.run_id, "train_mse")) == epoch
    assert "history.csv" in {a.path for a in client.list_artifacts(r.info.run_id)}


def test_a_diverging_trial_fails_alone_and_the_setting_keeps_the_others(cli, client):
    done = cli(
        "solver=sgd",
        "activation=relu",
        "model.depth=3",
        "model.width=20",
        "dataset.n_train=200",
        "solver.lr=0.2",
        "solver.epochs=6",
        "trials=2",
    )
    assert done.returncode == 0, done.stderr
    warning = "warning: 1 of 2 trials diverged and stopped early, the others finished"
    assert (
        warning in done.stderr and "seed 1: train_mse became non-finite at epoch 3" in done.stderr
    )
    (setting,) = runs_of(client, "setting")
    trials = {r.data.tags["seed"]: r for r in runs_of(client, "trial")}
    assert setting.info.status == "FINISHED" and setting.data.metrics["n_diverged"] == 1
    assert math.isnan(setting.data.metrics["objective"])
    kept, stopped = trials["0"], trials["1"]
    assert kept.info.status == "FINISHED" and math.isfinite(kept.data.metrics["best_train_mse"])
    assert setting.data.metrics["best_train_mse"] == kept.data.metrics["best_train_mse"]
    # the command line shows the mean over the finished trial, as the setting run has it
    assert f"best_train_mse={kept.data.metrics['best_train_mse']:.4e}" in done.stdout
    assert "a sweeper counts the setting failed" in done.stderr
    assert stopped.info.status == "FAILED"
    reason = stopped.data.tags["failure_reason"]
    assert reason == "NonFiniteError: train_mse became non-finite at epoch 3"
    curve = client.get_metric_history(stopped.info.run_id, "train_mse")
    assert [math.isfinite(m.value) for m in sorted(curve, key=lambda m: m.step)] == [
        True, True, False, False, False, False,
    ]  # fmt: skip


def test_when_every_trial_diverges_each_keeps_its_own_reason(make_cfg, client, monkeypatch):
    poison_output(monkeypatch, {1: 3, 0: 4})
    cfg = make_cfg("solver=admm", "model.width=4", "solver.epochs=5", "trials=2", "seed=7")
    with pytest.raises(NonFiniteError, match="epoch 4"):
        run(cfg)
    (setting,) = runs_of(client, "setting")
    trials = {r.data.tags["seed"]: r for r in runs_of(client, "trial")}
    assert setting.info.status == "FAILED" and "epoch 4" in setting.data.tags["failure_reason"]
    assert {r.info.status for r in trials.values()} == {"FAILED"}
    assert trials["8"].data.tags["failure_reason"] == (
        "NonFiniteError: V_3 became non-finite at epoch 3"
    )
    # the trial that went bad last has its own reason too, not only the setting's
    assert trials["7"].data.tags["failure_reason"] == (
        "NonFiniteError: V_3 became non-finite at epoch 4"
    )
    assert setting.data.metrics["n_diverged"] == 2


def test_when_seeds_diverge_at_different_epochs_each_trial_says_when_and_reads_nan_after(
    make_cfg, client
):
    cfg = make_cfg(
        "solver=sgd",
        "activation=relu",
        "solver.lr=1000",
        "solver.epochs=5",
        "model.width=8",
        "trials=3",
    )
    with pytest.raises(NonFiniteError):
        run(cfg)
    (setting,) = runs_of(client, "setting")
    trials = runs_of(client, "trial")
    stopped_at = {}
    for t in trials:
        assert t.info.status == "FAILED"
        reason = t.data.tags["failure_reason"]  # every trial's own, not just some
        assert reason.startswith("NonFiniteError: train_mse became non-finite at epoch ")
        epoch = int(reason.rsplit(" ", 1)[1])
        stopped_at[t.data.tags["seed"]] = epoch
        curve = sorted(client.get_metric_history(t.info.run_id, "train_mse"), key=lambda m: m.step)
        assert curve and all(math.isfinite(m.value) for m in curve if m.step < epoch)
        # NaN from the epoch it stopped on, never a clamped 1.7e308 afterwards
        assert all(math.isnan(m.value) for m in curve if m.step >= epoch), curve
    assert stopped_at == {"0": 3, "1": 3, "2": 2}  # seed 2 overflows an epoch earlier
    assert setting.info.status == "FAILED"
    assert setting.data.tags["failure_reason"] == (  # naming every trial
        "NonFiniteError: train_mse became non-finite at epoch 3 in trial(s) [0, 1]; "
        "trial(s) [2] had stopped before"
    )
    assert setting.data.metrics["n_diverged"] == 3
    assert math.isnan(setting.data.metrics["best_train_mse"])  # no trial finished


@pytest.mark.slow
def test_a_run_refused_for_its_data_leaves_no_experiment(cli, client, tmp_path):
    done = cli("dataset=ptb", f"dataset.path={tmp_path / 'nowhere'}", "model.width=8")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "does not exist" in lines[0]
    assert "ptb" not in {e.name for e in client.search_experiments()}
    assert runs_of(client) == []


def test_same_config_and_seed_give_identical_metrics(make_cfg):
    overrides = (
        "solver=sgdm",
        "activation=relu",
        "model.width=8",
        "solver.epochs=3",
        "trials=2",
        "tracking.enabled=false",
    )

    def metrics(outcome):
        return {k: v for k, v in outcome.summary.items() if k != "run_time_s"}

    a, b = run(make_cfg(*overrides)), run(make_cfg(*overrides))
    assert metrics(a) == metrics(b)
    assert metrics(run(make_cfg(*overrides, "seed=1"))) != metrics(a)


def test_library_run_returns_the_objective(make_cfg):
    out = run(
        make_cfg(
            "solver=admm",
            "model.width=8",
            "solver.epochs=3",
            "tracking.enabled=false",
            "dataset=radial_smooth",
        )
    )
    assert out.objective_name == "test_mse"
    assert out.objective == pytest.approx(out.summary["final_test_mse"][0])
    assert torch.isfinite(torch.tensor(out.objective))


@pytest.mark.slow
def test_a_run_shows_its_progress_and_keeps_its_lines_in_the_job_log(cli, tmp_path):
    done = cli("solver=sgd", "activation=relu", "model.width=6", "solver.epochs=20",
               "dataset.n_train=100")  # fmt: skip
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if "ETA" in line]
    assert len(progress) >= 5 and "epoch 10/20 (50%)" in done.stderr
    assert "sgd-relu-msra-d2w6-epochs20-n_train100-seed0" in progress[0]
    (log,) = (tmp_path / "outputs").glob("*/*/train.log")
    kept = log.read_text()
    assert "epoch 10/20 (50%)" in kept and "[admmlab] solver=sgd" in kept

    sweep = cli("-m", "solver=sgd", "activation=relu", "model.width=6", "solver.epochs=3",
                "dataset.n_train=100", "solver.lr=0.01,0.02")  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    for k, lr in enumerate(("0.01", "0.02")):
        prefix = f"#{k} ({k + 1} of 2) [solver=sgd activation=relu model.width=6 solver.epochs=3 "
        assert prefix in sweep.stdout
        assert f"solver.lr={lr}]: best_train_mse=" in sweep.stdout
