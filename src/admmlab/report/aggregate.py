"""From MLflow records to tables: one row per trial, then one row per setting.

A *trial* is a setting's trial run, or the setting run itself when it trained
one seed. Setting runs whose params differ only by seed (or trial count, or
bookkeeping) are one *setting*. Failed and diverged trials are kept as rows,
with no error, and counted in every aggregate.
"""

import json
import math
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

from admmlab.report.style import competitor_order
from admmlab.tracking.reader import RunRecord, StudyRecord

# The swept axes the figures know, by short name → the flattened config key.
AXES: dict[str, str] = {
    "depth": "model.depth",
    "width": "model.width",
    "init": "init.name",
    "init_scale": "init.scale",
    "lam": "solver.lam",
    "beta": "solver.beta",
    "lr": "solver.lr",
    "noise_std": "dataset.noise_std",
}
NUMERIC_AXES = ("depth", "width", "init_scale", "lam", "beta", "lr", "noise_std")
# Params that do not make two runs different settings.
IGNORED_PARAMS = frozenset({"seed", "trials"})
IGNORED_PREFIXES = ("tracking.", "hydra.", "sweep.")
SGD_TYPE = ("sgd", "sgdm", "adam")
# An error beyond this is a diverged run (tracking clamps ±inf to ±1.7e308), not a result.
DIVERGED_ABOVE = 1e100


def _number(text: str | None) -> float:
    """A param as a float; NaN when absent or not a single number (e.g. a β list)."""
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _canonical(text: str) -> str:
    """One spelling per number, so ``1``, ``1.0`` and ``1.0e0`` are the same setting."""
    try:
        return repr(float(text))
    except ValueError:
        return text


def setting_key(params: dict[str, str]) -> str:
    """The params that define a setting, as a stable string."""
    kept = {
        k: _canonical(v)
        for k, v in params.items()
        if k not in IGNORED_PARAMS and not k.startswith(IGNORED_PREFIXES)
    }
    return json.dumps(kept, sort_keys=True)


def competitor(setting: RunRecord) -> str:
    """The run's ``competitor`` tag, else one built the same way from solver and activation."""
    if name := setting.tags.get("competitor"):
        return name
    solver = setting.tags.get("solver") or setting.params.get("solver.name", "?")
    act = setting.tags.get("activation") or setting.params.get("activation.name", "?")
    return f"{solver} ({act})"


def objective_names(settings: Iterable[RunRecord]) -> dict[str, str]:
    """Per dataset, the objective its finished runs report (their ``objective_name`` tag)."""
    seen: dict[str, Counter] = {}
    for s in settings:
        if name := s.tags.get("objective_name"):
            seen.setdefault(_dataset(s), Counter())[name] += 1
    return {d: c.most_common(1)[0][0] for d, c in seen.items()}


def _dataset(setting: RunRecord) -> str:
    return setting.tags.get("dataset") or setting.params.get("dataset.name", "?")


def default_objective(setting: RunRecord) -> str:
    """The task's natural objective, as ``setting.objective_names`` picks it for ``auto``."""
    noisy = _number(setting.params.get("dataset.noise_std")) > 0
    return "test_mse" if noisy else "best_train_mse"


def error_of(metrics: dict[str, float], objective: str) -> float:
    """The trial's error: its objective (``final_<name>`` when that is how it was stored).

    Accuracies become error rates, so that lower is better everywhere.
    """
    value = metrics.get(objective, metrics.get(f"final_{objective}", math.nan))
    return 1.0 - value if objective.endswith("_acc") else value


def error_label(objective: str) -> str:
    """Axis and column wording for an objective."""
    split = {
        "train": "training",
        "best_train": "best training",
        "val": "validation",
        "test": "test",
    }
    stem, _, kind = objective.rpartition("_")
    where = split.get(stem.removeprefix("final_"), stem)
    return f"{where} error rate (1 − accuracy)" if kind == "acc" else f"{where} MSE"


def outcome(status: str, reason: str, error: float) -> str:
    """``ok``, ``diverged`` (non-finite or absurd error) or ``failed`` (raised, killed…)."""
    if status == "FINISHED":
        return "ok" if math.isfinite(error) and abs(error) < DIVERGED_ABOVE else "diverged"
    return "diverged" if reason.startswith("NonFiniteError") else "failed"


