"""The sweeper's work, imported only when a sweep uses it: ask Optuna for
``n_jobs`` trials, launch them, tell the results.

A trial whose job fails or returns a non-finite value is told FAIL and the
study goes on; past ``max_failure_rate`` the sweep stops with one line. On an
interrupt the in-flight trials are told FAIL, so the same command continues
the study (``load_if_exists``) with nothing lost.
"""

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from admmlab import interrupts, optuna_trial, sweeping
from admmlab import optuna_space as search_space
from admmlab import optuna_storage as storage
from admmlab.config import ConfigError


def _quoted(value: str) -> str:
    """``value`` as an override's value: quoted unless it is a plain word."""
    if re.fullmatch(r"[\w.-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _stored(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as its job left it in the storage (with its user attributes)."""
    return study._storage.get_trial(trial._trial_id)


class OptunaSweeperImpl(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: dict[str, str] | None,
        pruner: str = "none",
        report_every: int = 0,
        trial: int | None = None,
    ) -> None:
        self.sampler_conf = sampler
        self.directions = (
            list(direction)
            if isinstance(direction, Sequence) and not isinstance(direction, str)
            else [direction]
        )
        del study_name  # read from the whole config, as the study callback does
        self.storage_spec = storage
        self.n_trials = n_trials
        self.n_jobs = max(1, n_jobs)
        self.max_failure_rate = float(max_failure_rate)
        self.params = dict(params or {})
        try:  # a pruner name Optuna does not have stops the sweep in one line
            optuna_trial.make_pruner(str(pruner), 1)
        except ConfigError as err:
            raise SystemExit(f"error: {err}") from None
        if pruner != "none" and len(self.directions) > 1:
            raise SystemExit(
                f"error: hydra.sweeper.pruner must be none for several objectives, got {pruner!r}"
            )
        self.pruner = str(pruner)
        del report_every, trial  # read by each job (admmlab.optuna_trial)
        self.config: DictConfig | None = None
        self.launcher = None
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _sampler(self, space: dict, done: int) -> optuna.samplers.BaseSampler:
        """The configured sampler; a seeded one continuing a study of ``done`` trials
        is seeded ``seed + done``, so that it does not replay the trials it has."""
        conf = OmegaConf.to_container(self.sampler_conf, resolve=True)
        if conf["_target_"].endswith("SweepGridSampler"):
            conf["search_space"] = search_space.grid(space)
        if conf.get("seed") is not None:
            conf["seed"] += done
        return instantiate(conf)

    def _study(self, space: dict) -> optuna.Study:
        name = sweeping.study_name(self.config)
        with interrupts.shielded():
            opened = storage.open_storage(self.storage_spec)
            trials = storage.study_trials(opened, name)
        search_space.refuse_incompatible_space(name, trials, space)
        with search_space.one_line():
            sampler = self._sampler(space, len(trials))
        # Hyperband's brackets filter the trials the sampler sees, in this process
        epochs = int(OmegaConf.select(self.config, "solver.epochs", default=1) or 1)
        with interrupts.shielded():
            return optuna.create_study(
                study_name=name,
                storage=opened,
                sampler=sampler,
                pruner=optuna_trial.make_pruner(self.pruner, epochs),
                directions=self.directions,
                load_if_exists=True,
            )

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        space, fixed = search_space.parse_space(self.params, arguments)
        study = self._study(space)
        print(
            f"[optuna] study {study.study_name!r} in {storage.describe(self.storage_spec)}: "
            f"{len(study.trials)} trials so far, {self.n_trials} to run"
        )
        returns, failures, done = [], 0, 0
        while done < self.n_trials:
            if isinstance(study.sampler, search_space.SweepGridSampler) and (
                study.sampler.is_exhausted(study)
            ):
                print("[optuna] the grid is exhausted")
                break
            size = min(self.n_jobs, self.n_trials - done)
            batch, results = self._ask_and_launch(study, space, fixed, size)
            with interrupts.shielded():  # all of the batch is told, or none
                for trial, result in zip(batch, results, strict=True):
                    failures += not self._tell(study, trial, result)
            returns.extend(results)
            done += len(batch)
            if failures / done > self.max_failure_rate:  # one line, past Hydra's reporting
                raise SystemExit(
                    f"error: Optuna study {study.study_name!r} stopped: {failures} of {done} "
                    f"trials failed, more than max_failure_rate={self.max_failure_rate:g}"
                )
        self._report(study)
        return returns

    def _ask_and_launch(
        self, study: optuna.Study, space: dict, fixed: list[str], size: int
    ) -> tuple[list[optuna.Trial], Sequence[JobReturn]]:
        """Ask for ``size`` trials and run them; on an interrupt or error, every
        trial asked so far is told FAIL.

        Storage writes are shielded: one cut short can leave a SQLite file locked.
        """
        batch: list[optuna.Trial] = []
        try:
            with interrupts.shielded():
                for _ in range(size):
                    batch.append(study.ask(space))
            overrides = [
                [
                    *fixed,
                    *(search_space.as_override(k, v) for k, v in t.params.items()),
                    # the job reports to its trial, in the study the sweeper resolved
                    f"hydra.sweeper.trial={t.number}",
                    f"hydra.sweeper.study_name={_quoted(study.study_name)}",
                ]
                for t in batch
            ]
            results = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt):
                interrupts.clear()  # handled here: a second signal is held, not raised mid-tell
            with interrupts.shielded():  # interrupted or broken: fail these, keep the study usable
                for trial in batch:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        self.job_idx += len(results)
        return batch, results

    def _tell(self, study: optuna.Study, trial: optuna.Trial, result: JobReturn) -> bool:
        """Record one trial; False when it failed (raised or non-finite). A trial its
        job pruned is told PRUNED, which is no failure."""
        if optuna_trial.PRUNED_ATTR in _stored(study, trial).user_attrs:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return True
        values = None
        if result.status == JobStatus.COMPLETED:
            raw = result._return_value
            values = list(raw) if isinstance(raw, Sequence) else [raw]
        ok = (
            values is not None
            and len(values) == len(self.directions)
            and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        )
        if ok:
            study.tell(trial, values if len(values) > 1 else values[0])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return ok

    def _report(self, study: optuna.Study) -> None:
        pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
        if pruned:
            print(f"[optuna] {len(pruned)} trial(s) pruned")
        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            print("[optuna] no trial completed")
            return
        best = study.best_trials
        results = {
            "name": study.study_name,
            "best_trials": [{"values": t.values, "params": t.params} for t in best],
        }
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        for t in best[:5]:
            print(f"[optuna] best trial {t.number}: values={t.values} params={t.params}")
