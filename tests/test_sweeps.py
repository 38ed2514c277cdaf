"""Studies from the shell: the MLflow hierarchy, Optuna, failures, parallel jobs."""

import re
import shlex
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest

from admmlab import optuna_space as search_space
from admmlab import tracking
from admmlab.paths import sweeps_dir
from admmlab.report import aggregate
from admmlab.report.build import write_report
from admmlab.sweeping import best_setting
from admmlab.tracking.reader import load_study
from conftest import journal_study, runs_of

EPOCHS = 6  # enough for lr=1e9 to overflow float64 on this tiny problem
TINY = ("dataset=square", "model.width=6", f"solver.epochs={EPOCHS}", "dataset.n_train=200")


def test_grid_gives_one_study_run_with_one_setting_per_point(cli, client):
    done = cli(
        "-m",
        "solver=admm",
        "dataset=square",
        "model.width=10",
        "solver.epochs=3",
        "model.depth=1,2",
        "solver.lam=1e-6,1e-4",
    )
    assert done.returncode == 0, done.stderr
    (study,) = runs_of(client, "study")
    settings = runs_of(client, "setting")
    assert len(settings) == 4
    assert {s.data.tags["mlflow.parentRunId"] for s in settings} == {study.info.run_id}
    points = {(s.data.params["model.depth"], s.data.params["solver.lam"]) for s in settings}
    assert points == {("1", "1e-06"), ("1", "0.0001"), ("2", "1e-06"), ("2", "0.0001")}
    assert study.info.status == "FINISHED"
    best = min(s.data.metrics["objective"] for s in settings)
    assert study.data.metrics["best_objective"] == best
    assert "sweep.yaml" in {a.path for a in client.list_artifacts(study.info.run_id)}


def test_optuna_study_continues_across_invocations(cli, client, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for n in (3, 2):
        done = cli(
            "-m",
            "hydra/sweeper=optuna",
            f"hydra.sweeper.n_trials={n}",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=s",
            "solver.lam=tag(log, interval(1e-8, 1e-2))",
            "solver=admm",
            "dataset=square",
            "model.width=10",
            "solver.epochs=3",
        )
        assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="s", storage=storage)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 5
    assert all(1e-8 <= t.params["solver.lam"] <= 1e-2 for t in study.trials)
    # One MLflow study run holds the settings of both invocations, as Optuna holds the trials.
    (run,) = runs_of(client, "study")
    settings = runs_of(client, "setting")
    assert len(settings) == 5 and run.info.status == "FINISHED"
    assert {s.data.tags["mlflow.parentRunId"] for s in settings} == {run.info.run_id}
    assert run.data.metrics["best_objective"] == min(s.data.metrics["objective"] for s in settings)
    records = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "sweep.yaml" in records and sum(p.startswith("sweep-") for p in records) == 1


def test_a_worker_that_finishes_first_leaves_the_shared_study_run_running(cli, client, tmp_path):
    storage = tmp_path / "journal.log"
    backend = optuna.storages.journal.JournalFileBackend(str(storage))
    study = optuna.create_study(
        study_name="shared", storage=optuna.storages.JournalStorage(backend)
    )
    elsewhere = study.ask()  # a trial another worker has in flight
    sweep = (
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=shared",
        "solver.lam=tag(log, interval(1e-8, 1e-2))",
        "solver=admm",
        *TINY,
    )
    done = cli(*sweep, "hydra.sweeper.n_trials=2")
    assert done.returncode == 0, done.stderr
    assert "stays RUNNING: 1 trial(s)" in done.stdout
    (run,) = runs_of(client, "study")
    settings = runs_of(client, "setting")
    assert run.info.status == "RUNNING"
    assert run.data.metrics["best_objective"] == min(s.data.metrics["objective"] for s in settings)
    study.tell(elsewhere, 1.0)
    done = cli(*sweep, "hydra.sweeper.n_trials=1")  # the last worker closes the run
    assert done.returncode == 0, done.stderr
    (run,) = runs_of(client, "study")
    assert run.info.status == "FINISHED" and len(runs_of(client, "setting")) == 3


