"""Train one setting: validate → seed → data → init → solver → tracking.

:func:`run` takes a composed config and returns an :class:`Outcome` (the
objective(s), the per-trial summary, the trials that diverged); everything that
can refuse a setting is checked (:func:`prepare`) before an MLflow run is opened.
The command line around it, and what a sweep's job does with the outcome, is
:mod:`admmlab.train`.
"""

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from admmlab import interrupts, runinfo
from admmlab.config import ConfigError, RunConfig, validate
from admmlab.data import DataError, Dataset, load_dataset
from admmlab.data.base import stack_trials
from admmlab.nets import init_weights
from admmlab.progress import Progress
from admmlab.seeding import generator
from admmlab.solvers.base import FitResult, NonFiniteError
from admmlab.solving import run_solver
from admmlab.sweeping import (
    is_multirun,
    job_overrides,
    job_study,
    uses_optuna,
)
from admmlab.tracking import (
    SETTING_KEY_TAG,
    STUDY_TAG,
    SettingRun,
    Store,
    StudyContext,
    TrackingError,
    artifact_dir,
    check_store,
    default_uri,
    record_failed_setting,
    setting_run,
)

if TYPE_CHECKING:
    from admmlab.optuna_trial import TrialLink

USER_ERRORS = (ConfigError, DataError, TrackingError)


@dataclass
class Outcome:
    """What a finished run hands back: the objective(s), the per-trial summary and the
    trials that diverged (seed → what went non-finite when)."""

    objectives: dict[str, float]
    summary: dict[str, list[float]]
    run_id: str | None
    diverged: dict[int, str] = field(default_factory=dict)

    @property
    def objective(self) -> float:
        """The first (usually only) objective: what single-objective sweepers use."""
        return next(iter(self.objectives.values()))

    @property
    def objective_name(self) -> str:
        return next(iter(self.objectives))

    def finished_mean(self, name: str) -> float:
        """Mean of ``name`` over the trials that finished, as the setting run records it
        (NaN if none did); a diverged trial's values are NaN."""
        values = [v for v in self.summary[summary_key(name, self.summary)] if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    def sweeper_value(self) -> float | list[float]:
        """One float, or one per objective when ``objective`` is a list."""
        values = list(self.objectives.values())
        return values[0] if len(values) == 1 else values


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device must be cpu or auto on this machine (CUDA is not available), got 'cuda'"
        )
    if name == "auto":
        if not torch.cuda.is_available():
            print("warning: device=auto found no CUDA device, running on the CPU", file=sys.stderr)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def objective_names(cfg: RunConfig, data: Dataset) -> list[str]:
    """The configured objective(s); ``auto`` stands for the task's natural one."""
    names = cfg.objective if isinstance(cfg.objective, list) else [cfg.objective]
    return [auto_objective(cfg, data) if n == "auto" else str(n) for n in names]


def auto_objective(cfg: RunConfig, data: Dataset) -> str:
    """Approximation tasks: ``best_train_mse``; learning tasks: ``val_mse`` (or
    ``test_mse`` without a validation split); classification: ``val_acc``/``test_acc``.
    """
    held_out = "val" if data.x_val is not None else "test"
    if data.classification:
        return f"{held_out}_acc"
    if cfg.dataset.noise_std > 0 or data.x_val is not None:
        return f"{held_out}_mse"
    return "best_train_mse"


def load_trials(cfg: RunConfig, seeds: list[int], device: torch.device) -> Dataset:
    options = {k: v for k, v in vars(cfg.dataset).items() if k != "name"}
    draws = [load_dataset(cfg.dataset.name, seed=s, **options) for s in seeds]
    return stack_trials(draws).to(device, getattr(torch, cfg.dtype))


def initial_weights(cfg: RunConfig, data: Dataset, seeds: list[int]) -> list[torch.Tensor]:
    dims = [data.x_train.shape[-1], *[cfg.model.width] * cfg.model.depth, data.y_train.shape[-1]]
    per_trial = [
        init_weights(
            cfg.init.name,
            dims,
            scale=cfg.init.scale,
            generator=generator(s, "init"),
            dtype=getattr(torch, cfg.dtype),
        )
        for s in seeds
    ]
    return [torch.stack(layer).to(data.x_train.device) for layer in zip(*per_trial, strict=True)]


