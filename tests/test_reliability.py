"""Bad input refused in one line; interrupts and divergence recorded; nothing lost."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admmlab import interrupts
from admmlab.config import ConfigError, validate
from admmlab.setting import run
from admmlab.tracking import SettingRun, Store, setting_run
from conftest import runs_of

BAD_INPUT = [
    (["model.depth=0"], "model.depth"),
    (["model.width=-3"], "model.width"),
    (["solver.epochs=0"], "solver.epochs"),
    (["solver.batch_size=0"], "solver.batch_size"),
    (["trials=0"], "trials"),
    (["solver.batch_size=5000"], "solver.batch_size"),
    (["solver=admm", "solver.lam=-1e-6"], "solver.lam"),
    (["solver=admm", "solver.beta=0"], "solver.beta"),
    (["solver=admm", "solver.beta=[1,-1,1]"], "solver.beta"),
    (["solver=admm", "solver.beta=[1,1]"], "solver.beta"),
    (["solver.lr=0"], "solver.lr"),
    (["dataset=radial_smooth", "dataset.noise_std=-0.1"], "dataset.noise_std"),
    (["solver=newton"], "solver"),
    (["activation=gelu"], "activation"),
    (["init=he"], "init"),
    (["dataset=mnist"], "dataset"),
    (["dtype=float16"], "dtype"),
    (["solver=admm", "activation=relu"], "activation"),
    (["objective=accuracy"], "objective"),
    (["model.widht=3"], "model.widht"),
    (["solver=admm", "solver.lr=0.1"], "solver.lr"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_INPUT, ids=lambda v: str(v))
def test_bad_input_is_one_line_and_leaves_no_running_run(cli, client, overrides, key):
    done = cli(*overrides, "solver.epochs=2" if "epochs" not in key else "model.width=4")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert key in lines[0]
    assert all(r.info.status != "RUNNING" for r in runs_of(client))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_and_auto_falls_back(cli, client):
    done = cli("device=cuda")
    assert done.returncode != 0 and "device" in done.stderr
    done = cli("device=auto", "solver.epochs=2", "model.width=4")
    assert done.returncode == 0 and "running on the CPU" in done.stderr


@pytest.mark.parametrize(
    ("uri", "words"),
    [("http://127.0.0.1:9", "cannot be reached"), ("sqlite:////dev/null/x/mlflow.db", "cannot")],
)
def test_unusable_store_fails_fast_naming_the_uri(cli, monkeypatch, uri, words):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    env = {**os.environ}
    done = subprocess.run(
        [sys.executable, "-m", "admmlab.train", "solver.epochs=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert uri in line and words in line


def random_value():
    return st.one_of(
        st.integers(-5, 5000),
        st.floats(allow_nan=True),
        st.text(max_size=6),
        st.booleans(),
        st.none(),
        st.lists(st.floats(-2, 2), max_size=4),
    )


CONFIG_KEYS = {
    "model": ["depth", "width"],
    "solver": ["name", "lam", "beta", "lr", "epochs", "batch_size", "momentum", "lr_gamma", "step"],
    "dataset": ["name", "noise_std", "n_train", "val_fraction"],
    "init": ["name", "scale"],
    "activation": ["name"],
    "": ["seed", "trials", "device", "dtype", "bogus"],
}


@st.composite
def random_config(draw):
    # Each built-in solver's settings class, as a composed config names it.
    target = draw(st.sampled_from(["admm.ADMM", "sgd.SGD", "sgd.SGDM", "sgd.Adam"]))
    cfg: dict = {"solver": {"_target_": f"admmlab.solvers.{target}"}}
    for section, keys in CONFIG_KEYS.items():
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            target = cfg.setdefault(section, {}) if section else cfg
            target[key] = draw(random_value())
    return cfg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_config())
def test_validation_accepts_or_raises_config_error_only(cfg):
    try:
        validate(cfg)
    except ConfigError as err:
        assert "\n" not in str(err)


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_sigterm_ends_the_run_killed_with_its_partial_history(tmp_path, store_uri, client):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "admmlab.train",
            "solver=sgd",
            "activation=relu",
            "solver.epochs=100000",
            "model.width=8",
            "tracking.flush_every=5",
            "tracking.max_points=0",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def some_epochs_logged() -> bool:
        runs = runs_of(client) if (tmp_path / "store" / "mlflow.db").exists() else []
        return bool(runs) and len(client.get_metric_history(runs[0].info.run_id, "train_mse")) >= 10

    try:
        wait_for(some_epochs_logged)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KILLED" in err
    (r,) = runs_of(client)
    assert r.info.status == "KILLED"
    steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "train_mse"))
    assert len(steps) >= 10 and steps == list(range(1, len(steps) + 1))


def test_a_signal_inside_a_shielded_block_is_raised_when_the_outer_block_ends(
    interrupt_handlers,
):
    reached = []
    sigterm = f"signal {int(signal.SIGTERM)}"
    with pytest.raises(KeyboardInterrupt, match=sigterm), interrupts.shielded():
        with interrupts.shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("inner")
        reached.append("outer")
    assert reached == ["inner", "outer"]
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_a_second_signal_while_one_is_held_is_raised_at_once(interrupt_handlers):
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts.shielded():
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("held")
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the second")
    assert reached == ["held"]
    with interrupts.shielded():  # nothing stale is left held
        reached.append("quiet")
    assert reached == ["held", "quiet"]


class _Finaliser:
    """Receives SIGTERM while Python finalises it, which drops any exception raised."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_whose_exception_a_finaliser_dropped_is_raised_at_the_next_check(
    interrupt_handlers,
):
    _Finaliser()  # garbage at once: "Exception ignored in ... __del__"
    sigterm = f"signal {int(signal.SIGTERM)}"
    with pytest.raises(KeyboardInterrupt, match=sigterm), interrupts.shielded():
        pass
    _Finaliser()
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()
    interrupts.check()  # raised once, then off the record
    _Finaliser()
    interrupts.clear()  # what a handler of the interrupt does
    with interrupts.shielded():
        pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("tracking", [True, False])
