"""Structured-config schema of a run and its validation.

Hydra composes the YAML in ``conf/``; :func:`validate` merges the result into
these dataclasses (types) and checks every range (values). A bad value raises
:class:`ConfigError` with one line naming the key and the value, before any work.
"""

import difflib
from dataclasses import dataclass, field
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from admmlab.paths import conf_dir

SOLVERS = ("admm", "sgd", "sgdm", "adam")
DEVICES = ("cpu", "cuda", "auto")
DTYPES = ("float64", "float32")


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line naming key and value."""


@dataclass
class ModelConfig:
    depth: int = 2
    width: int = 100


@dataclass
class ActivationConfig:
    name: str = "sigmoid"


@dataclass
class InitConfig:
    name: str = "msra"
    scale: float = 1.0


@dataclass
class SolverConfig:
    """Union of every solver's keys; each solver reads the ones it needs."""

    name: str = "sgd"
    epochs: int = 2000
    lam: float = 0.0
    beta: Any = 1.0  # ADMM: a scalar or one value per layer 1..L+1
    lr: float = 0.1
    lr_gamma: float = 0.9
    lr_every: int = 10
    batch_size: int = 50
    momentum: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    impl: str = "fast"  # "fast", or "reference": the readable step (SGD types) or iteration (ADMM)
    step: float | None = None  # one knob for SGD's lr and ADMM's beta (the lr_beta study)


@dataclass
class DatasetConfig:
    name: str = "square"
    n_train: int = 1000
    n_test: int = 1000
    noise_std: float = 0.0
    val_fraction: float = 0.0
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    paper_best: dict[str, Any] = field(default_factory=dict)  # competitor → depth, width
    # competitor → values tuned on this task (lr, lr_gamma, init_scale): conf/experiment/
    # presets read them, falling back to the values they were tuned to on the square task
    tuned: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrackingConfig:
    enabled: bool = True
    experiment: str | None = None  # default: the dataset's name
    uri: str | None = None  # default: MLFLOW_TRACKING_URI, else <repo>/mlruns/mlflow.db
    log_weights: bool = True
    flush_every: int = 100  # epochs between batched metric writes
    max_points: int = 250  # per-epoch points per MLflow curve (0: every epoch)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    init: InitConfig = field(default_factory=InitConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    trials: int = 1
    device: str = "cpu"
    dtype: str = "float64"
    objective: Any = "auto"  # a metric name, or a list of them (multi-objective Optuna)
    study: str | None = None  # the MLflow study name of a sweep (default: see sweeping)
    max_failure_rate: float = 1.0
    restart: bool = False  # a grid sweep opens a new study run rather than resume one


def gpus_for(device: str) -> int:
    """GPUs a launcher asks a cluster for, per job (``hydra/launcher=ray_cluster``)."""
    return 1 if device == "cuda" else 0


OmegaConf.register_new_resolver("admmlab.gpus", gpus_for, replace=True)


def _fail(key: str, requirement: str, value: Any) -> None:
    raise ConfigError(f"{key} must be {requirement}, got {value!r}")


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _fail(key, "a positive integer", value)


def _one_of(key: str, value: Any, options) -> None:
    if value not in options:
        _fail(key, f"one of {', '.join(sorted(options))}", value)