def summarise(result: FitResult) -> dict[str, list[float]]:
    """Per-trial final metrics: the solver's summary plus the last value of each metric.

    A trial that diverged has none: its values are NaN (its history says how far it
    got), so a mean over trials, the objective, is NaN too and a sweeper counts the
    setting failed. A history with no epoch yet gives an empty summary.
    """
    if not result.history:
        return {}
    out = {}
    for name, values in result.history.items():
        if not name.startswith(("residual/", "saturation/", "grad_norm/", "epoch_time")):
            out[f"final_{name}"] = values[-1]
    out.update(result.summary)
    if "train_acc" in result.history:
        for split in ("train", "val", "test"):
            if f"{split}_acc" in result.history:
                out[f"best_{split}_acc"] = result.history[f"{split}_acc"].amax(dim=0)
    out["run_time_s"] = result.history["epoch_time_s"].sum(dim=0)
    summary = {k: [float(x) for x in v.cpu().reshape(-1)] for k, v in out.items()}
    for values in summary.values():
        for k in result.diverged:
            values[k] = math.nan
    return summary


def summary_key(name: str, summary: dict[str, list[float]]) -> str:
    """The summary entry of objective ``name`` (finals are stored as ``final_<metric>``)."""
    return name if name in summary else f"final_{name}"


def objective_value(name: str, summary: dict[str, list[float]]) -> float:
    """Mean over trials of the objective."""
    values = summary[summary_key(name, summary)]
    return sum(values) / len(values)


def curve_stride(epochs: int, max_points: int) -> int:
    """Log every ``stride``-th epoch so a curve has at most ``max_points`` points."""
    return 1 if max_points <= 0 else max(1, math.ceil(epochs / max_points))


def check_objectives(names: list[str], data: Dataset) -> None:
    """Refuse, before training, an objective that the run will not record."""
    splits = ["train", "test"] + (["val"] if data.x_val is not None else [])
    kinds = ["mse", "acc"] if data.classification else ["mse"]
    known = {"best_train_mse", "run_time_s"}
    for split in splits:
        for kind in kinds:
            known |= {f"{split}_{kind}", f"final_{split}_{kind}"}
        if data.classification:
            known.add(f"best_{split}_acc")
    for name in names:
        if name not in known:
            raise ConfigError(f"objective must be one of {', '.join(sorted(known))}, got {name!r}")


@dataclass
class Prepared:
    """A setting that every check has passed: its values, seeds, data, weights, objectives."""

    typed: RunConfig
    seeds: list[int]
    data: Dataset
    weights: list[torch.Tensor]
    objectives: list[str]
    trial: "TrialLink | None" = None  # the Optuna trial this job runs, if any


def optuna_trial_of(typed: RunConfig, objectives: list[str]) -> "TrialLink | None":
    """The Optuna trial the sweeper launched this job for, else None."""
    if not is_multirun() or not uses_optuna(HydraConfig.get()):
        return None
    from admmlab.optuna_trial import trial_link  # optuna loads only for its sweeps

    return trial_link(HydraConfig.get(), typed.study, objectives, typed.solver.epochs)


def prepare(cfg: DictConfig) -> Prepared:
    """Everything that can refuse a setting (values, device, store, data files,
    objective), before anything is written to the store: a refused single run leaves
    no experiment behind."""
    typed = validate(cfg)
    device = resolve_device(typed.device)
    if typed.tracking.enabled:
        check_store(typed.tracking.uri or default_uri())  # fail fast, creating nothing
    seeds = [typed.seed + k for k in range(typed.trials)]
    data = load_trials(typed, seeds, device)
    n_train = data.x_train.shape[-2]
    try:
        typed.solver.check_data(n_train)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    weights = initial_weights(typed, data, seeds)
    objectives = objective_names(typed, data)
    check_objectives(objectives, data)
    return Prepared(typed, seeds, data, weights, objectives, optuna_trial_of(typed, objectives))