def _trial_row(setting: RunRecord, trial: RunRecord, objective: str) -> dict:
    error = error_of(trial.metrics, objective)
    # A trial that diverged while the others went on has its own reason.
    reason = trial.tags.get("failure_reason") or setting.tags.get("failure_reason", "")
    status = trial.status if trial.status != "FINISHED" else setting.status
    row = {
        "dataset": _dataset(setting),
        "competitor": competitor(setting),
        "solver": setting.tags.get("solver") or setting.params.get("solver.name", ""),
        "setting_key": setting_key(setting.params),
        "setting_run": setting.run_id,
        "run_id": trial.run_id,
        "seed": trial.tags.get("seed") or trial.params.get("seed", ""),
        "status": status,
        "failure_reason": reason,
        "objective": objective,
    }
    for short, key in AXES.items():
        text = setting.params.get(key)
        row[short] = _number(text) if short in NUMERIC_AXES else (text or "")
    row["outcome"] = outcome(status, reason, error)
    ok = row["outcome"] == "ok"
    row["error"] = error if ok else math.nan
    row["train_mse"] = trial.metrics.get("final_train_mse", math.nan) if ok else math.nan
    row["best_train_mse"] = trial.metrics.get("best_train_mse", math.nan) if ok else math.nan
    row["test_mse"] = trial.metrics.get("final_test_mse", math.nan) if ok else math.nan
    row["run_time_s"] = trial.metrics.get("run_time_s", math.nan)
    layers = [v for k, v in trial.metrics.items() if k.startswith("residual/layer_")]
    row["residual"] = math.sqrt(sum(v * v for v in layers)) if ok and layers else math.nan
    row["residual_max"] = max(layers) if ok and layers else math.nan
    return row


TRIAL_COLUMNS = [
    "dataset",
    "competitor",
    "solver",
    "setting_key",
    "setting_run",
    "run_id",
    "seed",
    "status",
    "failure_reason",
    "objective",
    *AXES,
    "outcome",
    "error",
    "train_mse",
    "best_train_mse",
    "test_mse",
    "run_time_s",
    "residual",  # ‖(r_1, …, r_{L+1})‖ at the end, for the methods that record r_i
    "residual_max",  # max_i ‖r_i‖ at the end
]


def trial_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per trial of every setting run of the study, failed ones included."""
    objectives = objective_names(record.settings)
    rows = []
    for s in record.settings:
        objective = (
            s.tags.get("objective_name") or objectives.get(_dataset(s)) or default_objective(s)
        )
        for trial in record.trials.get(s.run_id) or [s]:
            rows.append(_trial_row(s, trial, objective))
    frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    return frame.sort_values(
        ["dataset", "competitor", "setting_key", "seed", "run_id"], kind="stable", ignore_index=True
    )


def varying_axes(settings: pd.DataFrame) -> list[str]:
    """Axes with more than one value within some competitor (of some dataset)."""
    out = []
    for axis in AXES:
        counts = settings.groupby(["dataset", "competitor"])[axis].nunique(dropna=False)
        if (counts > 1).any():
            out.append(axis)
    return out


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _labels(settings: pd.DataFrame) -> pd.Series:
    """Short names like ``depth=2 init=xavier``: the axes its competitor varies."""
    labels = pd.Series("", index=settings.index, dtype=object)
    for _, rows in settings.groupby(["dataset", "competitor"], sort=False):
        axes = [a for a in AXES if rows[a].nunique(dropna=False) > 1]
        for i, row in rows.iterrows():
            named = " ".join(f"{a}={_format_value(row[a])}" for a in axes)
            labels[i] = named or row["competitor"]
    return labels


def _stats(group: pd.DataFrame) -> pd.Series:
    ok = group[group["outcome"] == "ok"]
    err = ok["error"]
    return pd.Series(
        {
            "error_mean": err.mean(),
            "error_std": err.std(ddof=1),  # sample std, as the setting runs' ``<metric>_std``
            "error_median": err.median(),
            "n": len(ok),
            "n_diverged": int((group["outcome"] == "diverged").sum()),
            "n_failed": int((group["outcome"] == "failed").sum()),
            "train_mse_mean": ok["train_mse"].mean(),
            "best_train_mse_mean": ok["best_train_mse"].mean(),
            "test_mse_mean": ok["test_mse"].mean(),
            "run_time_mean_s": ok["run_time_s"].mean(),
            "residual_mean": ok["residual"].mean(),
            "residual_std": ok["residual"].std(ddof=1),
            "residual_max_mean": ok["residual_max"].mean(),
            "setting_runs": " ".join(sorted(set(group["setting_run"]))),
        }
    )


def setting_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: mean, std, median and count of the error, failures counted."""
    keys = ["dataset", "competitor", "setting_key"]
    if trials.empty:
        return pd.DataFrame(columns=[*keys, "label", "solver", "objective", *AXES])
    first = trials.groupby(keys, sort=False)[["solver", "objective", *AXES]].first()
    stats = trials.groupby(keys, sort=False)[trials.columns.tolist()].apply(_stats)
    frame = first.join(stats).reset_index()
    frame["n_bad"] = frame["n_diverged"] + frame["n_failed"]
    frame = _ordered(frame)
    frame.insert(3, "label", _labels(frame))
    return frame


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by dataset, the paper's competitor order, depth, width, then the full key."""
    rank = {c: i for i, c in enumerate(competitor_order(frame["competitor"]))}
    frame = frame.assign(_rank=frame["competitor"].map(rank))
    frame = frame.sort_values(
        ["dataset", "_rank", "depth", "width", "setting_key"], kind="stable", ignore_index=True
    )
    return frame.drop(columns="_rank")


