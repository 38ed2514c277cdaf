"""Structured-config schema of a run and its validation.

Hydra composes the YAML in ``conf/``; :func:`validate` merges the result into
these dataclasses (types) and checks every range (values). A bad value raises
:class:`ConfigError` with one line naming the key and the value, before any work.
"""

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from admmlab.paths import conf_dir

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
    # The composed ``solver`` node: validate() builds it into its own typed settings,
    # the class its ``_target_`` names (an admmlab.solvers.interface.Solver).
    solver: Any = None
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


def check_ranges(cfg: RunConfig) -> None:
    """Every value check that types alone cannot express."""
    for key in (
        "model.depth",
        "model.width",
        "trials",
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

    s, d = cfg.solver, cfg.dataset
    _one_of("activation", cfg.activation.name, ACTIVATIONS)
    _one_of("init", cfg.init.name, INIT_SCHEMES)
    _one_of("device", cfg.device, DEVICES)
    _one_of("dtype", cfg.dtype, DTYPES)
    if d.name not in DATASETS:
        _fail("dataset", f"one of {', '.join(sorted(DATASETS))}", d.name)
    _check_options(d.name, d.options)
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
    s.check_net(cfg.model.depth)
    if s.smooth_only and not ACTIVATIONS[cfg.activation.name].smooth:
        raise ConfigError(
            f"activation={cfg.activation.name} cannot be used with solver={s.name}: "
            "the method needs a smooth activation (sigmoid or tanh)"
        )
    if s.activations and cfg.activation.name not in s.activations:
        raise ConfigError(
            f"activation={cfg.activation.name} cannot be used with solver={s.name}: "
            f"the method trains {', '.join(s.activations)} nets only"
        )


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's type error, reduced to 'key: problem'."""
    key = getattr(err, "full_key", None) or "config"
    msg = str(err).splitlines()[0]
    return f"{key}: {msg}"


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Type-check and range-check a composed config; returns the typed config, its
    ``solver`` the settings object of the solver class the config names."""
    from admmlab.solvers.interface import SettingError

    schema = OmegaConf.structured(RunConfig)
    try:
        # Merged as plain values: a key that Hydra let in with + is then refused here.
        plain = OmegaConf.to_container(cfg) if isinstance(cfg, DictConfig) else cfg
        merged = OmegaConf.merge(schema, plain)
        # The solver's values as given (a key added with + included), built below.
        solver = OmegaConf.to_container(merged.solver, resolve=True) if merged.solver else None
        merged.solver = None
        typed: RunConfig = OmegaConf.to_object(merged)
        typed.solver = solver_settings(solver)
        check_ranges(typed)
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    except SettingError as err:
        raise ConfigError(str(err)) from None
    return typed


def solver_class(target: Any) -> type:
    """The :class:`~admmlab.solvers.interface.Solver` subclass ``solver._target_`` names."""
    from hydra.utils import get_class

    from admmlab.solvers.interface import Solver

    if not isinstance(target, str) or not target:
        raise ConfigError(
            "solver._target_ must name the solver's settings class "
            f"(e.g. admmlab.solvers.settings.SGD), got {target!r}"
        )
    try:
        cls = get_class(target)
    except Exception as err:
        cause = str(err.__cause__ or err).splitlines()[0]
        raise ConfigError(f"solver._target_={target} cannot be imported: {cause}") from None
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise ConfigError(f"solver._target_={target} is not a subclass of {Solver.__qualname__}")
    return cls


def solver_settings(node: dict | None) -> Any:
    """The solver's typed settings from its composed values: the class their
    ``_target_`` names, built from them (no solver: SGD's defaults).

    A built-in solver's schema is registered below, so Hydra already checked its keys
    and types as it composed; a key added with ``+``, and a solver from outside the
    package, are checked here: unknown keys and wrong types refused in one line. The
    class checks its ranges.
    """
    from admmlab.solvers.settings import SGD

    if node is None:
        return SGD()
    values = dict(node)
    cls = solver_class(values.pop("_target_", None))
    known = [f.name for f in dataclasses.fields(cls) if f.name != "_target_"]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean solver.{close[0]}?" if close else ""
            name = values.get("name") or getattr(cls, "name", "") or cls.__name__
            raise ConfigError(
                f"solver.{key} is not a setting of solver={name} "
                f"(its settings: {', '.join(known)}){hint}"
            )
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as err:
        raise ConfigError(f"solver.{_one_line(err)}") from None


def _check_options(name: str, given: dict[str, Any]) -> None:
    """A real data set's options against its class; a synthetic task takes none."""
    from admmlab.data.options import OPTIONS, OptionError, options_for

    if name not in OPTIONS:
        if given:
            key = next(iter(given))
            raise ConfigError(f"dataset.options.{key} is not an option of {name}: it takes none")
        return
    try:
        options_for(name, dict(given))
    except OptionError as err:
        raise ConfigError(str(err)) from None


def register_schemas() -> None:
    """The run's schema (``run_schema``, first in conf/config.yaml's defaults) and each
    built-in solver's (``<name>_schema`` in the ``solver`` group, first in its YAML
    file's defaults), so that Hydra checks keys and types as it composes."""
    from admmlab.data.options import OPTIONS
    from admmlab.solvers.settings import BUILT_IN

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for name, cls in BUILT_IN.items():
        store.store(group="solver", name=f"{name}_schema", node=cls)
    store.store(group="dataset", name="synthetic_schema", node=DatasetConfig)
    for name, options in OPTIONS.items():
        store.store(group="dataset", name=f"{name}_schema", node=real_dataset_schema(options))


def real_dataset_schema(options: type) -> type:
    """A real data set's schema: the common keys, and ``options`` typed as its class."""
    return dataclasses.make_dataclass(
        f"{options.__name__.removesuffix('Options')}Dataset",
        [("options", options, field(default_factory=options))],
        bases=(DatasetConfig,),
    )


register_schemas()

GROUPS = ("solver", "activation", "init", "dataset", "experiment", "sweep")


def group_options(group: str, search_dirs: Sequence[Path] = ()) -> list[str]:
    """The options of a config group: the YAML files in ``conf/<group>/`` and in
    ``<dir>/<group>/`` of each further search directory."""
    dirs = [conf_dir(), *search_dirs]
    return sorted({p.stem for d in dirs for p in (Path(d) / group).glob("*.yaml")})


def search_dirs(overrides: list[Override]) -> list[Path]:
    """The folders a ``hydra.searchpath=[file://…]`` override adds to the config's
    search path (where a solver added outside the package keeps its YAML file)."""
    dirs = []
    for override in overrides:
        if override.key_or_group == "hydra.searchpath":
            value = override.value()
            for entry in value if isinstance(value, list) else [value]:
                if isinstance(entry, str) and entry.startswith("file://"):
                    dirs.append(Path(entry.removeprefix("file://")))
    return dirs


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
    overrides = _parse_overrides(arguments)
    extra = search_dirs(overrides)
    for override in overrides:
        group = override.key_or_group
        if group not in GROUPS or override.is_delete():
            continue
        options = group_options(group, extra)
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
            _check_types(choices, [o for o in overrides if _sets_existing_key(o)])


def _check_types(choices: list[str], values: list[Override]) -> None:
    """Refuse a value of the wrong type (``model.depth=abc``, or one value of a sweep
    ``model.depth=1,abc``) in one line, before a sweep starts: Hydra checks each value
    against the schema as it composes that job, and says so in a paragraph."""
    given = [o.input_line for o in values if not o.is_sweep_override() and o.input_line]
    swept = [
        f"{o.key_or_group}={v}"
        for o in values
        if isinstance(o.value(), ChoiceSweep)
        for v in _group_values(o)
        if isinstance(v, str | int | float | bool)
    ]
    for one in [None, *swept]:
        try:
            compose("config", overrides=[*choices, *given, *([one] if one else [])])
        except HydraException as err:
            cause = err.__cause__
            if isinstance(cause, OmegaConfBaseException):
                raise ConfigError(_one_line(cause)) from None