def run(cfg: DictConfig, *, study: StudyContext | None = None) -> Outcome:
    """Train one setting described by the composed ``cfg``; track it unless disabled.

    Everything that can be refused is checked (:func:`prepare`) before an MLflow run
    is opened or training starts. Under a study run (``study``, or in a sweep's job
    the sweep's), a refused setting is recorded as a FAILED setting run with its
    reason, then re-raised.
    """
    study = study or job_study(cfg)
    try:
        ready = prepare(cfg)
    except Exception as err:
        if study:
            record_refused(cfg, study, failure_message(err))
        raise
    typed, seeds, objectives, trial = ready.typed, ready.seeds, ready.objectives, ready.trial

    def train(callback=None) -> tuple[FitResult, dict[str, list[float]], dict[str, float]]:
        result = run_solver(
            typed.solver,
            ready.data,
            ready.weights,
            activation=typed.activation.name,
            seeds=seeds,
            callback=callback,
        )
        summary = summarise(result)
        return result, summary, {n: objective_value(n, summary) for n in objectives}

    name = runinfo.run_name(typed, job_overrides())
    shown = Progress(typed.solver.epochs, label(name, study), "train_mse", bar=_owns_terminal())
    if not typed.tracking.enabled:

        def check_epoch(epoch: int, metrics: dict[str, torch.Tensor]) -> None:
            interrupts.check()  # a signal whose exception a finaliser dropped
            values = _values(metrics)
            shown.update(epoch, values)
            if trial:
                trial.watch(epoch, values)

        try:
            result, summary, values = train(check_epoch)
        finally:
            shown.close()
        return Outcome(values, summary, None, _by_seed(result.diverged, seeds))
    store = Store(experiment(cfg, study), typed.tracking.uri)
    container = OmegaConf.to_container(cfg, resolve=True)
    container["solver"] = typed.solver.settings()  # only this solver's own, checked values
    tags = runinfo.tags(typed, study=study.name if study else None)
    tags["overrides"] = " ".join(job_overrides())
    params = runinfo.params(container)
    tags[SETTING_KEY_TAG] = runinfo.setting_key(params)
    tags.update(trial.tags() if trial else {})
    with setting_run(
        store,
        name,
        params=params,
        tags=tags,
        seeds=seeds,
        parent=study.run_id if study else None,
        flush_every=typed.tracking.flush_every,
        stride=curve_stride(typed.solver.epochs, typed.tracking.max_points),
    ) as tracked:

        def log_epoch(epoch: int, metrics: dict[str, torch.Tensor]) -> None:
            interrupts.check()  # a signal whose exception a finaliser dropped
            values = _values(metrics)
            tracked.log_epoch(epoch, values)
            shown.update(epoch, values)
            if trial:
                trial.watch(epoch, values)

        if trial:
            trial.attach(tracked.run_id, experiment(cfg, study))
        try:
            result, summary, values = train(log_epoch)
        except NonFiniteError as err:
            _record_divergence(store, tracked, container, err, seeds)
            raise
        finally:
            shown.close()
        outcome = Outcome(values, summary, tracked.run_id, _by_seed(result.diverged, seeds))
        tracked.finish(
            summary,
            values,
            stopped=_reasons(result.diverged),
            artifacts=lambda folder: write_artifacts(
                folder, container, result, seeds, typed.tracking.log_weights
            ),
        )
    return outcome