def test_workers_started_together_share_one_study_run(cli, client, tmp_path):
    sweep = (
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.sweeper.storage={tmp_path / 'journal.log'}",
        "hydra.sweeper.study_name=together",
        "hydra.sweeper.n_trials=2",
        "solver.lam=tag(log, interval(1e-8, 1e-2))",
        "solver=admm",
        *TINY,
    )
    with ThreadPoolExecutor(3) as pool:  # three workers, launched at once as a script would
        done = list(pool.map(lambda _: cli(*sweep), range(3)))
    assert all(d.returncode == 0 for d in done), [d.stderr for d in done]
    (run,) = runs_of(client, "study")
    settings = runs_of(client, "setting")
    assert len(settings) == 6
    assert {s.data.tags["mlflow.parentRunId"] for s in settings} == {run.info.run_id}


def test_a_continued_seeded_study_does_not_replay_its_trials(cli, tmp_path):
    storage = tmp_path / "journal.log"
    for _ in range(2):
        done = cli(
            "-m",
            "hydra/sweeper=optuna",
            "hydra/sweeper/sampler=random",
            "hydra.sweeper.sampler.seed=0",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=seeded",
            "solver.lam=tag(log, interval(1e-8, 1e-2))",
            "solver=admm",
            *TINY,
        )
        assert done.returncode == 0, done.stderr
    study = journal_study("seeded", storage)
    assert len({t.params["solver.lam"] for t in study.trials}) == 4


def test_a_new_optuna_study_of_the_same_name_opens_a_new_run(cli, client, tmp_path):
    for storage in (tmp_path / "first.log", tmp_path / "second.log"):
        done = cli(
            "-m",
            "hydra/sweeper=optuna",
            "hydra.sweeper.n_trials=1",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=same",
            "solver.lam=tag(log, interval(1e-8, 1e-2))",
            "solver=admm",
            *TINY,
        )
        assert done.returncode == 0, done.stderr
    assert len(runs_of(client, "study")) == 2


def test_failed_setting_is_recorded_and_the_sweep_goes_on(cli, client):
    done = cli("-m", "solver=sgd", "activation=relu", "solver.lr=1e9,0.01", *TINY)
    assert done.returncode == 0, done.stderr
    settings = {s.data.params["solver.lr"]: s for s in runs_of(client, "setting")}
    assert settings["1000000000.0"].info.status == "FAILED"
    assert "non-finite" in settings["1000000000.0"].data.tags["failure_reason"]
    assert settings["0.01"].info.status == "FINISHED"
    (study,) = runs_of(client, "study")
    assert study.info.status == "FINISHED"


