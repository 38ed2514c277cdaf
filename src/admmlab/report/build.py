"""A study's report: read it from MLflow, aggregate, draw, write the index, log it back."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from admmlab.paths import project_root
from admmlab.report import figures, tables
from admmlab.report.aggregate import best_settings, error_label, setting_frame, trial_frame
from admmlab.tracking import default_uri
from admmlab.tracking.reader import Histories, StudyRecord, load_study, log_report

REPORT_DIR_ENV = "ADMMLAB_REPORT_DIR"
HOLD_NOTE = (
    "Along the axis a figure shows, every other swept value is held at its most "
    "common value in the study (ties: the best setting's)."
)


@dataclass(frozen=True)
class FigureSpec:
    stem: str
    title: str
    shows: str  # the one line the index prints under the title
    draw: figures.Draw


FIGURES = (
    FigureSpec(
        "error_vs_depth",
        "Error against depth (paper Figures 6, 8, 10, 13)",
        "Mean error over trials (line) and every trial (dots) against the number of "
        "hidden layers, one colour per competitor; x marks failed or diverged trials.",
        figures.error_vs_depth,
    ),
    FigureSpec(
        "lambda_beta_heatmap",
        "λ × β for ADMM (paper Figures 7a, 9a, 11a, 14a)",
        "log10 of ADMM's mean error over the grid of λ and β; grey cells were not run "
        "or every trial failed (x).",
        figures.lambda_beta_heatmap,
    ),
    FigureSpec(
        "init_boxplot",
        "Initialisation (paper Figures 7b, 9b, 11b, 14b)",
        "Distribution of the error over trials for each initialisation scheme and "
        "competitor (box: quartiles, dots: trials).",
        figures.init_boxplot,
    ),
    FigureSpec(
        "noise",
        "Noise (paper Figures 12, 15)",
        "Training error (noisy targets) and test error (clean targets) against the "
        "noise level of the training targets.",
        figures.noise,
    ),
    FigureSpec(
        "lr_vs_beta",
        "Learning rate against penalty (stability)",
        "SGD-type error against the learning rate beside ADMM's error against β: a flat "
        "curve is a hyperparameter that needs no tuning.",
        figures.lr_beta,
    ),
    FigureSpec(
        "saturation",
        "Gradient norms against ADMM residuals (paper Figure 4)",
        "Per-layer gradient norms of SGD (on its deepest sigmoid net when there is one) beside "
        "ADMM's per-layer constraint residuals over the epochs: gradients that shrink towards "
        "the input layers show saturation.",
        figures.saturation,
    ),
    FigureSpec(
        "admm_convergence",
        "ADMM convergence",
        "ADMM's augmented Lagrangian, per-layer residuals (best setting) and training "
        "error against the iteration, one curve per depth.",
        figures.admm_convergence,
    ),
)


@dataclass
class Entry:
    """One item of the index: a table or a figure, drawn or not."""

    title: str
    shows: str
    files: list[str] = field(default_factory=list)
    skipped: str | None = None
    inline: str | None = None  # a Markdown table shown in the index itself
    kind: str = "figure"


def default_out(study: str) -> Path:
    """``reports/<study>/`` under the project (``ADMMLAB_REPORT_DIR`` replaces ``reports``)."""
    root = os.environ.get(REPORT_DIR_ENV)
    return (Path(root) if root else project_root() / "reports") / study


def write_report(
    ref: str, *, uri: str | None = None, out: Path | None = None, log: bool = True
) -> Path:
    """Report the study ``ref`` (name or study run id) into ``out``; returns the folder.

    Raises :class:`admmlab.tracking.reader.StudyNotFound` for an unknown study.
    """
    uri = uri or default_uri()
    record = load_study(uri, ref)
    folder = out or default_out(record.name)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_previous(folder)
    trials = trial_frame(record)
    settings = setting_frame(trials)
    entries = _tables(trials, settings, folder)
    entries += _figures(record, trials, settings, folder)
    (folder / "index.md").write_text(_index(record, trials, settings, entries), encoding="utf-8")
    if log:
        log_report(record, folder)
    return folder


def _remove_previous(folder: Path) -> None:
    """Drop an earlier report's files, so a figure the study no longer supports goes too."""
    stems = [f.stem for f in FIGURES] + ["best_per_competitor", "settings", "failures", "index"]
    for path in folder.iterdir():
        if (
            path.is_file()
            and path.suffix in {".png", ".svg", ".csv", ".md"}
            and any(path.stem == s or path.stem.startswith(f"{s}_") for s in stems)
        ):
            path.unlink()


INLINE_ROWS = 60  # longer tables are linked from the index, not copied into it