def _values(metrics: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """An epoch's metrics, one value per trial, off the device in one transfer."""
    values = torch.stack(list(metrics.values())).detach().cpu().tolist()
    return dict(zip(metrics, values, strict=True))


def _owns_terminal() -> bool:
    """A progress bar only on a terminal that no other job of a sweep writes to."""
    if not sys.stderr.isatty():
        return False
    try:
        launcher = HydraConfig.get().launcher.get("_target_", "")
    except ValueError:  # no Hydra context: called as a library
        return True
    return launcher.endswith("BasicLauncher")


def label(name: str, study: StudyContext | None = None) -> str:
    """The run's name, with its job number in a sweep (``#3 (4 of 12)``)."""
    if not is_multirun():
        return name
    num = HydraConfig.get().job.num
    of = f" ({num + 1} of {study.size})" if study and study.size else ""
    return f"#{num}{of} {name}"


def experiment(cfg: DictConfig, study: StudyContext | None = None) -> str:
    """The MLflow experiment of a setting: its study run's, else
    ``tracking.experiment``, else the dataset's name."""
    return (
        (study.experiment if study else None)
        or OmegaConf.select(cfg, "tracking.experiment", default=None)
        or str(OmegaConf.select(cfg, "dataset.name", default="unknown"))
    )


def failure_message(err: BaseException) -> str:
    """The one line that says why a setting failed: a user error's own message, else
    the exception's type and message."""
    if isinstance(err, NonFiniteError):
        return f"run diverged: {err}"
    return str(err) if isinstance(err, USER_ERRORS) else f"{type(err).__name__}: {err}"


def record_refused(cfg: DictConfig, study: StudyContext, reason: str) -> None:
    """Record a setting refused before training as a FAILED child of the ``study`` run,
    with its reason and overrides, so that the study counts it; says so in one line,
    rather than hide the refusal, when the store cannot take it."""
    if not OmegaConf.select(cfg, "tracking.enabled", default=True):
        return
    overrides = " ".join(job_overrides())
    tags = {**_raw_tags(cfg), **runinfo.provenance(), "overrides": overrides}
    tags[STUDY_TAG] = study.name
    try:
        uri = OmegaConf.select(cfg, "tracking.uri", default=None)
        store = Store(experiment(cfg, study), uri)
        name = f"refused: {overrides}" if overrides else "refused"
        record_failed_setting(
            store, name, params=_raw_params(cfg), tags=tags, parent=study.run_id, reason=reason
        )
    except Exception as err:
        print(f"warning: could not record the refused setting: {err}", file=sys.stderr)


def _raw_tags(cfg: DictConfig) -> dict[str, str]:
    """What a setting run is tagged with, read from a config that failed validation."""
    keys = {
        "solver": "solver.name",
        "activation": "activation.name",
        "init": "init.name",
        "dataset": "dataset.name",
    }
    found = {tag: OmegaConf.select(cfg, key, default=None) for tag, key in keys.items()}
    return {tag: str(value) for tag, value in found.items() if value is not None}


def _raw_params(cfg: DictConfig) -> dict[str, object]:
    """The flattened config as params, resolved where it can be (an interpolation may be
    what was refused)."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        container = OmegaConf.to_container(cfg, resolve=False)
    return runinfo.params(container)


def _record_divergence(
    store: Store, tracked: SettingRun, container, err: NonFiniteError, seeds: list[int]
) -> None:
    """Every trial has diverged: each trial run gets its own reason, the setting run
    ``n_diverged`` and the summary it has, and the history is kept as artifacts."""
    partial = err.partial
    stopped = {**(partial.diverged if partial else {}), **err.reasons}
    tracked.stop_trials(_reasons(stopped))
    if partial is None:
        return
    try:
        tracked.log_summary(summarise(dataclasses.replace(partial, diverged=stopped)))
    except Exception as failed:
        print(f"warning: could not log the diverged run's summary: {failed}", file=sys.stderr)
    _log_partial_artifacts(store, tracked.run_id, container, partial, seeds)


def _reasons(diverged: dict[int, str]) -> dict[int, str]:
    """Each stopped trial's ``failure_reason``, as a failed run's reads."""
    return {k: f"{NonFiniteError.__name__}: {why}" for k, why in diverged.items()}


def _by_seed(diverged: dict[int, str], seeds: list[int]) -> dict[int, str]:
    return {seeds[k]: why for k, why in diverged.items()}


def write_artifacts(folder: Path, container, result: FitResult, seeds, weights=True) -> None:
    """A run's files: its config, its history (every epoch), its learning curve and,
    with ``weights``, the trained weights."""
    from admmlab.artifacts import history_frame, learning_curve  # pandas, matplotlib

    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(container)))
    frame = history_frame(result.history, seeds)
    frame.to_csv(folder / "history.csv", index=False)
    learning_curve(frame, folder / "learning_curve.png")
    if weights:
        torch.save([w.cpu() for w in result.weights], folder / "weights.pt")


def _log_partial_artifacts(store, run_id, container, partial: FitResult, seeds) -> None:
    """Keep a diverged run's history as artifacts, never hiding why it diverged."""
    try:
        with artifact_dir() as folder:
            write_artifacts(folder, container, partial, seeds)
            store.log_artifacts(run_id, folder)
    except Exception as err:
        print(f"warning: could not write the diverged run's artifacts: {err}", file=sys.stderr)
