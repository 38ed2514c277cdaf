"""The paper's headline table (Section 5) beside ours: ``admmlab-report paper_table``.

The reproduction study (``sweeps/paper_table.yaml``) may be run in chunks, a few
seeds at a time, so this report reads every study run of that name, keeps each
(task, competitor, seed) once (the newest chunk wins), keeps only the trials run
with the newest chunk's settings (a preset retuned since is a new row, not more
trials of the old one) and compares, per task and competitor, our mean (std) over
the trials with the paper's mean (std) over 20.
A row with fewer than 20 finished trials is marked reduced; a row whose mean is
more than ten times off the paper's, either way, is said so in words.

A study this long outlives any one tracking store (a laptop's ``mlruns/``, a
cluster's server), so the report also writes every trial it used to
``trials.csv`` beside the table and reads that file back next time: the trials of
runs no longer in the store still count, and the newest run of each
(task, competitor, seed) wins, whichever side it comes from.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from admmlab.report import style, tables
from admmlab.report.aggregate import error_label, trial_frame
from admmlab.tracking.reader import StudyNotFound, StudyRecord, load_study_runs

__all__ = [
    "ARCHIVE",
    "COLUMNS",
    "STUDY",
    "compare",
    "findings",
    "load_study_runs",
    "read_archive",
    "trial_rows",
    "write",
]

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
ARCHIVE = "trials.csv"
# One row per trial: enough to rebuild the table, its figures and its provenance.
ARCHIVE_COLUMNS = [
    "dataset",
    "competitor",
    "seed",
    "depth",
    "width",
    "epochs",
    "objective",
    "outcome",
    "status",
    "error",
    "failure_reason",
    "run_id",
    "setting_run",
    "setting_time_s",
    "study_run",
    "started",
    "commit",
    "settings",
]


def trial_rows(records: list[StudyRecord], archived: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every trial of every chunk, each (task, competitor, seed) once: the newest chunk's.

    ``archived`` holds trials written by an earlier report (``read_archive``); a trial
    still in the store is taken from the store.
    """
    frames = [_chunk_rows(record).assign(archived=False) for record in records]
    if archived is not None and len(archived):
        in_store = set().union(*(set(f["run_id"]) for f in frames)) if frames else set()
        frames.insert(0, archived[~archived["run_id"].isin(in_store)].assign(archived=True))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    # A chunk stopped before it finished (KILLED, or left RUNNING by a killed process) is
    # not a result: its seeds count only once a chunk runs them to the end.
    rows = rows[~rows["status"].isin(UNFINISHED)]
    rows["dtype"] = [s.get("dtype", "float64") for s in rows["settings"]]
    rows = rows.sort_values("started", kind="stable")
    # One trial per seed and dtype: a competitor run in both is compared (dtype_rows).
    rows = rows.drop_duplicates(["dataset", "competitor", "seed", "dtype"], keep="last")
    newest = rows.groupby(["dataset", "competitor"])["settings"].transform("last")
    rows["superseded"] = [
        differ(mine, last) for mine, last in zip(rows["settings"], newest, strict=True)
    ]
    return rows.reset_index(drop=True)


def _chunk_rows(record: StudyRecord) -> pd.DataFrame:
    """The trials of one study run (a chunk), with what the table and archive need."""
    frame = trial_frame(record)
    runs = {s.run_id: s for s in record.settings}
    frame["epochs"] = [_int(runs[r].params.get("solver.epochs")) for r in frame["setting_run"]]
    frame["setting_time_s"] = [
        runs[r].metrics.get("run_time_s", math.nan) for r in frame["setting_run"]
    ]
    frame["settings"] = [settings_of(runs[r].params) for r in frame["setting_run"]]
    frame["study_run"] = record.study.run_id
    frame["started"] = [runs[r].start_time for r in frame["setting_run"]]
    frame["commit"] = record.study.tags.get("git_commit", "")
    return frame


