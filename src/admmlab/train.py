"""Hydra entry point ``admmlab-train``: one setting per job, and what a job of a
sweep does with it (skip it when a resumed study has it, record it when it fails).

Training itself is :mod:`admmlab.setting`, imported once a job starts: ``--help``
and a refused key, option or value answer before torch and mlflow load.
"""

import math
import sys
import time
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from admmlab import interrupts, runinfo, tracking
from admmlab.config import ConfigError, check_group_options, check_override_keys, validate
from admmlab.paths import conf_dir
from admmlab.progress import say
from admmlab.sweeping import (
    abort_open_study,
    enforce_failure_rate,
    is_multirun,
    job_overrides,
    job_study,
    uses_optuna,
)

if TYPE_CHECKING:
    from admmlab import setting


def _print_summary(cfg: DictConfig, outcome: "setting.Outcome", seconds: float) -> None:
    """One line of means over the finished trials, and one warning if some diverged."""
    from admmlab import setting

    shown = {"best_train_mse", "final_test_mse", "final_test_acc"} - {outcome.objective_name}
    parts = [f"{k}={outcome.finished_mean(k):.3e}" for k in outcome.summary if k in shown]
    where = f" run={outcome.run_id}" if outcome.run_id else ""
    overrides = "[" + " ".join(job_overrides()) + "]"
    job = f" {setting.label(overrides, job_study(cfg))}" if is_multirun() else ""
    say(
        f"[admmlab] solver={cfg.solver.name} activation={cfg.activation.name} "
        f"depth={cfg.model.depth} width={cfg.model.width} trials={cfg.trials}{job}: "
        f"{outcome.objective_name}={outcome.finished_mean(outcome.objective_name):.4e} "
        f"{' '.join(parts)} ({seconds:.1f}s){where}"
    )
    if outcome.diverged:
        stops = "; ".join(f"seed {seed}: {why}" for seed, why in outcome.diverged.items())
        say(
            f"warning: {len(outcome.diverged)} of {cfg.trials} trials diverged and stopped "
            f"early, the others finished ({stops}); the means above are over the finished "
            "trials, and a sweeper counts the setting failed",
            sys.stderr,
        )


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_entry(cfg: DictConfig) -> float | list[float]:
    """Single run: a user error or divergence is one line and a non-zero exit.

    In a multirun, a failed setting is already recorded FAILED in MLflow (one refused
    before training too, by :func:`run`); the job reports it, returns NaN (the sweeper
    counts it as failed) and the sweep goes on unless the study's failure rate passes
    ``max_failure_rate``.
    """
    interrupts.install()  # again here: launchers run jobs in processes of their own
    start = time.perf_counter()
    if not is_multirun():
        try:  # a refused value answers before torch and mlflow load
            validate(cfg)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    from admmlab import setting  # training: torch and mlflow load here

    try:
        done = finished_before(cfg)
        if done is not None:
            return done
        outcome = setting.run(cfg)
    except tracking.StoppedEarly as err:  # pruned: neither a failure nor a result
        say(f"[admmlab] {' '.join(job_overrides()) or 'the setting'}: {err}")
        return float("nan")
    except (*setting.USER_ERRORS, setting.NonFiniteError) as err:
        if not is_multirun():
            print(f"error: {setting.failure_message(err)}", file=sys.stderr)
            sys.exit(3 if isinstance(err, setting.NonFiniteError) else 2)
        return _failed_job(cfg, setting.failure_message(err))
    except Exception as err:
        if not is_multirun():
            raise
        return _failed_job(cfg, setting.failure_message(err))
    _print_summary(cfg, outcome, time.perf_counter() - start)
    return outcome.sweeper_value()


def finished_before(cfg: DictConfig) -> float | None:
    """In a grid study that resumes, a setting that FINISHED in an earlier invocation is
    not trained again: its recorded objective is returned to the sweeper instead."""

    study = job_study(cfg)
    if study is None or uses_optuna(HydraConfig.get()):
        return None
    try:
        key = runinfo.setting_key(runinfo.params(OmegaConf.to_container(cfg, resolve=True)))
    except Exception:  # refused later, with its reason, by run()
        return None
    store = tracking.Store(study.experiment, cfg.tracking.uri)
    previous = tracking.finished_setting(store, study.run_id, key)
    if previous is None:
        return None
    say(
        f"[admmlab] skipped {' '.join(job_overrides()) or 'the setting'}: it finished in "
        f"this study before (run {previous.info.run_id})"
    )
    metrics = previous.data.metrics
    count = len(cfg.objective) if OmegaConf.is_list(cfg.objective) else 1
    values = [metrics.get(name, math.nan) for name in tracking.objective_keys(count)]
    return values[0] if count == 1 else values


def _failed_job(cfg: DictConfig, message: str) -> float:

    print(f"[admmlab] setting failed: {message}", file=sys.stderr)
    study = job_study(cfg)
    if study is not None:
        store = tracking.Store(study.experiment, cfg.tracking.uri)
        enforce_failure_rate(store, study.run_id, cfg.max_failure_rate, study.since_ms)
    return float("nan")


def main() -> None:
    """Console script ``admmlab-train``.

    Unknown config-group options and keys are refused in one line before Hydra starts;
    SIGTERM ends a run KILLED, like Ctrl-C, with everything logged so far kept,
    and a sweep that stops early ends its study run KILLED or FAILED.
    """
    try:
        check_group_options(sys.argv[1:])
        check_override_keys(sys.argv[1:])
    except ConfigError as err:
        sys.exit(f"error: {err}")
    interrupts.install()
    try:
        hydra_entry()
        interrupts.check()  # one that arrived as the last job ended
    except KeyboardInterrupt:
        interrupts.clear()
        abort_open_study("KILLED", tracking.INTERRUPTED)
        sys.exit("error: interrupted; a run in progress was recorded as KILLED")
    except SystemExit as stop:  # Hydra reports a sweep's error by exiting
        if stop.code not in (None, 0):
            reason = str(stop.code) if isinstance(stop.code, str) else "stopped by an error"
            abort_open_study("FAILED", reason.removeprefix("error: "))
        raise
    except Exception as err:  # re-raised by Hydra with HYDRA_FULL_ERROR=1
        abort_open_study("FAILED", f"{type(err).__name__}: {err}")
        raise


if __name__ == "__main__":
    main()
