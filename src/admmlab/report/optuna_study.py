"""An Optuna study's own figures and its best trials, read from the study's storage.

The study run of an Optuna sweep names its Optuna study and storage in two tags
(written by :func:`admmlab.sweeping.optuna_tags`); the storage is opened read-only
and the figures are Optuna's (:mod:`optuna.visualization.matplotlib`).
"""

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import optuna.visualization.matplotlib as ovm
import pandas as pd
from matplotlib.axes import Axes
from optuna.trial import FrozenTrial, TrialState

from admmlab.optuna_storage import StorageUnavailable, open_readonly
from admmlab.paths import default_journal
from admmlab.report import tables
from admmlab.report.style import SVG_RC, save
from admmlab.tracking import OPTUNA_STORAGE_TAG, OPTUNA_STUDY_TAG

DEFAULT_STORAGE = "default journal"  # what the tag reads when no storage was given
BEST_ROWS = 10


class StudyUnavailable(StorageUnavailable):
    """The Optuna study cannot be read; the message says why, in one line."""


@dataclass(frozen=True)
class OptunaRef:
    """Which Optuna study a study run was: its name and storage (None: the default)."""

    name: str
    storage: str | None


def optuna_ref(tags: Mapping[str, str]) -> OptunaRef | None:
    """The Optuna study a study run's tags name, or None for any other sweep."""
    name = tags.get(OPTUNA_STUDY_TAG)
    if not name:
        return None
    spec = tags.get(OPTUNA_STORAGE_TAG) or DEFAULT_STORAGE
    return OptunaRef(name, None if spec == DEFAULT_STORAGE else spec)


def load(ref: OptunaRef) -> optuna.Study:
    """The Optuna study ``ref`` names; :class:`StudyUnavailable` when it cannot be read."""
    where = ref.storage or str(default_journal())
    try:
        return optuna.load_study(study_name=ref.name, storage=open_readonly(ref.storage))
    except StorageUnavailable as err:
        raise StudyUnavailable(str(err)) from None
    except Exception as err:  # a missing study, table or server: say which, in one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StudyUnavailable(f"Optuna study {ref.name!r} in {where}: {first}") from None


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


# ------------------------------------------------------------------ figures

Plot = Callable[..., Axes | np.ndarray]


@dataclass(frozen=True)
class OptunaPlot:
    stem: str
    title: str
    shows: str
    plot: Plot
    min_trials: int  # finished trials below which Optuna has nothing to show


PLOTS = (
    OptunaPlot(
        "optuna_history",
        "Optimisation history",
        "The objective of every finished trial in the order they ran, and the best so far.",
        ovm.plot_optimization_history,
        1,
    ),
    OptunaPlot(
        "optuna_importances",
        "Parameter importances",
        "How much of the objective's variation each sampled parameter explains (fANOVA).",
        ovm.plot_param_importances,
        2,
    ),
    OptunaPlot(
        "optuna_slice",
        "Slice plot",
        "The objective against each sampled parameter, one dot per finished trial "
        "(colour: trial number).",
        ovm.plot_slice,
        1,
    ),
    OptunaPlot(
        "optuna_parallel_coordinate",
        "Parallel coordinates",
        "Each finished trial as a line through its parameter values to its objective.",
        ovm.plot_parallel_coordinate,
        1,
    ),
)


def objective_names(study: optuna.Study, objectives: list[str]) -> list[str]:
    """A name per objective: the runs' ``objective_name`` tags, else Optuna's."""
    n = len(study.directions)
    if len(objectives) == n:
        return objectives
    return ["objective"] if n == 1 else [f"objective {i}" for i in range(n)]


def draw(spec: OptunaPlot, study: optuna.Study, names: list[str], folder: Path) -> list[str]:
    """Optuna's figure ``spec`` for ``study`` as ``<stem>.png`` and ``.svg``.

    With several objectives the history, slice and coordinates show the first
    (Optuna draws those for one target only); importances show each.
    """
    if len(completed(study)) < spec.min_trials:
        raise ValueError(f"needs at least {spec.min_trials} finished trial(s)")
    kwargs: dict = {"target_name": names[0]}
    if len(names) > 1:
        if spec.plot is ovm.plot_param_importances:
            kwargs = {}
        else:
            kwargs["target"] = lambda t: t.values[0]
    # Optuna's look and layout as they are (its style, titles and colour bars).
    with plt.rc_context(SVG_RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A parameter sampled at one value only: Optuna's axis limits meet, matplotlib widens them.
        warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
        axes = spec.plot(study, **kwargs)
        first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
        return save(first.figure, folder, spec.stem, tight=False)


# ------------------------------------------------------------------ best trials


def best_trials(study: optuna.Study, names: list[str], rows: int = BEST_ROWS) -> pd.DataFrame:
    """The best finished trials: the ``rows`` best (one objective) or the Pareto front,
    with their objective values and parameters."""
    done = completed(study)
    if len(study.directions) > 1:
        chosen = sorted(study.best_trials, key=lambda t: t.number)
    else:
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        chosen = sorted(done, key=lambda t: (sign * t.values[0], t.number))[:rows]
    params = sorted({k for t in done for k in t.params})
    return pd.DataFrame(
        [
            {
                "trial": t.number,
                **dict(zip(names, t.values, strict=True)),
                **{k: t.params.get(k) for k in params},
                "duration_s": t.duration.total_seconds() if t.duration else math.nan,
            }
            for t in chosen
        ],
        columns=["trial", *names, *params, "duration_s"],
    )


def best_display(best: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The Markdown form: objectives in the tables' scientific notation."""
    shown = best.copy()
    for name in names:
        shown[name] = shown[name].map(tables.sci)
    for column in shown.columns.difference(["trial", *names]):
        shown[column] = shown[column].map(_short)
    return shown


def _short(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def summary(study: optuna.Study, where: str) -> str:
    """One line: the study, where it is stored, and its trials by state."""
    states = pd.Series([t.state.name for t in study.get_trials(deepcopy=False)])
    counts = ", ".join(f"{n} {s.lower()}" for s, n in states.value_counts().items())
    directions = ", ".join(d.name.lower() for d in study.directions)
    return (
        f"Optuna study `{study.study_name}` in `{where}` ({directions}): "
        f"{len(states)} trials ({counts or 'none'})."
    )
