"""A job's side of its Optuna trial: link it to its MLflow run, report its
intermediate objective and stop it when the study's pruner says so.

The sweeper hands each job its trial number (``hydra.sweeper.trial``); the job
opens the study through its storage, so this works with the journal file,
SQLite and PostgreSQL, and with jobs in other processes or on other machines
(joblib, Ray, SLURM). A pruned job's trial is marked here (a user attribute)
and the sweeper tells it PRUNED; its MLflow run ends KILLED with the reason.
"""

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import optuna
from omegaconf import DictConfig, OmegaConf

from admmlab.config import ConfigError
from admmlab.optuna_storage import open_storage
from admmlab.sweeping import optuna_study_name
from admmlab.tracking import StoppedEarly

PRUNERS = ("none", "median", "hyperband")
RUN_ID_ATTR = "mlflow_run_id"
EXPERIMENT_ATTR = "mlflow_experiment"
PRUNED_ATTR = "pruned_at_epoch"
STUDY_TAG = "optuna.study_name"
TRIAL_TAG = "optuna.trial_number"
REPORTS_PER_RUN = 50  # intermediate values a run reports unless ``report_every`` is set


class Pruned(StoppedEarly):
    """The study's pruner stopped this trial; the run ends KILLED, the trial PRUNED."""


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """Optuna's pruner ``name``, sized for runs of ``epochs`` epochs.

    Median: a trial is stopped once, past a tenth of its epochs, its intermediate
    objective is worse than the median of the earlier trials at the same epoch (after
    four trials have finished). Hyperband: brackets from a twentieth of the epochs up.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=epochs // 10)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, epochs // 20), max_resource=epochs, reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"hydra.sweeper.pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


@dataclass
class Intermediate:
    """The per-epoch value of an objective, as its final value will be computed: the
    mean over the trials still finite of the running best (``best_*``) or the current
    value of the curve it names."""

    curve: str
    best: str | None = None  # "min" or "max": a running best, else the current value
    _so_far: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, objective: str) -> "Intermediate":
        if objective == "best_train_mse":
            return cls("train_mse", "min")
        if objective.startswith("best_") and objective.endswith("_acc"):
            return cls(objective.removeprefix("best_"), "max")
        if objective == "run_time_s":
            raise ConfigError(
                "hydra.sweeper.pruner needs an objective measured per epoch, got run_time_s"
            )
        return cls(objective.removeprefix("final_"))

    def update(self, values: Mapping[str, Sequence[float]]) -> float:
        """The value at this epoch: NaN once a trial has stopped (its curve reads NaN
        from then on), as the final objective of a setting with a diverged trial is."""
        current = [float(v) for v in values[self.curve]]
        if self.best and self._so_far:
            pick = min if self.best == "min" else max
            pairs = zip(self._so_far, current, strict=True)
            current = [c if math.isnan(c) else pick(s, c) for s, c in pairs]
        self._so_far = current
        return sum(current) / len(current)


class TrialLink:
    """One job's Optuna trial, opened through the study's storage."""

    def __init__(
        self,
        study: optuna.Study,
        number: int,
        objectives: list[str],
        epochs: int,
        pruner: str,
        report_every: int,
    ) -> None:
        self.study = study
        self.number = number
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.pruner = pruner
        self.every = report_every or max(1, epochs // REPORTS_PER_RUN)
        self.value = Intermediate.of(objectives[0]) if pruner != "none" else None
        if study.metric_names is None:  # the first job names the study's objectives
            study.set_metric_names(objectives)

    def tags(self) -> dict[str, str]:
        """For the trial's MLflow run: which study and trial it is."""
        return {STUDY_TAG: self.study.study_name, TRIAL_TAG: str(self.number)}

    def attach(self, run_id: str, experiment: str) -> None:
        """Record on the trial which MLflow run holds it."""
        self.trial.set_user_attr(RUN_ID_ATTR, run_id)
        self.trial.set_user_attr(EXPERIMENT_ATTR, experiment)

    def watch(self, epoch: int, values: Mapping[str, Sequence[float]]) -> None:
        """Report the intermediate objective every ``report_every`` epochs; raise
        :class:`Pruned` when the pruner stops the trial."""
        if self.value is None:
            return
        value = self.value.update(values)
        if epoch % self.every or not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_ATTR, epoch)
            raise Pruned(
                f"pruned by Optuna's {self.pruner} pruner at epoch {epoch} "
                f"({self.value.curve} {value:.4g})"
            )


def trial_link(
    hydra: DictConfig, study: str | None, objectives: list[str], epochs: int
) -> TrialLink | None:
    """The job's trial when the Optuna sweeper launched it (``hydra`` is the job's
    ``HydraConfig``, ``study`` its config's ``study``), else None."""
    sweeper = hydra.sweeper
    number = OmegaConf.select(sweeper, "trial", default=None)
    if number is None:
        return None
    pruner = str(sweeper.get("pruner") or "none")
    if pruner != "none" and len(objectives) > 1:
        raise ConfigError(
            f"hydra.sweeper.pruner must be none for several objectives, got {pruner!r}"
        )
    name = optuna_study_name(sweeper.get("study_name"), study)
    try:  # the sweeper's process may see a storage this one cannot (a journal elsewhere)
        opened = optuna.load_study(
            study_name=name,
            storage=open_storage(sweeper.get("storage")),
            sampler=optuna.samplers.RandomSampler(),  # never asked: the sweeper samples
            pruner=make_pruner(pruner, epochs),
        )
    except Exception as err:
        if pruner != "none":
            raise ConfigError(f"hydra.sweeper.pruner needs the study's storage: {err}") from None
        print(f"warning: Optuna study {name!r} cannot be opened here ({err}); "
              "the trial is not linked to its run", file=sys.stderr)  # fmt: skip
        return None
    every = int(sweeper.get("report_every") or 0)
    return TrialLink(opened, int(number), objectives, epochs, pruner, every)
