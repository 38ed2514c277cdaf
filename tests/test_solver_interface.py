"""One solver interface: typed settings per solver, one epoch loop, a solver added
from outside the package."""

import math
import os
from pathlib import Path

import pytest
import torch

from admmlab.config import ConfigError, check_override_keys, solver_settings, validate
from admmlab.solvers import admm, loop, sgd
from admmlab.solvers import settings as builtin
from admmlab.solvers.interface import SettingError
from conftest import runs_of

TOY = Path(__file__).parent / "toy_solver"


def test_a_run_is_checked_and_recorded_with_its_own_solver_settings_only(make_cfg) -> None:
    admm_run = validate(make_cfg("solver=admm", "model.depth=2"))
    sgdm_run = validate(make_cfg("solver=sgdm", "activation=relu"))
    assert isinstance(admm_run.solver, builtin.ADMM) and isinstance(sgdm_run.solver, builtin.SGDM)
    assert set(admm_run.solver.settings()) == {"name", "epochs", "lam", "beta", "impl"}
    assert "momentum" in sgdm_run.solver.settings()
    assert not {"beta", "lam"} - set(admm_run.solver.settings())
    assert not {"lr", "batch_size", "momentum", "betas"} & set(admm_run.solver.settings())


def test_hydra_checks_a_built_in_solvers_keys_and_types_as_it_composes(make_cfg) -> None:
    """Its schema is registered in Hydra's ConfigStore (conf/solver/<name>.yaml's defaults)."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as info:
        make_cfg("solver=sgdm", "solver.momentum=fast")
    assert "could not be converted to Float" in str(info.value.__cause__)
    with pytest.raises(ConfigCompositionException):
        make_cfg("solver=admm", "solver.lr=0.1")  # not a setting of ADMM


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["solver=sgdm", "solver.momentum=fast"], "solver.momentum: Value 'fast' of type"),
        (["model.depth=1,abc"], "model.depth: Value 'abc' of type 'str' could not be"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_before_any_job(arguments, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        check_override_keys(arguments)
    assert "\n" not in str(info.value)


def test_a_key_added_to_a_solver_with_plus_is_refused_by_the_solver(make_cfg) -> None:
    with pytest.raises(ConfigError) as info:
        validate(make_cfg("solver=sgd", "+solver.momentum=0.5"))
    assert str(info.value).startswith("solver.momentum is not a setting of solver=sgd")


def test_a_setting_of_another_solver_is_refused_with_what_this_one_has() -> None:
    with pytest.raises(ConfigError) as info:
        solver_settings({"_target_": "admmlab.solvers.settings.SGD", "momentun": 0.5})
    message = str(info.value)
    assert message.startswith("solver.momentun is not a setting of solver=sgd (its settings: ")
    assert "lr_gamma" in message and "\n" not in message


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("admmlab.solvers.nowhere.Solver", "solver._target_=admmlab.solvers.nowhere.Solver "),
        ("admmlab.solvers.base.FitResult", "is not a subclass of Solver"),
        (None, "solver._target_ must name the solver's settings class"),
    ],
)
def test_a_solver_class_that_cannot_be_used_is_refused_in_one_line(target, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        solver_settings({"_target_": target})
    assert "\n" not in str(info.value)


def test_ranges_live_in_the_settings_class_and_refuse_library_calls_alike() -> None:
    with pytest.raises(SettingError, match=r"^solver.momentum must be in \[0, 1\), got 1.5$"):
        builtin.SGDM(momentum=1.5)
    x, y = torch.randn(20, 1, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
    w = [torch.randn(4, 2, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)]
    with pytest.raises(SettingError, match=r"solver.momentum must be in"):
        sgd.fit(x, y, w, method="sgdm", lr=0.1, momentum=1.5, epochs=1, batch_size=10)


def test_the_stability_knob_sets_each_solvers_own_step_key() -> None:
    assert builtin.SGD(step=0.3).lr == 0.3
    assert builtin.ADMM(step=3.0).beta == 3.0


def test_every_built_in_solver_runs_the_one_epoch_loop(monkeypatch) -> None:
    calls = []
    real = loop.run_epochs

    def counted(solver, **kwargs):
        calls.append(type(solver).__name__)
        return real(solver, **kwargs)

    monkeypatch.setattr(admm, "run_epochs", counted)
    monkeypatch.setattr(sgd, "run_epochs", counted)
    x = torch.rand(20, 1, dtype=torch.float64)
    w = [torch.randn(4, 2, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)]
    admm.fit(x, x.square(), w, lam=1e-6, beta=1.0, epochs=2)
    sgd.fit(x, x.square(), w, lr=0.1, epochs=2, batch_size=10, activation="sigmoid")
    assert calls == ["IterationEpochs", "MiniBatchEpochs"]


def test_a_toy_solver_from_the_test_folder_runs_from_the_shell_and_is_tracked(
    cli, client, monkeypatch
) -> None:
    """No edit to src/: the solver is a module on PYTHONPATH and a YAML file that the
    command's search path adds to the solver group."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TOY), os.environ.get("PYTHONPATH", "")]))
    done = cli(
        "solver=toy",
        f"hydra.searchpath=[file://{TOY}]",
        "activation=relu",
        "model.depth=1",
        "model.width=8",
        "trials=2",
        "solver.lr=0.05",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (setting,) = runs_of(client, "setting")
    assert setting.info.status == "FINISHED"
    assert setting.data.params["solver.name"] == "toy"
    assert setting.data.params["solver.lr"] == "0.05"
    assert not any(
        k.startswith("solver.") and k.endswith(("beta", "momentum")) for k in setting.data.params
    )
    assert setting.data.tags["competitor"] == "Toy (ReLU)"
    trials = runs_of(client, "trial")
    assert len(trials) == 2
    curve = client.get_metric_history(trials[0].info.run_id, "train_mse")
    assert [m.step for m in curve] == [1, 2, 3, 4, 5]
    assert curve[-1].value < curve[0].value  # gradient descent on the output layer descends
    assert math.isfinite(setting.data.metrics["best_train_mse"])


def test_a_toy_solver_without_its_search_path_is_refused_naming_the_options(cli) -> None:
    done = cli("solver=toy")
    assert done.returncode != 0
    options = "adam, admm, bcd, dladmm, sgd, sgdm"
    assert f"solver=toy is not an option; choose one of {options}" in done.stderr
