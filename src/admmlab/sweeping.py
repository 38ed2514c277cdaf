"""What every sweep shares, whatever the sweeper: one MLflow study run per sweep
(a continued Optuna study keeps its run), and the failure policy (a failed
setting is recorded and the sweep goes on, until more than ``max_failure_rate``
of the settings have failed).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from admmlab import interrupts, tracking

OPTUNA_TAGS = (tracking.OPTUNA_STUDY_TAG, tracking.OPTUNA_STORAGE_TAG)


def study_name(config: DictConfig) -> str:
    """The study run's name: with the Optuna sweeper, the Optuna study's (one name in
    both places); else ``study`` if set, the sweep's name, or a timestamp."""
    if uses_optuna(config):
        return optuna_study_name(
            OmegaConf.select(config, "hydra.sweeper.study_name", default=None),
            OmegaConf.select(config, "study", default=None),
        )
    for key in ("study", "hydra.runtime.choices.sweep"):
        value = OmegaConf.select(config, key, default=None)
        if value:
            return str(value)
    return time.strftime("multirun-%Y%m%d-%H%M%S")


def optuna_study_name(sweeper_study_name: str | None, study: str | None) -> str:
    """The Optuna study of a multirun: ``hydra.sweeper.study_name``, else ``study``,
    else ``admmlab``."""
    return str(sweeper_study_name or study or "admmlab")


def uses_optuna(config: DictConfig) -> bool:
    """Whether the sweeper is ours on Optuna; ``config`` is the whole config or, as a
    job sees it through ``HydraConfig.get()``, its ``hydra`` node alone."""
    node = OmegaConf.select(config, "hydra", default=None) or config
    target = OmegaConf.select(node, "sweeper._target_", default=None) or ""
    return target.startswith("hydra_plugins.admmlab_optuna_sweeper.")


def continues_optuna_study(config: DictConfig) -> bool:
    """Whether this multirun goes on with an Optuna study that already has trials:
    its settings then join that study's run rather than open another."""
    if not uses_optuna(config):
        return False
    from admmlab import optuna_space  # optuna loads only for its sweeps

    return optuna_space.continues_a_study(config)


def optuna_trials_in_flight(config: DictConfig) -> int:
    """Trials of the multirun's Optuna study that other workers are still running."""
    if not uses_optuna(config):
        return 0
    from admmlab import optuna_space

    return optuna_space.trials_in_flight(config)


def optuna_tags(config: DictConfig) -> dict[str, str]:
    """Which Optuna study (name and storage) a study run records, if any."""
    if not uses_optuna(config):
        return {}
    spec = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
    values = (study_name(config), spec or "default journal")
    return dict(zip(OPTUNA_TAGS, values, strict=True))


def experiment_name(config: DictConfig, name: str | None = None) -> str:
    """A study run's experiment: ``tracking.experiment``, else its task's name. A named
    study over several tasks (``study=…`` or a sweep file) is recorded in an experiment
    named after it; an unnamed one, in the default task's, so that running the same
    command again finds it to resume."""
    configured = OmegaConf.select(config, "tracking.experiment")
    if configured:
        return str(configured)
    named = OmegaConf.select(config, "study", default=None) or OmegaConf.select(
        config, "hydra.runtime.choices.sweep", default=None
    )
    if named and sweeps_over(config, "dataset"):
        return name or study_name(config)
    return str(config.dataset.name)


def _sweep_overrides(config: DictConfig) -> list[Override]:
    """The sweep's overrides, parsed: the sweep file's ``params``, then the command line."""
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    lines = [f"{k}={v}" for k, v in params.items()]
    return OverridesParser.create().parse_overrides([*lines, *config.hydra.overrides.task])


def sweeps_over(config: DictConfig, key: str) -> bool:
    """Whether the sweep gives ``key`` (a value or a config group) more than one value
    (the command line has the last word over the sweep file, as in Hydra's sweeper)."""
    last = {o.key_or_group: o for o in _sweep_overrides(config)}
    return key in last and last[key].is_sweep_override()