@pytest.mark.slow
def test_a_setting_refused_in_a_sweep_is_a_failed_setting_with_its_reason(cli, client, store_uri):
    done = cli(
        "-m", "solver=admm", "model.width=-3,8", "solver.epochs=2", "trials=1",
        "dataset.n_train=200",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    reason = "model.width must be a positive integer, got -3"
    assert f"[admmlab] setting failed: {reason}" in done.stderr
    (study,) = runs_of(client, "study")
    settings = {s.data.params["model.width"]: s for s in runs_of(client, "setting")}
    refused, kept = settings["-3"], settings["8"]
    assert refused.info.status == "FAILED" and refused.data.tags["failure_reason"] == reason
    assert "model.width=-3" in refused.data.tags["overrides"].split()
    for setting in (refused, kept):
        assert setting.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert setting.data.tags["admmlab.study"] == study.data.tags["admmlab.study"]
    assert kept.info.status == "FINISHED" and study.info.status == "FINISHED"
    # the study's report counts it failed
    record = load_study(store_uri, study.info.run_id)
    row = aggregate.setting_frame(aggregate.trial_frame(record)).set_index("width").loc[-3]
    assert (row["n"], row["n_failed"], row["n_diverged"]) == (0, 1, 0)


def test_the_best_setting_is_never_one_with_a_diverged_trial(store_uri):
    store = tracking.Store("best", store_uri)
    study = tracking.start_study(store, "best", {"purpose": "test"})
    for objective, n_diverged in ((1e-3, 1), (2e-3, 0)):  # the lower one lost a trial
        run_id = store.start_run("s", parent=study, tags={tracking.KIND_TAG: "setting"})
        store.log_final(run_id, {"objective": objective, "n_diverged": n_diverged})
        store.set_tags(run_id, {"objective_name": "best_train_mse"})
        store.end_run(run_id, "FINISHED")
    best = best_setting(tracking.study_settings(store, study))
    assert best is not None and best["objective"] == 2e-3


def test_failure_rate_limit_stops_the_sweep_with_one_line(cli, client):
    done = cli(
        "-m",
        "solver=sgd",
        "activation=relu",
        "solver.lr=1e9,1e10,0.01",
        "max_failure_rate=0.4",
        *TINY,
    )
    assert done.returncode != 0
    assert re.search(r"sweep stopped: \d of \d settings failed", done.stderr)
    assert len(runs_of(client, "setting")) == 1  # the third setting never ran
    (study,) = runs_of(client, "study")
    assert study.info.status == "FAILED" and "sweep stopped" in study.data.tags["failure_reason"]


def test_an_optuna_sweep_stopped_by_its_failure_rate_ends_its_study_run_failed(
    cli, client, tmp_path
):
    done = cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_failure_rate=0",
        f"hydra.sweeper.storage={tmp_path / 'journal.log'}",
        "solver.lr=choice(1e9, 1e10)",
        "solver=sgd",
        "activation=relu",
        *TINY,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("error: Optuna study")
    (study,) = runs_of(client, "study")
    assert study.info.status == "FAILED"
    assert "max_failure_rate=0" in study.data.tags["failure_reason"]


def test_optuna_failed_trials_are_fail_and_the_grid_sampler_works(cli, tmp_path):
    storage = tmp_path / "journal.log"
    done = cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=g",
        "solver.lr=choice(0.01, 1e9)",
        "solver=sgd",
        "activation=relu",
        *TINY,
    )
    assert done.returncode == 0, done.stderr
    study = journal_study("g", storage)
    by_lr = {t.params["solver.lr"]: t.state.name for t in study.trials}
    assert by_lr == {0.01: "COMPLETE", 1e9: "FAIL"}


def test_nsga2_optimises_error_and_run_time_together(cli, client, tmp_path):
    storage = f"sqlite:///{tmp_path / 'mo.db'}"
    done = cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=nsgaii",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=mo",
        "hydra.sweeper.direction=[minimize,minimize]",
        "objective=[best_train_mse,run_time_s]",
        "model.depth=range(1,3)",
        "solver=admm",
        *TINY,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="mo", storage=storage)
    # Two draws of one depth are two trials, each trained: resuming is for grid studies.
    assert [len(t.values) for t in study.trials] == [2, 2]
    recorded = {r.info.run_id: r.data.metrics for r in runs_of(client, "setting")}
    assert len(recorded) == 2
    values = sorted(tuple(t.values) for t in study.trials)
    assert values == sorted((m["objective"], m["objective_1"]) for m in recorded.values())


def test_a_median_pruner_stops_poor_sgd_trials_and_every_record_says_so(cli, client, tmp_path):
    storage = tmp_path / "pruning.log"
    done = cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.n_trials=8",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=pruned",
        "hydra.sweeper.pruner=median",
        "solver.lr=tag(log, interval(1e-4, 1e-1))",
        "solver=sgd",
        "activation=relu",
        "dataset=square",
        "model.width=6",
        "solver.epochs=40",
        "dataset.n_train=200",
    )
    assert done.returncode == 0, done.stderr
    study = journal_study("pruned", storage)
    assert study.metric_names == ["best_train_mse"]
    states = Counter(t.state.name for t in study.trials)
    assert states["PRUNED"] >= 1 and states["PRUNED"] + states["COMPLETE"] == 8, states
    runs = {r.info.run_id: r for r in runs_of(client, "setting")}
    for trial in study.trials:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["optuna.study_name"] == "pruned"
        if trial.state.name == "PRUNED":
            epoch = trial.user_attrs["pruned_at_epoch"]
            assert run.info.status == "KILLED"
            assert (
                f"pruned by Optuna's median pruner at epoch {epoch}"
                in (run.data.tags["failure_reason"])
            )
            assert max(trial.intermediate_values) == epoch < 40
        else:
            assert run.info.status == "FINISHED" and len(trial.intermediate_values) == 40
    # One study name in Optuna and MLflow: the report takes it.
    (study_run,) = runs_of(client, "study")
    assert study_run.info.run_name == "pruned"
    report = write_report("pruned", uri=client.tracking_uri, out=tmp_path / "r", log=False)
    assert (report / "index.md").exists()