def _check_beta(beta: Any, depth: int) -> None:
    values = list(beta) if isinstance(beta, list | tuple) else [beta]
    if isinstance(beta, list | tuple) and len(values) != depth + 1:
        raise ConfigError(
            f"solver.beta must be a scalar or a list of depth+1 = {depth + 1} values, "
            f"got {len(values)} values {values!r}"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            _fail("solver.beta", "positive (every entry)", beta)


def check_ranges(cfg: RunConfig) -> None:
    """Every value check that types alone cannot express."""
    for key in (
        "model.depth",
        "model.width",
        "solver.epochs",
        "trials",
        "solver.batch_size",
        "solver.lr_every",
        "dataset.n_train",
        "dataset.n_test",
        "tracking.flush_every",
    ):
        section, _, name = key.rpartition(".")
        _positive_int(key, getattr(getattr(cfg, section) if section else cfg, name))
    # The registries load torch: imported here, so that --help and a refused key or
    # group option answer without it.
    from admmlab.data import DATASETS
    from admmlab.nets import ACTIVATIONS, INIT_SCHEMES
    from admmlab.solvers.admm import IMPLS as ADMM_IMPLS
    from admmlab.solvers.sgd_steps import IMPLS as SGD_IMPLS

    s, d = cfg.solver, cfg.dataset
    _one_of("solver", s.name, SOLVERS)
    _one_of("activation", cfg.activation.name, ACTIVATIONS)
    _one_of("init", cfg.init.name, INIT_SCHEMES)
    _one_of("device", cfg.device, DEVICES)
    _one_of("dtype", cfg.dtype, DTYPES)
    _one_of("solver.impl", s.impl, ADMM_IMPLS if s.name == "admm" else SGD_IMPLS)
    if d.name not in DATASETS:
        _fail("dataset", f"one of {', '.join(sorted(DATASETS))}", d.name)
    if not s.lam >= 0:
        _fail("solver.lam", "non-negative", s.lam)
    if not s.lr > 0:
        _fail("solver.lr", "positive", s.lr)
    if not 0 < s.lr_gamma <= 1:
        _fail("solver.lr_gamma", "in (0, 1]", s.lr_gamma)
    if not 0 <= s.momentum < 1:
        _fail("solver.momentum", "in [0, 1)", s.momentum)
    if not cfg.init.scale >= 0:
        _fail("init.scale", "non-negative", cfg.init.scale)
    if not d.noise_std >= 0:
        _fail("dataset.noise_std", "non-negative", d.noise_std)
    if not 0 <= d.val_fraction < 1:
        _fail("dataset.val_fraction", "in [0, 1)", d.val_fraction)
    if cfg.tracking.max_points < 0:
        _fail("tracking.max_points", "non-negative (0: every epoch)", cfg.tracking.max_points)
    if not 0 <= cfg.max_failure_rate <= 1:
        _fail("max_failure_rate", "in [0, 1]", cfg.max_failure_rate)
    if s.name == "admm":
        _check_beta(s.beta, cfg.model.depth)
        if not ACTIVATIONS[cfg.activation.name].smooth:
            raise ConfigError(
                f"activation={cfg.activation.name} cannot be used with solver=admm: "
                "the method needs a smooth activation (sigmoid or tanh)"
            )


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's type error, reduced to 'key: problem'."""
    key = getattr(err, "full_key", None) or "config"
    msg = str(err).splitlines()[0]
    return f"{key}: {msg}"


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Type-check and range-check a composed config; returns the typed config."""
    schema = OmegaConf.structured(RunConfig)
    try:
        merged = OmegaConf.merge(schema, cfg)
        typed: RunConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    check_ranges(typed)
    return typed


GROUPS = ("solver", "activation", "init", "dataset", "experiment", "sweep")


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files in ``conf/<group>/``."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def _parse_overrides(arguments: list[str]) -> list[Override]:
    """The command line's overrides; none if one is malformed (Hydra itself reports it)."""
    try:
        return OverridesParser.create().parse_overrides(
            [a for a in arguments if "=" in a and not a.startswith("-")]
        )
    except HydraException:
        return []


def _group_values(override: Override) -> list[Any]:
    value = override.value()
    return value.list if isinstance(value, ChoiceSweep) else [value]


def check_group_options(arguments: list[str]) -> None:
    """Refuse ``solver=foo`` (or ``init=a,foo``) with one line, before Hydra composes."""
    for override in _parse_overrides(arguments):
        group = override.key_or_group
        if group not in GROUPS or override.is_delete():
            continue
        options = group_options(group)
        for v in _group_values(override):
            if isinstance(v, str) and v not in options and v != "null":
                raise ConfigError(
                    f"{group}={v} is not an option; choose one of {', '.join(options)}"
                )


def _sets_existing_key(override: Override) -> bool:
    """Whether ``override`` changes a key that must already exist (``key=value``)."""
    key = override.key_or_group
    return not (
        key in GROUPS
        or key.startswith("hydra")
        or override.package is not None
        or override.is_add()
        or override.is_force_add()
        or override.is_delete()
    )


def _prefix(override: Override) -> str:
    return "++" if override.is_force_add() else "+" if override.is_add() else ""


def _choice_sets(overrides: list[Override]) -> list[list[str]]:
    """The group choices to check keys against: the first value of each group the
    command names, then each further value of a swept group in turn (one group at a
    time, not every combination)."""
    groups = [
        (f"{_prefix(o)}{o.key_or_group}", [str(v) for v in _group_values(o)])
        for o in overrides
        if o.key_or_group in GROUPS and not o.is_delete()
        and all(isinstance(v, str) for v in _group_values(o))
    ]  # fmt: skip
    base = [f"{name}={values[0]}" for name, values in groups]
    sets = [base]
    for j, (name, values) in enumerate(groups):
        sets += [[*base[:j], f"{name}={v}", *base[j + 1 :]] for v in values[1:]]
    return sets


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items_ex(resolve=False):
        keys += _leaf_keys(v, f"{prefix}{k}.") if isinstance(v, DictConfig) else [f"{prefix}{k}"]
    return keys


def _has_key(cfg: DictConfig, key: str) -> bool:
    """Whether the dotted ``key`` is in ``cfg``, whatever its value (``???`` included)."""
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _unknown_key(key: str, cfg: DictConfig, choices: list[str]) -> str:
    where = f" with {' '.join(choices)}" if choices else ""
    close = difflib.get_close_matches(key, _leaf_keys(cfg), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{key} is not a setting{where}{hint} (to add it anyway: ++{key}=…)"


# Options under which the command's config is not conf/config.yaml composed as usual.
_OTHER_CONFIG = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")
_SHELL_COMPLETION = ("-sc", "--shell-completion")


def check_override_keys(arguments: list[str]) -> None:
    """Refuse ``model.widht=3`` with one line naming the key, before Hydra composes
    (Hydra's own report is a paragraph).

    Each key set without ``+`` must exist in the config that the command's group
    choices compose; for a sweep over a group, with each of its values.
    """
    flags = {a.split("=")[0] for a in arguments if a.startswith("-")}
    if flags & {*_OTHER_CONFIG, *_SHELL_COMPLETION}:
        return
    overrides = _parse_overrides(arguments)
    keys = [o.key_or_group for o in overrides if _sets_existing_key(o)]
    if not keys or any(o.key_or_group in GROUPS and o.package for o in overrides):
        return
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for choices in _choice_sets(overrides):
            try:
                cfg = compose("config", overrides=choices)
            except (HydraException, OmegaConfBaseException):
                return  # Hydra reports what is wrong with the choices themselves
            for key in keys:
                if not _has_key(cfg, key):
                    raise ConfigError(_unknown_key(key, cfg, choices))