def _table(
    title: str,
    shows: str,
    csv: pd.DataFrame,
    display: pd.DataFrame,
    folder: Path,
    stem: str,
    columns: list[str] | None = None,
) -> Entry:
    files = tables.write(csv, display, folder, stem, columns)
    if display.empty:
        return Entry(title, shows, files, skipped="the study has no setting runs", kind="table")
    inline = tables.markdown(display) if len(display) <= INLINE_ROWS else None
    return Entry(title, shows, files, inline=inline)


def _tables(trials: pd.DataFrame, settings: pd.DataFrame, folder: Path) -> list[Entry]:
    best = tables.best_table(best_settings(settings))
    entries = [
        _table(
            "Best setting per competitor (paper Tables 3–6)",
            "Each competitor's (depth, width) of least mean error, its mean (std) and median "
            "over trials, trial and failure counts, run time, and the paper's number.",
            best,
            tables.best_display(best),
            folder,
            "best_per_competitor",
        ),
        _table(
            "Every setting",
            "Mean (std), median and counts of the error for every setting of the study.",
            settings,
            tables.settings_display(settings),
            folder,
            "settings",
            tables.SETTING_COLUMNS,
        ),
    ]
    title, shows = "Failed and diverged trials", "Every trial that did not finish, and why."
    failures = trials[trials["outcome"] != "ok"].merge(
        settings[["dataset", "competitor", "setting_key", "label"]],
        on=["dataset", "competitor", "setting_key"],
    )
    if failures.empty:
        entries.append(Entry(title, shows, skipped="no trial failed or diverged", kind="table"))
    else:
        shown = tables.failures_display(failures)
        entries.append(_table(title, shows, shown, shown, folder, "failures"))
    return entries


def _figures(
    record: StudyRecord, trials: pd.DataFrame, settings: pd.DataFrame, folder: Path
) -> list[Entry]:
    histories = Histories(record.uri)
    datasets = sorted(settings["dataset"].unique())
    entries = []
    for spec in FIGURES:
        for dataset in datasets or [""]:
            title = spec.title if len(datasets) < 2 else f"{spec.title}: {dataset}"
            stem = spec.stem if len(datasets) < 2 else f"{spec.stem}_{dataset}"
            entries.append(_figure(spec, title, stem, dataset, trials, settings, histories, folder))
    return entries


def _figure(
    spec: FigureSpec,
    title: str,
    stem: str,
    dataset: str,
    trials: pd.DataFrame,
    settings: pd.DataFrame,
    histories: Histories,
    folder: Path,
) -> Entry:
    rows = settings[settings["dataset"] == dataset]
    if rows.empty:
        return Entry(title, spec.shows, skipped="the study has no setting runs")
    data = figures.TaskData(
        dataset=dataset,
        settings=rows,
        trials=trials[trials["dataset"] == dataset],
        histories=histories,
        error_label=error_label(rows["objective"].iloc[0]),
    )
    try:
        return Entry(title, spec.shows, spec.draw(data, folder, stem))
    except figures.NothingToDraw as why:
        return Entry(title, spec.shows, skipped=str(why))


def _index(
    record: StudyRecord, trials: pd.DataFrame, settings: pd.DataFrame, entries: list[Entry]
) -> str:
    lines = [
        f"# Study report: {record.name}",
        "",
        *_summary(record, trials, settings),
        "",
        HOLD_NOTE,
        "",
    ]
    for n, entry in enumerate(entries, start=1):
        lines += [f"## {n}. {entry.title}", "", entry.shows, ""]
        if entry.skipped:
            missing = "Not drawn" if entry.kind == "figure" else "Nothing to show"
            lines += [f"*{missing}: {entry.skipped}.*", ""]
            continue
        if entry.inline:
            lines += [entry.inline]
        for name in entry.files:
            if name.endswith(".png"):
                lines += [f"![{entry.title}]({name})", ""]
        lines += [" · ".join(f"[{name}]({name})" for name in entry.files), ""]
    return "\n".join(lines)


def _summary(record: StudyRecord, trials: pd.DataFrame, settings: pd.DataFrame) -> list[str]:
    counts = trials["outcome"].value_counts()
    objectives = ", ".join(
        f"{d}: {error_label(o)} (`{o}`)"
        for d, o in settings.groupby("dataset")["objective"].first().items()
    )
    return [
        f"Study run `{record.study.run_id}` in experiment `{record.experiment}` "
        f"(tracking URI `{record.uri}`), status {record.study.status}.",
        "",
        f"{len(settings)} settings, {len(trials)} trials: {counts.get('ok', 0)} finished, "
        f"{counts.get('diverged', 0)} diverged, {counts.get('failed', 0)} failed "
        f"(failed and diverged trials are counted in every table and marked x in figures).",
        "",
        f"Error (lower is better): {objectives or 'none recorded'}.",
    ]