def best_settings(settings: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and competitor, the setting of least mean error among those with no
    diverged trial (none if there is no such setting): a partly diverged setting's mean
    is over its finished trials only, and a sweeper counts it failed."""
    rows = []
    for (dataset, comp), group in settings.groupby(["dataset", "competitor"], sort=False):
        ok = group[(group["n"] > 0) & (group["n_diverged"] == 0)]
        best = ok.loc[ok["error_mean"].idxmin()] if len(ok) else group.iloc[0]
        row = best.to_dict()
        if not len(ok):
            row.update(
                error_mean=math.nan,
                error_std=math.nan,
                error_median=math.nan,
                depth=math.nan,
                width=math.nan,
                run_time_mean_s=math.nan,
            )
        row.update(
            dataset=dataset,
            competitor=comp,
            settings=len(group),
            bad_trials_all=int(group["n_bad"].sum()),
        )
        rows.append(row)
    return _ordered(pd.DataFrame(rows)) if rows else settings.iloc[:0]


def slice_through(settings: pd.DataFrame, free: Iterable[str]) -> pd.DataFrame:
    """The settings of one competitor along the ``free`` axes, all others held fixed.

    Each other axis that varies is held at its most common value (a sweep's
    baseline), ties going to the value of the setting with the least error. An
    axis that moves with the free ones (a sweep setting ``lr`` and ``beta`` to
    one value) is left alone: holding it would hold the free axes too.
    """
    free = sorted(set(free))
    out = settings
    for axis in AXES:
        if axis in free or out[axis].nunique(dropna=False) < 2 or _follows(out, axis, free):
            continue
        out = out[_same(out[axis], _baseline(out, axis))]
    return out


def _follows(settings: pd.DataFrame, axis: str, free: list[str]) -> bool:
    """True when each combination of the ``free`` axes comes with a single ``axis`` value."""
    per_value = settings.groupby(free, dropna=False)[axis].nunique(dropna=False)
    return bool((per_value <= 1).all())


def _baseline(settings: pd.DataFrame, axis: str):
    counts = settings[axis].value_counts(dropna=False)
    tied = counts[counts == counts.max()].index
    candidates = settings[settings[axis].isin(tied)]
    ranked = candidates.sort_values(["error_mean", "setting_key"], na_position="last")
    return ranked[axis].iloc[0]


def _same(column: pd.Series, value) -> pd.Series:
    if isinstance(value, float) and math.isnan(value):
        return column.isna()
    return column == value


def log10_or_nan(values: pd.Series) -> pd.Series:
    positive = values.where(values > 0)
    return np.log10(positive)


def setting_params(settings: pd.DataFrame) -> pd.DataFrame:
    """The params that define each setting (its ``setting_key``), one column per key."""
    rows = [json.loads(key) for key in settings["setting_key"]]
    return pd.DataFrame(rows, index=settings.index).fillna("")


def _one_to_one(params: pd.DataFrame, a: str, b: str) -> bool:
    """True when ``a`` and ``b`` determine each other over every row of ``params``."""
    pairs = params[[a, b]].drop_duplicates()
    return bool(pairs[a].is_unique and pairs[b].is_unique)


def series(
    rows: pd.DataFrame, axis: str, context: pd.DataFrame | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """``rows`` (one competitor's settings along ``axis``) split into the series a line
    may join: settings that differ in no other param.

    A param one-to-one with ``axis`` over ``context`` (the competitor's settings) is
    the same sweep seen twice (``solver.step`` sets both ``lr`` and ``beta``), not
    another key. Each series is named by the params that set it apart ("" when one).
    """
    params = setting_params(rows)
    whole = setting_params(context if context is not None else rows).reindex(
        columns=params.columns, fill_value=""
    )
    own = AXES[axis]
    others = [
        key
        for key in params.columns
        if key != own
        and params[key].nunique() > 1
        and not (own in whole and _one_to_one(whole, own, key))
    ]
    if not others:
        return [("", rows)]
    names = {key: short for short, key in AXES.items()}
    out = []
    for values, part in rows.groupby([params[k] for k in others], sort=True):
        values = values if isinstance(values, tuple) else (values,)
        label = " ".join(
            f"{names.get(k, k)}={_format_value(_number_or_text(v))}"
            for k, v in zip(others, values, strict=True)
        )
        out.append((label, part))
    return out


def _number_or_text(text: str) -> float | str:
    number = _number(text)
    return text if math.isnan(number) else number
