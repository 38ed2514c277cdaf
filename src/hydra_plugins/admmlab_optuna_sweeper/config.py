"""Structured configs: ``hydra/sweeper=optuna`` and its ``hydra/sweeper/sampler`` group.

Keys follow Hydra's official Optuna sweeper (which pins Optuna < 3), so its
command lines and YAML carry over.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    multivariate: bool = False


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConf:
    """The grid is built from the (discrete) search space: ``choice``/``range``."""

    _target_: str = "admmlab.optuna_space.SweepGridSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    n_startup_trials: int = 1


@dataclass
class NSGAIISamplerConf:
    """Multi-objective: give ``direction`` and ``objective`` as lists of equal length."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.admmlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sampler is built by the sweeper (grid needs the space)
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}])
    sampler: Any = None
    # "minimize"/"maximize", or a list of them for several objectives
    direction: Any = "minimize"
    # An Optuna storage URL (sqlite:///…, postgresql://…), a journal file (a path
    # ending in .log/.journal, or journal:<path>); default: mlruns/optuna/journal.log
    storage: str | None = None
    study_name: str | None = None
    n_trials: int = 20
    n_jobs: int = 1  # trials asked for and launched together (parallel with joblib)
    max_failure_rate: float = "${max_failure_rate}"  # type: ignore[assignment]
    params: dict[str, str] | None = None
    # Stop unpromising trials early: none, median or hyperband (Optuna's pruners); each
    # job reports its objective every report_every epochs (0: about 50 times a run)
    pruner: str = "none"
    report_every: int = 0
    # Set by the sweeper on each job it launches: the Optuna trial the job runs
    trial: int | None = None


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="admmlab")
    for name, node in {
        "tpe": TPESamplerConf,
        "random": RandomSamplerConf,
        "grid": GridSamplerConf,
        "cmaes": CmaEsSamplerConf,
        "nsgaii": NSGAIISamplerConf,
    }.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="admmlab")