def read_archive(path: Path) -> pd.DataFrame:
    """The trials an earlier report wrote to ``path`` (none if it does not exist)."""
    if not path.is_file():
        return pd.DataFrame(columns=ARCHIVE_COLUMNS)
    frame = pd.read_csv(path, dtype={"seed": str, "commit": str}, keep_default_na=False,
                        na_values={"error": [""], "setting_time_s": [""]})  # fmt: skip
    missing = [c for c in ARCHIVE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a paper-table trial archive (no column {missing[0]!r})")
    frame["settings"] = [json.loads(text) for text in frame["settings"]]
    frame["epochs"] = [_int(str(e)) if e != "" else None for e in frame["epochs"]]
    return frame


def write_archive(trials: pd.DataFrame, path: Path) -> None:
    """Every trial the table was built from, superseded ones included, one per row."""
    frame = trials.reindex(columns=ARCHIVE_COLUMNS).copy()
    frame["settings"] = [json.dumps(s, sort_keys=True) for s in frame["settings"]]
    frame = frame.sort_values(["dataset", "competitor", "started", "seed"], kind="stable")
    frame.to_csv(path, index=False, float_format="%.10g")


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
    """One row per task and competitor of the paper's table, ours beside the paper's,
    then one per extra competitor the study ran (e.g. BCD, dlADMM), with no paper value.

    Rows the study has not run yet are kept, with no trials and no value of ours.
    Trials run with settings older than the row's newest are counted, not used.
    """
    paper = tables.paper_results()
    rows = [
        _row(trials, p.task, p.competitor, p.error_mean, p.error_std, p.depth, p.width)
        for p in paper.itertuples(index=False)
    ]
    known = set(zip(paper["task"], paper["competitor"], strict=True))
    if not trials.empty:
        pairs = trials[["dataset", "competitor"]].drop_duplicates().itertuples(index=False)
        extra = sorted({(t, c) for t, c in pairs} - known)
        rows += [_row(trials, t, c, math.nan, math.nan, math.nan, math.nan) for t, c in extra]
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {t: i for i, t in enumerate(dict.fromkeys(paper["task"]))}
    rank = table["task"].map(order).fillna(len(order))
    ordered = table.assign(_rank=rank).sort_values("_rank", kind="stable")
    return ordered.drop(columns="_rank").reset_index(drop=True)


def _row(
    trials: pd.DataFrame,
    task: str,
    competitor: str,
    paper_mean: float,
    paper_std: float,
    depth: float,
    width: float,
) -> dict:
    """One task and competitor: ours over its newest settings' trials beside the paper's."""
    row = (
        trials[(trials["dataset"] == task) & (trials["competitor"] == competitor)]
        if not trials.empty
        else trials
    )
    mine = row[~row["superseded"]] if len(row) else row
    ok = mine[mine["outcome"] == "ok"] if len(mine) else mine
    errors = ok["error"] if len(ok) else pd.Series(dtype=float)
    mean = errors.mean() if len(errors) else math.nan
    return {
        "task": task,
        "competitor": competitor,
        "depth": _first(mine, "depth", depth),
        "width": _first(mine, "width", width),
        "trials": len(ok),
        "epochs": _epochs(mine),
        "ours_mean": mean,
        "ours_std": errors.std(ddof=1) if len(errors) > 1 else math.nan,
        "ours_median": errors.median() if len(errors) else math.nan,
        "paper_mean": paper_mean,
        "paper_std": paper_std,
        "ratio": mean / paper_mean,
        "run_time_s": (
            mine.drop_duplicates("setting_run")["setting_time_s"].sum() if len(mine) else math.nan
        ),
        "n_diverged": int((mine["outcome"] == "diverged").sum()) if len(mine) else 0,
        "n_failed": int((mine["outcome"] == "failed").sum()) if len(mine) else 0,
        "n_superseded": int(row["superseded"].sum()) if len(row) else 0,
        "reduced": 0 < len(ok) < PAPER_TRIALS,
    }


DTYPE_COLUMNS = [
    "task",
    "competitor",
    "seeds",
    "float64_mean",
    "float64_std",
    "float32_mean",
    "float32_std",
    "mean_ratio",
    "seed_ratio_median",
    "seed_ratio_min",
    "seed_ratio_max",
    "agree",
]


def dtype_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """float32 against float64 for every row run in both, on the seeds both finished:
    the means, and each seed's error in float32 over its error in float64. The two agree
    when the means differ by less than the larger of their trials' standard deviations."""
    rows = []
    if trials.empty:
        return pd.DataFrame(columns=DTYPE_COLUMNS)
    ok = trials[trials["outcome"] == "ok"]
    for (task, name), group in ok.groupby(["dataset", "competitor"], sort=False):
        by_dtype = {d: g.set_index("seed")["error"] for d, g in group.groupby("dtype")}
        if not {"float32", "float64"} <= by_dtype.keys():
            continue
        seeds = sorted(set(by_dtype["float32"].index) & set(by_dtype["float64"].index), key=int)
        if not seeds:
            continue
        e64, e32 = by_dtype["float64"][seeds], by_dtype["float32"][seeds]
        ratio = e32.to_numpy() / e64.to_numpy()
        spread = max(e64.std(ddof=1), e32.std(ddof=1)) if len(seeds) > 1 else math.nan
        rows.append(
            {
                "task": task,
                "competitor": name,
                "seeds": len(seeds),
                "float64_mean": e64.mean(),
                "float64_std": e64.std(ddof=1),
                "float32_mean": e32.mean(),
                "float32_std": e32.std(ddof=1),
                "mean_ratio": e32.mean() / e64.mean(),
                "seed_ratio_median": float(np.median(ratio)),
                "seed_ratio_min": float(ratio.min()),
                "seed_ratio_max": float(ratio.max()),
                "agree": bool(abs(e32.mean() - e64.mean()) <= spread),
            }
        )
    return pd.DataFrame(rows, columns=DTYPE_COLUMNS)


def dtype_display(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for r in rows.itertuples(index=False):
        out.append(
            {
                "task": r.task,
                "competitor": r.competitor,
                "seeds": r.seeds,
                "float64: mean (std)": tables.mean_std(r.float64_mean, r.float64_std),
                "float32: mean (std)": tables.mean_std(r.float32_mean, r.float32_std),
                "float32 / float64 (means)": f"{r.mean_ratio:.2g}",
                "per seed: median [min, max]": (
                    f"{r.seed_ratio_median:.2g} [{r.seed_ratio_min:.2g}, {r.seed_ratio_max:.2g}]"
                ),
                "within the spread": "yes" if r.agree else "no",
            }
        )
    return pd.DataFrame(out)


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
        if (r.task, r.competitor) not in paper.index:
            lines.append(f"{where}: not in the paper's table (an extra competitor).")
            continue
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
                f"{where}: {r.n_superseded} trial(s) run with other settings of the preset "
                "(an earlier value, or the other dtype) are left out."
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
    """Write ``tables.csv``, ``tables.md``, ``trials.csv`` and one figure per task into
    ``out``, from the study's runs in ``uri`` and the trials archived in ``out``."""
    archived = read_archive(out / ARCHIVE)
    try:
        records = load_study_runs(uri, name)
    except StudyNotFound:
        if not len(archived):
            raise
        records = []
    trials = trial_rows(records, archived)
    table = compare(trials)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "tables.csv", index=False, float_format="%.6g")
    write_archive(trials, out / ARCHIVE)
    from_archive = int(trials["archived"].sum()) if len(trials) else 0
    figures = []
    for task in table["task"].unique():
        if (table[table["task"] == task]["trials"] > 0).any():
            figures += [f for f in draw(trials, table, task, out) if f.endswith(".png")]
        else:  # a figure left by an earlier report would show trials no longer counted
            for stale in out.glob(f"paper_{task}.*"):
                stale.unlink()
    lines = [
        "# The paper's headline table, reproduced",
        "",
        f"Every study run named `{name}` in `{uri}`, and the {from_archive} trial(s) of "
        f"runs no longer there from `{ARCHIVE}`, each (task, competitor, seed) once. "
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
        *_dtype_section(trials, out),
        *[f"![{f}]({f})\n" for f in figures],
    ]
    (out / "tables.md").write_text("\n".join(lines), encoding="utf-8")
    return out


def _dtype_section(trials: pd.DataFrame, out: Path) -> list[str]:
    """The float32/float64 comparison, where some row ran in both (``dtypes.csv``)."""
    rows = dtype_rows(trials)
    if rows.empty:
        return []
    rows.to_csv(out / "dtypes.csv", index=False, float_format="%.6g")
    return [
        "## float32 against float64",
        "",
        "Rows run in both precisions, on the seeds both finished (the table above uses "
        "the newest). They agree when their means differ by less than the larger standard "
        "deviation of their trials.",
        "",
        tables.markdown(dtype_display(rows)),
        "",
    ]


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