def test_parallel_jobs_lose_nothing(cli, client):
    done = cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "solver=sgd",
        "activation=relu",
        "model.depth=1,2",
        "solver.lr=0.01,0.05",
        *TINY,
    )
    assert done.returncode == 0, done.stderr
    assert "database is locked" not in done.stderr + done.stdout
    (study,) = runs_of(client, "study")
    settings = runs_of(client, "setting")
    assert len(settings) == 4
    for s in settings:
        assert s.info.status == "FINISHED"
        assert s.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert len(client.get_metric_history(s.info.run_id, "train_mse")) == EPOCHS


def small_budget(path) -> list[str]:
    """The command documented under '# Small budget:' in a sweep file."""
    lines = path.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("# Small budget"))
    command = shlex.split(lines[i + 1].lstrip("# ").strip())
    assert command[:2] == ["admmlab-train", "-m"], path.name
    return command[1:]


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(sweeps_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sweep_runs_at_its_small_budget(cli, client, path, tmp_path):
    args = small_budget(path)
    if any("sweeper=optuna" in line for line in path.read_text().splitlines()):
        args.append(f"hydra.sweeper.storage={tmp_path / 'journal.log'}")
    done = cli(*args, "++dataset.n_train=300")  # real data sets ignore it
    assert done.returncode == 0, done.stderr[-3000:]
    settings = runs_of(client, "setting")
    assert settings and all(s.info.status == "FINISHED" for s in settings)
    (study,) = runs_of(client, "study")
    assert study.data.tags["admmlab.study"]


def test_the_command_line_has_the_last_word_on_a_search_space_key():
    params = {"model.width": "choice(10, 20)", "solver.lam": "1e-3", "init.scale": "range(1, 3)"}
    arguments = ["model.width=4", "solver.lam=interval(1e-6, 1e-2)", "++init.scale=2"]
    space, fixed = search_space.parse(params, arguments)
    assert set(space) == {"solver.lam"} and fixed == ["model.width=4", "++init.scale=2"]


@pytest.mark.parametrize(
    "sweep", ["solver.lr=tag(log, interval(0, 1))", "solver.lr=interval(1e-2, 1e-8)"]
)
def test_a_range_optuna_rejects_is_one_line(sweep):
    with pytest.raises(search_space.SearchSpaceError, match=r"^solver\.lr: `low"):
        search_space.parse({}, [sweep])


def test_a_continued_study_refuses_a_search_space_its_trials_cannot_continue_in(
    cli, client, tmp_path
):
    storage = tmp_path / "journal.log"
    sweep = ["-m", "hydra/sweeper=optuna", f"hydra.sweeper.storage={storage}", "solver=sgd"]
    lr = "solver.lr=interval(1e-3, 1e-2)"
    first = cli(*sweep, "hydra.sweeper.n_trials=2", "model.width=choice(4, 8)", lr, *TINY[2:])
    assert first.returncode == 0, first.stderr
    again = cli(*sweep, "hydra.sweeper.n_trials=2", "model.width=choice(10, 20)", lr, *TINY[2:])
    assert again.returncode != 0
    line = again.stderr.strip().splitlines()[-1]
    assert line.startswith("error: Optuna study 'admmlab' cannot go on: model.width:")
    assert "choice(4, 8)" in line and "choice(10, 20)" in line
    assert len(journal_study("admmlab", storage).trials) == 2
    (study,) = runs_of(client, "study")  # refused before its run was reopened
    assert study.info.status == "FINISHED" and "failure_reason" not in study.data.tags
    # a float range may change: Optuna's samplers take the old trials as they are
    wider = "solver.lr=interval(1e-3, 1e-1)"
    done = cli(*sweep, "hydra.sweeper.n_trials=1", "model.width=choice(4, 8)", wider, *TINY[2:])
    assert done.returncode == 0, done.stderr
    assert len(journal_study("admmlab", storage).trials) == 3


def test_a_sweep_without_tracking_opens_no_study_run(cli, client):
    done = cli("-m", "model.depth=1,2", "tracking.enabled=false", *TINY)
    assert done.returncode == 0, done.stderr
    assert runs_of(client) == []
