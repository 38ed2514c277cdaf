"""``hydra/sweeper=optuna``: our sweeper on Optuna >= 4.

Hydra imports every plugin module at start-up to find its plugins, so this one
stays light: Optuna and the sweeper's work (:mod:`._impl`) load only when a sweep
uses it.
"""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.admmlab_optuna_sweeper.config import register

register()


class OptunaSweeper(Sweeper):
    """Ask Optuna for trials, launch them, tell the results (:class:`._impl.OptunaSweeperImpl`)."""

    def __init__(self, **kwargs: Any) -> None:
        from hydra_plugins.admmlab_optuna_sweeper._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