def test_a_run_stops_for_a_signal_a_finaliser_dropped(
    interrupt_handlers, make_cfg, client, tracking
):
    cfg = make_cfg("solver=sgd", "model.width=4", "solver.epochs=9", f"tracking.enabled={tracking}")
    _Finaliser()
    # tracked: at the store's (shielded) opening; untracked: at the first epoch's check
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert runs_of(client) == []


class _InterruptedStore:
    """Receives SIGTERM just as its first metrics write completes."""

    def __init__(self):
        self.logged, self.ended = [], []

    def log_metrics(self, run_id, metrics):
        first = not self.logged
        self.logged.extend(metrics)
        if first:
            os.kill(os.getpid(), signal.SIGTERM)

    def set_tags(self, run_id, tags):
        pass

    def end_run(self, run_id, status):
        self.ended.append(status)


def test_an_interrupted_flush_logs_each_epoch_once_and_the_run_still_ends_killed(
    interrupt_handlers,
):
    store = _InterruptedStore()
    run = SettingRun(store, "run", [], flush_every=2)
    run.log_epoch(1, {"train_mse": [1.0]})
    with pytest.raises(KeyboardInterrupt):
        run.log_epoch(2, {"train_mse": [0.5]})
    run.end("KILLED", "interrupted")
    assert [m.step for m in store.logged] == [1, 2] and store.ended == ["KILLED"]


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_signal_while_the_runs_open_still_ends_every_run_opened_killed(
    interrupt_handlers, store_uri, client, monkeypatch, nth
):
    store = Store("interrupted", store_uri)
    create_run, created = store.client.create_run, []

    def create_then_signal(*args, **kwargs):  # the signal arrives as the nth run is created
        created.append(create_run(*args, **kwargs))
        if len(created) == nth:
            os.kill(os.getpid(), signal.SIGTERM)
        return created[-1]

    monkeypatch.setattr(store.client, "create_run", create_then_signal)
    with (
        pytest.raises(KeyboardInterrupt),
        setting_run(store, "s", params={"a": 1}, tags={}, seeds=[0, 1]),
    ):
        pytest.fail("the body ran although the signal came while the runs opened")
    # the setting run and its two trials' runs: all opened, none left RUNNING
    assert [r.info.status for r in runs_of(client)] == ["KILLED"] * 3


