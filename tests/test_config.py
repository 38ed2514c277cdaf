"""Every option composes; every bad value is refused with one line naming the key."""

from pathlib import Path

import pytest
from hydra.errors import HydraException

from admmlab.config import ConfigError, check_override_keys, validate
from admmlab.paths import conf_dir

GROUPS = ("solver", "activation", "init", "dataset")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def test_groups_hold_the_documented_options():
    assert set(options("solver")) >= {"sgd", "sgdm", "adam", "admm"}
    assert set(options("activation")) == {"sigmoid", "tanh", "relu"}
    assert set(options("init")) == {
        "lecun_uniform",
        "lecun_gauss",
        "orth_uniform",
        "orth_gauss",
        "xavier",
        "msra",
        "zero",
    }
    assert set(options("dataset")) >= {
        "square",
        "product_gate",
        "radial_piecewise",
        "radial_smooth",
    }


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(make_cfg, group, option):
    overrides = [f"{group}={option}"]
    if group == "solver" and option == "admm":
        overrides.append("activation=sigmoid")
    if group == "solver" and option == "dladmm":
        overrides.append("activation=relu")
    if group == "activation" and option == "relu":
        overrides.append("solver=adam")
    typed = validate(make_cfg(*overrides))
    assert getattr(typed, group).name == option


def test_admm_preset_scales_init_by_eight(make_cfg):
    typed = validate(make_cfg("solver=admm"))
    assert typed.init.scale == 8.0 and typed.solver.lam == 1e-6 and typed.solver.epochs == 50
    assert validate(make_cfg("solver=admm", "init.scale=2")).init.scale == 2.0
    assert validate(make_cfg("solver=sgd")).init.scale == 1.0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.width=-3", "model.width"),
        ("model.depth=0", "model.depth"),
        ("solver.epochs=0", "solver.epochs"),
        ("trials=0", "trials"),
        ("solver.batch_size=0", "solver.batch_size"),
        ("solver.lam=-1", "solver.lam"),
        ("solver.lr=0", "solver.lr"),
        ("dataset.noise_std=-0.1", "dataset.noise_std"),
        ("device=tpu", "device"),
        ("dtype=float16", "dtype"),
    ],
)
def test_bad_values_name_the_key(make_cfg, override, key):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(override))
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message


def test_a_value_of_the_wrong_type_is_refused_by_hydra_and_named_in_one_line(make_cfg):
    """The run's schema is registered in Hydra's ConfigStore: Hydra refuses the type as it
    composes; the command line's check says so in one line before Hydra starts."""
    with pytest.raises(HydraException):
        make_cfg("model.width=abc")
    with pytest.raises(ConfigError) as err:
        check_override_keys(["model.width=abc"])
    message = str(err.value)
    assert message.startswith("model.width: Value 'abc'") and "\n" not in message


@pytest.mark.parametrize("beta", ["0", "-1", "[1,1]", "[1,0,1]"])
def test_admm_beta_must_be_positive_with_one_value_per_layer(make_cfg, beta):
    with pytest.raises(ConfigError, match=r"solver\.beta"):
        validate(make_cfg("solver=admm", "model.depth=2", f"solver.beta={beta}"))
    assert validate(make_cfg("solver=admm", "model.depth=2", "solver.beta=[1,2,3]"))


@pytest.mark.parametrize("solver", ["admm", "sgd"])
def test_impl_is_fast_by_default_and_reference_on_request(make_cfg, solver):
    assert validate(make_cfg(f"solver={solver}")).solver.impl == "fast"
    chosen = validate(make_cfg(f"solver={solver}", "solver.impl=reference"))
    assert chosen.solver.impl == "reference"
    check_override_keys([f"solver={solver}", "solver.impl=reference"])


@pytest.mark.parametrize("solver", ["admm", "sgd"])
def test_an_unknown_impl_is_refused_in_one_line(make_cfg, solver):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(f"solver={solver}", "solver.impl=fused"))
    assert str(err.value) == "solver.impl must be one of fast, reference, got 'fused'"


def test_admm_refuses_relu(make_cfg):
    with pytest.raises(ConfigError, match="smooth activation"):
        validate(make_cfg("solver=admm", "activation=relu"))


def test_dladmm_refuses_sigmoid_in_one_line(make_cfg):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("solver=dladmm", "activation=sigmoid"))
    assert str(err.value) == (
        "activation=sigmoid cannot be used with solver=dladmm: the method trains relu nets only"
    )


def test_unknown_key_is_refused(make_cfg):
    with pytest.raises(ConfigError, match=r"model\.height"):
        validate(make_cfg("+model.height=3"))


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["model.widht=3"], "model.widht is not a setting; did you mean model.width?"),
        (["-m", "solver=sgd,admm", "solver.lr=0.1"], "solver.lr is not a setting with solver=admm"),
        (["dataset=digits", "dataset.options.test_fractoin=0.3"], "dataset.options.test_fraction?"),
    ],
)
def test_a_key_that_the_config_lacks_is_refused_in_one_line(arguments, words):
    with pytest.raises(ConfigError) as err:
        check_override_keys(arguments)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "arguments",
    [
        ["model.width=3", "+extra=1", "hydra.job.chdir=true", "~tracking.uri"],
        ["solver=admm", "solver.lam=1e-4", "init.scale=2"],
        ["experiment=admm_sigmoid", "solver.beta=2"],
        ["-m", "+sweep=optuna_admm", "hydra.sweeper.n_trials=2", "model.width=choice(4,8)"],
        ["-m", "solver=sgd,adam", "solver.lr=0.1,0.01"],
        ["++solver=admm", "solver.lam=1e-4"],
        ["-sc", "query=bash"],
        ["--config-name", "other", "model.widht=3"],
    ],
)
def test_keys_the_config_has_pass(arguments):
    check_override_keys(arguments)


def test_conf_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (conf_dir() / "config.yaml").is_file()
    assert Path.cwd() == tmp_path


def test_slurm_launcher_preset_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.cpus_per_task == 2


def test_a_real_data_sets_options_are_typed_by_its_class_as_hydra_composes(make_cfg):
    """Each data set kind has its schema in Hydra's ConfigStore (conf/dataset/<name>.yaml's
    defaults): Hydra refuses a wrong type; validate() the range and an unknown option."""
    with pytest.raises(HydraException):
        make_cfg("dataset=ptb", "dataset.options.n_train=many")
    with pytest.raises(ConfigError, match=r"^dataset.options.test_fraction must be in \(0, 1\)"):
        validate(make_cfg("dataset=digits", "dataset.options.test_fraction=2"))
    with pytest.raises(ConfigError, match=r"^dataset.options.tset_fraction is not an option of"):
        validate(make_cfg("dataset=digits", "+dataset.options.tset_fraction=0.2"))
    with pytest.raises(ConfigError, match="is not an option of square: it takes none"):
        validate(make_cfg("dataset=square", "+dataset.options.test_fraction=0.2"))
    assert (
        validate(make_cfg("dataset=eyb", "dataset.options.image_size=8")).dataset.options[
            "image_size"
        ]
        == 8
    )
