"""What every sweep shares, whatever the sweeper: one MLflow study run per sweep,
and the failure policy (a failed setting is recorded and the sweep goes on,
until more than ``max_failure_rate`` of the settings have failed).
"""

import math
import os
import time
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from admmlab import tracking

STUDY_ENV = "ADMMLAB_STUDY_RUN_ID"  # the study run every setting run is a child of
STUDY_NAME_ENV = "ADMMLAB_STUDY"  # the study's name, tagged on every setting run
EXPERIMENT_ENV = "ADMMLAB_STUDY_EXPERIMENT"


def study_name(config: DictConfig) -> str:
    """``study`` if set, else the Optuna study name, the sweep's name, or a timestamp."""
    for key in ("study", "hydra.sweeper.study_name", "hydra.runtime.choices.sweep"):
        value = OmegaConf.select(config, key, default=None)
        if value:
            return str(value)
    return time.strftime("multirun-%Y%m%d-%H%M%S")


def experiment_name(config: DictConfig) -> str:
    return OmegaConf.select(config, "tracking.experiment") or config.dataset.name


def is_multirun() -> bool:
    try:
        return HydraConfig.get().mode.name == "MULTIRUN"
    except ValueError:  # no Hydra context: called as a library
        return False


def job_overrides() -> list[str]:
    """The overrides Hydra composed this job from, or [] outside Hydra."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def maximise(objective_name: str) -> bool:
    return objective_name.endswith("_acc")


def best_setting(runs: list[Any]) -> dict[str, Any] | None:
    """The finished setting with the best ``objective`` (direction by its name)."""
    scored = [
        r
        for r in runs
        if r.info.status == "FINISHED"
        and "objective" in r.data.metrics
        and math.isfinite(r.data.metrics["objective"])
    ]
    if not scored:
        return None
    name = scored[0].data.tags.get("objective_name", "objective")
    sign = -1.0 if maximise(name) else 1.0
    best = min(scored, key=lambda r: sign * r.data.metrics["objective"])
    return {
        "objective": best.data.metrics["objective"],
        "objective_name": name,
        "run_id": best.info.run_id,
        "overrides": best.data.tags.get("overrides", ""),
    }


def enforce_failure_rate(store: tracking.Store, study_id: str, max_rate: float) -> None:
    """End the study FAILED and exit once failed settings exceed ``max_rate`` of the done ones.

    ``SystemExit`` passes through Hydra's launchers (which record an ordinary
    exception and go on), so the sweep really stops.
    """
    runs = tracking.study_settings(store, study_id)
    done = [r for r in runs if r.info.status in ("FINISHED", "FAILED")]
    failed = sum(r.info.status == "FAILED" for r in done)
    if done and failed / len(done) > max_rate:
        message = (
            f"sweep stopped: {failed} of {len(done)} settings failed, more than "
            f"max_failure_rate={max_rate:g}"
        )
        store.set_tags(study_id, {"failure_reason": message})
        tracking.end_study(store, study_id, status="FAILED")
        raise SystemExit(f"error: {message}")


def sweep_definition(config: DictConfig) -> dict[str, str]:
    """The study run's params: what was swept, how, and from which file."""
    return {
        "sweep": OmegaConf.select(config, "hydra.runtime.choices.sweep") or "command line",
        "overrides": " ".join(config.hydra.overrides.task),
        "sweeper": config.hydra.sweeper.get("_target_", ""),
        "launcher": config.hydra.launcher.get("_target_", ""),
    }


def sweep_record(config: DictConfig) -> dict[str, Any]:
    """The sweep definition artifact: the search space and the command line."""
    params = OmegaConf.select(config, "hydra.sweeper.params")
    return {
        **sweep_definition(config),
        "params": OmegaConf.to_container(params) if params is not None else {},
        "command_overrides": list(config.hydra.overrides.task),
    }


class StudyCallback(Callback):
    """Opens the study run before a multirun's first job and closes it after the last.

    Jobs find it through environment variables, which launcher processes inherit,
    so the hierarchy holds across processes.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.store: tracking.Store | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        name = study_name(config)
        uri = OmegaConf.select(config, "tracking.uri")
        self.store = tracking.Store(experiment_name(config), uri)
        self.run_id = tracking.start_study(self.store, name, sweep_definition(config))
        self.store.log_text(self.run_id, OmegaConf.to_yaml(sweep_record(config)), "sweep.yaml")
        os.environ.update(
            {STUDY_ENV: self.run_id, STUDY_NAME_ENV: name, EXPERIMENT_ENV: experiment_name(config)}
        )
        print(f"[admmlab] study {name!r}: MLflow run {self.run_id}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.store is None or self.run_id is None:
            return
        best = best_setting(tracking.study_settings(self.store, self.run_id))
        tracking.end_study(self.store, self.run_id, best=best)
        if best:
            print(
                f"[admmlab] best {best['objective_name']}={best['objective']:.4e} "
                f"({best['overrides']})"
            )
        for key in (STUDY_ENV, STUDY_NAME_ENV, EXPERIMENT_ENV):
            os.environ.pop(key, None)