def sweep_size(config: DictConfig) -> int | None:
    """How many settings this invocation launches: a grid's size, an Optuna sweep's
    ``n_trials``; None where it cannot be told (e.g. a glob over a config group)."""
    if uses_optuna(config):
        return int(config.hydra.sweeper.n_trials)
    try:
        batches = BasicSweeper.split_arguments(_sweep_overrides(config), None)
    except Exception:
        return None
    return sum(len(batch) for batch in batches)


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
    """The finished setting with the best ``objective`` (direction by its name), among
    those with no diverged trial: a partly diverged setting, whose means are over its
    finished trials only, is one Optuna counts failed."""
    scored = [
        r
        for r in runs
        if r.info.status == "FINISHED"
        and not r.data.metrics.get("n_diverged", 0)
        and math.isfinite(r.data.metrics.get("objective", math.nan))
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


def enforce_failure_rate(
    store: tracking.Store, study_id: str, max_rate: float, since_ms: int = 0
) -> None:
    """End the study FAILED and exit once failed settings exceed ``max_rate`` of the done ones
    (those started from ``since_ms`` on: a continued study counts this invocation's).

    ``SystemExit`` passes through Hydra's launchers (which record an ordinary
    exception and go on), so the sweep really stops.
    """
    runs = [r for r in tracking.study_settings(store, study_id) if r.info.start_time >= since_ms]
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


def sweep_key(config: DictConfig) -> str | None:
    """A grid sweep's identity: its overrides, less where and how it runs (launcher,
    ``restart``), so the same command on another launcher continues the same study.
    None for an Optuna sweep (its study continues by name) or with ``restart=true``."""
    if uses_optuna(config) or OmegaConf.select(config, "restart", default=False):
        return None
    kept = sorted(
        o
        for o in config.hydra.overrides.task
        if not o.lstrip("+~").startswith(("hydra.", "hydra/", "restart="))
    )
    return tracking.digest("\n".join(kept))


def resumed_line(store: tracking.Store, study_id: str, name: str) -> str:
    """What a resumed grid study says before its first job: which settings it skips."""
    settings = tracking.study_settings(store, study_id)
    done = [r.data.tags.get("overrides", r.info.run_name) for r in settings
            if r.info.status == "FINISHED"]  # fmt: skip
    killed = [r for r in settings if r.data.tags.get("failure_reason") == tracking.STALE_REASON]
    line = (
        f"[admmlab] study {name!r} resumes MLflow run {study_id}: "
        f"{len(done)} setting(s) finished there before and are skipped"
    )
    if done:
        line += " (" + "; ".join(o or "no overrides" for o in reversed(done)) + ")"
    if killed:
        line += f"; {len(killed)} left RUNNING by a killed process were marked KILLED"
    return line + "; failed and killed settings run again"


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


# The study run this process opened, until its sweep ends (Hydra calls no callback
# when a sweep stops early: :func:`abort_open_study` closes it then).
_open_study: tuple[tracking.Store, str] | None = None


def abort_open_study(status: str, reason: str) -> None:
    """End this process's study run with ``status`` if its sweep stopped early.

    Says so in one line if the store cannot be written, rather than hide the reason
    the sweep stopped.
    """
    global _open_study
    if _open_study is None:
        return
    try:
        tracking.abort_study(*_open_study, status, reason)
    except Exception as err:
        print(f"[admmlab] the study run could not be closed: {err}", file=sys.stderr)
    _open_study = None


class StudyCallback(Callback):
    """Opens the study run before a multirun's first job and closes it after the last,
    unless other workers of its Optuna study are still running trials.

    Its jobs find it through a tag naming the sweep's folder (:func:`job_study`), so
    the hierarchy holds in any process a launcher starts. With
    ``tracking.enabled=false`` it opens nothing.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.store: tracking.Store | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _open_study
        if not OmegaConf.select(config, "tracking.enabled", default=True):
            return
        name = study_name(config)
        uri = OmegaConf.select(config, "tracking.uri")
        experiment = experiment_name(config, name)
        self.store = tracking.Store(experiment, uri)
        tags = optuna_tags(config)
        record = OmegaConf.to_yaml(sweep_record(config))
        since = int(time.time() * 1000)
        continues = continues_optuna_study(config)
        size = sweep_size(config)
        with interrupts.shielded():  # an interrupt waits until the run is known to abort_open_study
            self.run_id, joined = tracking.open_study(
                self.store,
                name,
                sweep_definition(config),
                tags,
                continues=continues,
                sweep_key=sweep_key(config),
            )
            _open_study = (self.store, self.run_id)
            kept_as = time.strftime("sweep-%Y%m%d-%H%M%S.yaml") if joined else "sweep.yaml"
            self.store.log_text(self.run_id, record, kept_as)
        verb = "continues in" if joined else "in"
        if joined and not tags:  # a resumed grid study keeps its name (maybe a timestamp)
            name = tracking.study_name_of(self.store, self.run_id)
        study = tracking.StudyContext(self.run_id, name, experiment, since, size)
        tracking.mark_invocation(self.store, study, str(config.hydra.sweep.dir), size)
        if joined and not tags:
            print(resumed_line(self.store, self.run_id, name))
        else:
            settings = f": {size} setting(s)" if size else ""
            print(f"[admmlab] study {name!r} {verb} MLflow run {self.run_id}{settings}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _open_study
        if self.store is None or self.run_id is None:
            return
        best = best_setting(tracking.study_settings(self.store, self.run_id))
        in_flight = optuna_trials_in_flight(config)
        if in_flight:  # workers sharing an Optuna study share its run: the last one closes it
            tracking.record_best(self.store, self.run_id, best)
            print(
                f"[admmlab] study run {self.run_id} stays RUNNING: {in_flight} trial(s) of "
                "its Optuna study are still running in another worker"
            )
        else:
            tracking.end_study(self.store, self.run_id, best=best)
        _open_study = None
        if best:
            print(
                f"[admmlab] best {best['objective_name']}={best['objective']:.4e} "
                f"({best['overrides']})"
            )


def job_study(cfg: DictConfig) -> tracking.StudyContext | None:
    """The study run of the sweep this job belongs to, found through the job's
    ``hydra.sweep.dir`` (so in any process a launcher starts); None for a single run."""
    if not is_multirun() or not OmegaConf.select(cfg, "tracking.enabled", default=True):
        return None
    uri = OmegaConf.select(cfg, "tracking.uri", default=None) or tracking.default_uri()
    sweep_dir = str(HydraConfig.get().sweep.dir)
    key = (uri, sweep_dir)
    if key not in _studies:  # once per process: a launcher's worker runs many jobs
        study = tracking.invocation_study(uri, sweep_dir)
        if study is None:
            print(
                f"warning: no study run in {uri} names the sweep folder {sweep_dir}; "
                "this setting is recorded on its own",
                file=sys.stderr,
            )
            return None
        _studies[key] = study
    return _studies[key]


# The study runs this process's jobs found, by (store, sweep folder)
_studies: dict[tuple[str, str], tracking.StudyContext] = {}