def test_a_store_error_half_way_through_opening_fails_the_runs_already_opened(
    store_uri, client, monkeypatch
):
    store = Store("half-open", store_uri)
    create_run = store.client.create_run

    def fail_third(*args, **kwargs):
        if len(runs_of(client)) == 2:
            raise RuntimeError("store went away")
        return create_run(*args, **kwargs)

    monkeypatch.setattr(store.client, "create_run", fail_third)
    with (
        pytest.raises(RuntimeError, match="went away"),
        setting_run(store, "s", params={}, tags={}, seeds=[0, 1]),
    ):
        pytest.fail("the body ran although opening failed")
    assert [r.info.status for r in runs_of(client)] == ["FAILED"] * 2
    (setting,) = runs_of(client, "setting")
    assert setting.data.tags["failure_reason"] == "RuntimeError: store went away"


class _StoreSignalledAsRunsEnd(_InterruptedStore):
    """Receives SIGTERM as it ends its first run; records what it is asked."""

    def __init__(self):
        super().__init__()
        self.opened = []

    def start_run(self, name, parent=None, tags=None):
        self.opened.append(name)
        return name

    def log_params(self, run_id, params):
        pass

    def log_metrics(self, run_id, metrics):
        self.logged.extend(metrics)

    def end_run(self, run_id, status):
        super().end_run(run_id, status)
        if len(self.ended) == 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_as_a_finished_run_ends_makes_it_killed_with_each_epoch_logged_once(
    interrupt_handlers,
):
    store = _StoreSignalledAsRunsEnd()
    opening = setting_run(store, "s", params={}, tags={}, seeds=[0], stride=4)
    with pytest.raises(KeyboardInterrupt), opening as run:
        for epoch in (1, 2, 3):
            run.log_epoch(epoch, {"train_mse": [1.0 / epoch]})
    # epoch 3, skipped by the stride, is logged once although the run ended twice
    assert [m.step for m in store.logged] == [1, 3]
    assert store.ended == ["FINISHED", "KILLED"]


@pytest.mark.slow
def test_interrupted_optuna_study_continues_with_nothing_lost(tmp_path, store_uri, client):
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [
        sys.executable,
        "-m",
        "admmlab.train",
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=cut",
        "solver=sgd",
        "activation=relu",
        "model.width=8",
        "dataset.n_train=200",
        "solver.lr=tag(log, interval(1e-3, 1e-2))",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri}
    # Trials of a few seconds: the one running when the signal is sent is still
    # running when it arrives.
    proc = subprocess.Popen(
        [*args, "hydra.sweeper.n_trials=50", "solver.epochs=2000"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def trials(state: str) -> int:
        try:
            study = optuna.load_study(study_name="cut", storage=storage)
        except KeyError:
            return 0
        return sum(t.state.name == state for t in study.trials)

    try:
        wait_for(lambda: trials("COMPLETE") >= 1 and trials("RUNNING") == 1)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    complete = trials("COMPLETE")
    assert trials("FAIL") == 1 and trials("RUNNING") == 0
    (study_run,) = runs_of(client, "study")
    assert study_run.info.status == "KILLED"
    again = subprocess.run(
        [*args, "hydra.sweeper.n_trials=1", "solver.epochs=3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert trials("COMPLETE") == complete + 1 and trials("FAIL") == 1
    # The continued study keeps its MLflow run, with every setting of both invocations
    # (the interrupted one KILLED, if the signal came after its run had opened).
    (study_run,) = runs_of(client, "study")
    assert study_run.info.status == "FINISHED"
    assert "failure_reason" not in study_run.data.tags
    statuses = sorted(s.info.status for s in runs_of(client, "setting"))
    assert statuses in (["FINISHED"] * (complete + 1), ["FINISHED"] * (complete + 1) + ["KILLED"])


def test_finite_per_trial_flags_bad_entries_but_not_sums_that_overflow():
    from admmlab.solvers.base import finite_per_trial

    t = torch.ones(4, 3, 5, dtype=torch.float64)
    t[1, 2, 3] = float("nan")
    t[2, 0, 0] = float("inf")
    t[3] = 1e308  # finite entries whose sum overflows
    assert finite_per_trial(t).tolist() == [True, False, False, True]
    assert finite_per_trial(torch.ones(2, 3)).tolist() == [True, True]
