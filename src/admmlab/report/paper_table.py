"""The paper's headline table (Section 5) beside ours: ``admmlab-report paper_table``.

The reproduction study (``sweeps/paper_table.yaml``) may be run in chunks, a few
seeds at a time, so this report reads every study run of that name, keeps each
(task, competitor, seed) once (the newest chunk wins), keeps only the trials run
with the newest chunk's settings (a preset retuned since is a new row, not more
trials of the old one) and compares, per task and competitor, our mean (std) over
the trials with the paper's mean (std) over 20.
A row with fewer than 20 finished trials is marked reduced; a row whose mean is
more than ten times off the paper's, either way, is said so in words.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from admmlab.report import style, tables
from admmlab.report.aggregate import error_label, trial_frame
from admmlab.tracking.reader import StudyRecord, load_study_runs

__all__ = ["COLUMNS", "STUDY", "compare", "findings", "load_study_runs", "trial_rows", "write"]

STUDY = "paper_table"
PAPER_TRIALS = 20
UNFINISHED = ("KILLED", "RUNNING", "SCHEDULED")
FAR_OFF = 10.0  # ours/paper beyond this factor, either way, is called a disagreement
COLUMNS = [
    "task",
    "competitor",
    "depth",
    "width",
    "trials",
    "epochs",
    "ours_mean",
    "ours_std",
    "ours_median",
    "paper_mean",
    "paper_std",
    "ratio",
    "run_time_s",
    "n_diverged",
    "n_failed",
    "n_superseded",
    "reduced",
]
# Parameters that do not change a trial's numbers: where it ran, how it was logged,
# and the per-task tables the presets read their values from (the values themselves,
# solver.lr and the like, are compared).
NOT_RESULTS = ("seed", "trials", "study", "device", "max_failure_rate", "objective")
NOT_RESULT_PREFIXES = ("tracking.", "dataset.tuned.", "dataset.paper_best.", "solver.impl")


def trial_rows(records: list[StudyRecord]) -> pd.DataFrame:
    """Every trial of every chunk, each (task, competitor, seed) once: the newest chunk's."""
    frames = []
    for chunk, record in enumerate(records):
        frame = trial_frame(record)
        runs = {s.run_id: s for s in record.settings}
        frame["epochs"] = [_int(runs[r].params.get("solver.epochs")) for r in frame["setting_run"]]
        frame["setting_time_s"] = [
            runs[r].metrics.get("run_time_s", math.nan) for r in frame["setting_run"]
        ]
        frame["settings"] = [settings_of(runs[r].params) for r in frame["setting_run"]]
        frame["chunk"] = chunk
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    # A chunk stopped before it finished (KILLED, or left RUNNING by a killed process) is
    # not a result: its seeds count only once a chunk runs them to the end.
    rows = rows[~rows["status"].isin(UNFINISHED)]
    rows = rows.sort_values("chunk", kind="stable")
    rows = rows.drop_duplicates(["dataset", "competitor", "seed"], keep="last")
    newest = rows.groupby(["dataset", "competitor"])["settings"].transform("last")
    rows["superseded"] = [
        differ(mine, last) for mine, last in zip(rows["settings"], newest, strict=True)
    ]
    return rows


def settings_of(params: dict[str, str]) -> dict[str, str]:
    """The parameters that decide a trial's numbers."""
    return {
        k: v
        for k, v in params.items()
        if k not in NOT_RESULTS and not k.startswith(NOT_RESULT_PREFIXES)
    }


