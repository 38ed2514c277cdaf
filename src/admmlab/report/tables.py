"""The report's tables, as CSV (full precision) and Markdown (readable)."""

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pandas as pd

PAPER_COLUMNS = {
    "error_mean": "paper_error_mean",
    "error_std": "paper_error_std",
    "depth": "paper_depth",
    "width": "paper_width",
}
BEST_COLUMNS = [
    "dataset",
    "competitor",
    "objective",
    "depth",
    "width",
    "label",
    "error_mean",
    "error_std",
    "error_median",
    "n",
    "n_diverged",
    "n_failed",
    "settings",
    "bad_trials_all",
    "run_time_mean_s",
    *PAPER_COLUMNS.values(),
]
SETTING_COLUMNS = [
    "dataset",
    "competitor",
    "label",
    "objective",
    "depth",
    "width",
    "init",
    "init_scale",
    "lam",
    "beta",
    "lr",
    "noise_std",
    "error_mean",
    "error_std",
    "error_median",
    "n",
    "n_diverged",
    "n_failed",
    "train_mse_mean",
    "test_mse_mean",
    "run_time_mean_s",
    "setting_runs",
]
# Counts and structure: written as integers (blank when missing), not as 2.0.
INTEGER_COLUMNS = (
    "depth",
    "width",
    "n",
    "n_diverged",
    "n_failed",
    "settings",
    "bad_trials_all",
    "paper_depth",
    "paper_width",
)
FAILURE_COLUMNS = [
    "dataset",
    "competitor",
    "label",
    "seed",
    "outcome",
    "status",
    "failure_reason",
    "run_id",
]


def paper_results() -> pd.DataFrame:
    """docs/studies.md's headline table: task, competitor, error mean and std, depth, width."""
    text = resources.files("admmlab.report").joinpath("paper_results.csv")
    with text.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def best_table(best: pd.DataFrame) -> pd.DataFrame:
    """Tables 3–6: each competitor's best setting beside the paper's number (if any)."""
    paper = paper_results().rename(columns={"task": "dataset", **PAPER_COLUMNS})
    merged = best.merge(paper, on=["dataset", "competitor"], how="left")
    return merged.reindex(columns=BEST_COLUMNS)


def sci(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2e}"


def mean_std(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return sci(mean) if not math.isfinite(std) else f"{sci(mean)} ({sci(std)})"


def structure(depth: float, width: float) -> str:
    if not (math.isfinite(depth) and math.isfinite(width)):
        return "–"
    return f"({int(depth)}, {int(width)})"


def _count(value: float) -> str:
    return str(int(value)) if math.isfinite(value) else "–"


def _error_cells(r) -> dict[str, str]:
    """The error columns both tables share: mean (std), median, trial count."""
    return {
        "error: mean (std)": mean_std(r.error_mean, r.error_std),
        "median": sci(r.error_median),
        "trials": _count(r.n),
    }


def _seconds(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "–"


def best_display(table: pd.DataFrame) -> pd.DataFrame:
    """The Markdown form of :func:`best_table`: paper-style "mean (std)" cells."""
    rows = []
    for r in table.itertuples(index=False):
        rows.append(
            {
                "task": r.dataset,
                "competitor": r.competitor,
                "(depth, width)": structure(r.depth, r.width),
                **_error_cells(r),
                "diverged / failed": f"{_count(r.n_diverged)} / {_count(r.n_failed)}",
                "failed trials, all settings": _count(r.bad_trials_all),
                "run time (s)": _seconds(r.run_time_mean_s),
                "paper: mean (std)": mean_std(r.paper_error_mean, r.paper_error_std),
                "paper (depth, width)": structure(r.paper_depth, r.paper_width),
            }
        )
    return pd.DataFrame(rows)


def settings_display(settings: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in settings.itertuples(index=False):
        rows.append(
            {
                "task": r.dataset,
                "competitor": r.competitor,
                "setting": r.label,
                **_error_cells(r),
                "diverged": _count(r.n_diverged),
                "failed": _count(r.n_failed),
                "run time (s)": _seconds(r.run_time_mean_s),
            }
        )
    return pd.DataFrame(rows)


GRADIENT_FREE = ("admm", "bcd", "dladmm")  # the solvers that record a constraint residual
RESIDUAL_COLUMNS = [
    "dataset",
    "competitor",
    "label",
    "depth",
    "width",
    "n",
    "residual_mean",
    "residual_std",
    "residual_max_mean",
    "train_mse_mean",
    "best_train_mse_mean",
    "test_mse_mean",
    "run_time_mean_s",
]


def residual_table(settings: pd.DataFrame) -> pd.DataFrame:
    """Every setting of a gradient-free solver: its constraint residual at the end beside
    its errors (the constraint-residual study)."""
    if "residual_mean" not in settings:  # an empty study, or one without such runs
        return pd.DataFrame(columns=RESIDUAL_COLUMNS)
    rows = settings[settings["solver"].isin(GRADIENT_FREE) & settings["residual_mean"].notna()]
    return rows.reindex(columns=RESIDUAL_COLUMNS).reset_index(drop=True)


def residual_display(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in table.itertuples(index=False):
        rows.append(
            {
                "task": r.dataset,
                "competitor": r.competitor,
                "(depth, width)": structure(r.depth, r.width),
                "trials": _count(r.n),
                "residual ‖r‖: mean (std)": mean_std(r.residual_mean, r.residual_std),
                "worst layer max ‖r_i‖": sci(r.residual_max_mean),
                "final train MSE": sci(r.train_mse_mean),
                "best train MSE": sci(r.best_train_mse_mean),
                "test MSE": sci(r.test_mse_mean),
                "run time (s)": _seconds(r.run_time_mean_s),
            }
        )
    return pd.DataFrame(rows)


def failures_display(failures: pd.DataFrame) -> pd.DataFrame:
    shown = failures.reindex(columns=FAILURE_COLUMNS).copy()
    shown["failure_reason"] = shown["failure_reason"].map(_short_reason)
    return shown.rename(columns={"dataset": "task", "label": "setting"})


def _short_reason(reason: str) -> str:
    line = (reason or "(no reason recorded)").splitlines()[0]
    return line if len(line) <= 120 else line[:117] + "..."


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body]) + "\n"


def write(
    csv: pd.DataFrame,
    display: pd.DataFrame,
    folder: Path,
    stem: str,
    columns: Sequence[str] | None = None,
) -> list[str]:
    """``stem.csv`` (every digit) and ``stem.md`` (the display form)."""
    data = csv.reindex(columns=list(columns)) if columns else csv
    data = data.astype({c: "Int64" for c in INTEGER_COLUMNS if c in data})
    data.to_csv(folder / f"{stem}.csv", index=False, lineterminator="\n")
    (folder / f"{stem}.md").write_text(markdown(display), encoding="utf-8")
    return [f"{stem}.csv", f"{stem}.md"]