def differ(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether two runs' settings differ in a parameter both record (a key added to the
    config since the older run does not make it a different preset)."""
    return any(a[k] != b[k] for k in a.keys() & b.keys())


def compare(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per task and competitor of the paper's table, ours beside the paper's.

    Rows the study has not run yet are kept, with no trials and no value of ours.
    Trials run with settings older than the row's newest are counted, not used.
    """
    paper = tables.paper_results()
    rows = []
    for p in paper.itertuples(index=False):
        row = (
            trials[(trials["dataset"] == p.task) & (trials["competitor"] == p.competitor)]
            if not trials.empty
            else trials
        )
        mine = row[~row["superseded"]] if len(row) else row
        ok = mine[mine["outcome"] == "ok"] if len(mine) else mine
        errors = ok["error"] if len(ok) else pd.Series(dtype=float)
        mean = errors.mean() if len(errors) else math.nan
        rows.append(
            {
                "task": p.task,
                "competitor": p.competitor,
                "depth": _first(mine, "depth", p.depth),
                "width": _first(mine, "width", p.width),
                "trials": len(ok),
                "epochs": _epochs(mine),
                "ours_mean": mean,
                "ours_std": errors.std(ddof=1) if len(errors) > 1 else math.nan,
                "ours_median": errors.median() if len(errors) else math.nan,
                "paper_mean": p.error_mean,
                "paper_std": p.error_std,
                "ratio": mean / p.error_mean,
                "run_time_s": (
                    mine.drop_duplicates("setting_run")["setting_time_s"].sum()
                    if len(mine)
                    else math.nan
                ),
                "n_diverged": int((mine["outcome"] == "diverged").sum()) if len(mine) else 0,
                "n_failed": int((mine["outcome"] == "failed").sum()) if len(mine) else 0,
                "n_superseded": int(row["superseded"].sum()) if len(row) else 0,
                "reduced": 0 < len(ok) < PAPER_TRIALS,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def findings(table: pd.DataFrame) -> list[str]:
    """Sentences for the rows that disagree with the paper by more than ``FAR_OFF``×,
    or that diverged, or are not run yet."""
    paper = tables.paper_results().set_index(["task", "competitor"])
    lines = []
    for r in table.itertuples(index=False):
        where = f"{r.task}, {r.competitor}"
        if r.trials == 0:
            lines.append(f"{where}: not run yet (no finished trial).")
            continue
        if r.ratio > FAR_OFF:
            lines.append(
                f"{where}: ours is {r.ratio:.0f}× the paper's error "
                f"({tables.sci(r.ours_mean)} against {tables.sci(r.paper_mean)}): worse."
            )
        elif r.ratio < 1 / FAR_OFF:
            lines.append(
                f"{where}: ours is {1 / r.ratio:.0f}× below the paper's error "
                f"({tables.sci(r.ours_mean)} against {tables.sci(r.paper_mean)}): better."
            )
        depth, width = paper.loc[(r.task, r.competitor), ["depth", "width"]]
        if (r.depth, r.width) != (depth, width):
            lines.append(
                f"{where}: run at {tables.structure(r.depth, r.width)}, not the paper's "
                f"{tables.structure(depth, width)}."
            )
        if r.n_diverged or r.n_failed:
            lines.append(f"{where}: {r.n_diverged} trial(s) diverged, {r.n_failed} failed.")
        if r.n_superseded:
            lines.append(
                f"{where}: {r.n_superseded} trial(s) run with earlier settings of the preset "
                "are left out."
            )
    return lines


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The Markdown form: paper-style "mean (std)" cells, reduced rows marked."""
    rows = []
    for r in table.itertuples(index=False):
        trials = str(r.trials) + (" (reduced)" if r.reduced else "")
        rows.append(
            {
                "task": r.task,
                "competitor": r.competitor,
                "(depth, width)": tables.structure(r.depth, r.width),
                "ours: mean (std)": tables.mean_std(r.ours_mean, r.ours_std),
                "paper: mean (std)": tables.mean_std(r.paper_mean, r.paper_std),
                "ours / paper": f"{r.ratio:.2g}" if math.isfinite(r.ratio) else "–",
                "trials": trials,
                "epochs": r.epochs or "–",
                "run time (s)": _seconds(r.run_time_s),
            }
        )
    return pd.DataFrame(rows)


def draw(trials: pd.DataFrame, table: pd.DataFrame, task: str, folder: Path) -> list[str]:
    """Per task: each competitor's trials as dots over a box, the paper's mean (std) as a
    black diamond with a bar, on a log scale."""
    rows = table[table["task"] == task]
    names = style.competitor_order(rows["competitor"])
    colours = style.palette(names)
    with style.theme():
        fig, (ax,) = style.new_figure(width=7.2, height=4.6)
        for x, name in enumerate(names):
            mine = trials[(trials["dataset"] == task) & (trials["competitor"] == name)]
            errors = mine.loc[mine["outcome"] == "ok", "error"].to_numpy(dtype=float)
            if len(errors):
                ax.boxplot(errors, positions=[x], widths=0.5, showfliers=False,
                           medianprops={"color": colours[name]})  # fmt: skip
                jitter = np.linspace(-0.15, 0.15, len(errors)) if len(errors) > 1 else [0.0]
                ax.scatter(x + np.asarray(jitter), errors, s=14, color=colours[name], alpha=0.8,
                           zorder=3, label="ours (trials)" if x == 0 else None)  # fmt: skip
            paper = rows[rows["competitor"] == name].iloc[0]
            ax.errorbar([x + 0.3], [paper["paper_mean"]], yerr=[[0.0], [paper["paper_std"]]],
                        fmt="D", color="black", ms=6, capsize=3, zorder=4,
                        label="paper mean (+std)" if x == 0 else None)  # fmt: skip
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([f"{n}\n{_trial_note(rows, n)}" for n in names], fontsize=8)
        label = error_label(_objective(trials, task))
        ax.set_ylabel(label)
        ax.set_title(f"{task}: ours (dots, box) against the paper's mean (diamond)")
        ax.legend(loc="best", fontsize=8)
        return style.save(fig, folder, f"paper_{task}")


def write(uri: str, out: Path, name: str = STUDY) -> Path:
    """Write ``tables.csv``, ``tables.md`` and one figure per task into ``out``."""
    trials = trial_rows(load_study_runs(uri, name))
    table = compare(trials)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "tables.csv", index=False, float_format="%.6g")
    figures = []
    for task in table["task"].unique():
        if (table[table["task"] == task]["trials"] > 0).any():
            figures += [f for f in draw(trials, table, task, out) if f.endswith(".png")]
    lines = [
        "# The paper's headline table, reproduced",
        "",
        f"Every study run named `{name}` in `{uri}`, each (task, competitor, seed) once. "
        "The error is the best training MSE over the epochs on the approximation tasks and "
        "the test MSE on the learning tasks, as in the paper; its mean (std) over 20 trials "
        f"beside ours. Rows with fewer than {PAPER_TRIALS} trials are marked reduced.",
        "",
        tables.markdown(display(table)),
        "",
        "## Where ours and the paper disagree",
        "",
        *[f"- {line}" for line in findings(table) or ["Nowhere by more than 10×."]],
        "",
        *[f"![{f}]({f})\n" for f in figures],
    ]
    (out / "tables.md").write_text("\n".join(lines), encoding="utf-8")
    return out


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def _first(rows: pd.DataFrame, column: str, default: float) -> float:
    values = rows[column].dropna() if len(rows) else []
    return float(values.iloc[0]) if len(values) else float(default)


def _epochs(rows: pd.DataFrame) -> str:
    values = sorted({int(e) for e in rows["epochs"].dropna()}) if len(rows) else []
    return "/".join(str(e) for e in values)


def _trial_note(rows: pd.DataFrame, name: str) -> str:
    r = rows[rows["competitor"] == name].iloc[0]
    return f"{r['trials']} trials" + (" (reduced)" if r["reduced"] else "")


def _objective(trials: pd.DataFrame, task: str) -> str:
    mine = trials[trials["dataset"] == task]["objective"]
    return mine.iloc[0] if len(mine) else "best_train_mse"
