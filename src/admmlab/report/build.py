"""A study's report: read it from MLflow, aggregate, draw, write the index, log it back."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd

from admmlab.paths import project_root
from admmlab.report import figures, html, optuna_study, tables
from admmlab.report.aggregate import best_settings, error_label, setting_frame, trial_frame
from admmlab.tracking import default_uri
from admmlab.tracking.reader import Histories, StudyRecord, load_study, log_report

REPORT_DIR_ENV = "ADMMLAB_REPORT_DIR"
HOLD_NOTE = (
    "Along the axis a figure shows, every other swept value is held at its most "
    "common value in the study (ties: the best setting's)."
)
GRID_NOTE = (
    "An Optuna study samples its settings rather than laying them on a grid, so the "
    "figures along one axis (error against depth or width, λ × β, initialisation, "
    "noise, step size) are not drawn: Optuna's own figures stand in for them."
)
BEST_TITLE = "Optuna: best trials"
BEST_TRIALS = (
    "The Optuna study's best finished trials (the Pareto front with several objectives): "
    "objective value(s) and sampled parameters."
)


@dataclass(frozen=True)
class FigureSpec:
    stem: str
    title: str
    shows: str  # the one line the index prints under the title
    draw: figures.Draw
    grid: bool = True  # reads a grid along axes: not drawn for an Optuna study


FIGURES = (
    FigureSpec(
        "error_vs_depth",
        "Error against depth (paper Figures 6, 8, 10, 13)",
        "Mean error over trials (line) and every trial (dots) against the number of "
        "hidden layers, one colour per competitor; x marks failed or diverged trials.",
        figures.error_vs_depth,
    ),
    FigureSpec(
        "error_vs_width",
        "Error against width",
        "Mean error over trials (line) and every trial (dots) against the width of the "
        "hidden layers, one colour per competitor; x marks failed or diverged trials.",
        figures.error_vs_width,
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
        grid=False,
    ),
    FigureSpec(
        "residual_curves",
        "Constraint residual: ADMM, BCD and dlADMM (paper Section 4.2)",
        "Per gradient-free method on one net and one set of seeds: the residual ‖r‖ of "
        "the network's links and the training error against the epoch (mean over "
        "trials), and each layer's residual at the last epoch.",
        figures.residual_curves,
        grid=False,
    ),
    FigureSpec(
        "admm_convergence",
        "ADMM convergence",
        "ADMM's augmented Lagrangian, per-layer residuals (best setting) and training "
        "error against the iteration, one curve per depth.",
        figures.admm_convergence,
        grid=False,
    ),
)


@dataclass
class Entry:
    """One item of the index: a table or a figure, drawn or not."""

    title: str
    shows: str
    files: list[str] = field(default_factory=list)
    skipped: str | None = None
    table: pd.DataFrame | None = None  # a table shown in the index itself
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
    ref = optuna_study.optuna_ref(record.study.tags)
    intro = _summary(record, trials, settings)
    if ref is not None:
        optuna_entries, about = _optuna(ref, settings, folder)
        entries += optuna_entries
        intro += ["", about, "", GRID_NOTE]
    entries += _figures(record, trials, settings, folder, grid=ref is None)
    (folder / "index.md").write_text(_index(record.name, intro, entries), encoding="utf-8")
    (folder / "index.html").write_text(
        html.page(_title(record.name), [*intro, HOLD_NOTE], entries), encoding="utf-8"
    )
    if log:
        log_report(record, folder)
    return folder


def _remove_previous(folder: Path) -> None:
    """Drop an earlier report's files, so a figure the study no longer supports goes too."""
    stems = [f.stem for f in FIGURES] + [p.stem for p in optuna_study.PLOTS]
    stems += ["best_per_competitor", "settings", "failures", "optuna_best_trials", "index"]
    stems += ["constraint_residual"]
    for path in folder.iterdir():
        if (
            path.is_file()
            and path.suffix in {".png", ".svg", ".csv", ".md", ".html"}
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
    shown = display if len(display) <= INLINE_ROWS else None
    return Entry(title, shows, files, table=shown, kind="table")


def _tables(trials: pd.DataFrame, settings: pd.DataFrame, folder: Path) -> list[Entry]:
    best = tables.best_table(best_settings(settings))
    entries = [
        _table(
            "Best setting per competitor (paper Tables 3–6)",
            "Each competitor's (depth, width) of least mean error among the settings "
            "none of whose trials diverged, its mean (std) and median over trials, trial "
            "and failure counts, run time, and the paper's number.",
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
    residuals = tables.residual_table(settings)
    if residuals["competitor"].nunique() > 1:
        entries.append(
            _table(
                "Constraint residual at the end (gradient-free methods)",
                "Each gradient-free setting's residual of the network's links at its last "
                "epoch, ‖r‖ = (Σᵢ ‖σ(Wᵢ Ṽᵢ₋₁) − Vᵢ‖²)^½ (the output layer's without σ), "
                "mean (std) over trials, its worst layer's, and its errors.",
                residuals,
                tables.residual_display(residuals),
                folder,
                "constraint_residual",
            )
        )
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


def _optuna(
    ref: optuna_study.OptunaRef, settings: pd.DataFrame, folder: Path
) -> tuple[list[Entry], str]:
    """The best-trials table and Optuna's four figures, and a line on the study."""
    try:
        study = optuna_study.load(ref)
    except optuna_study.StudyUnavailable as why:
        missing = [Entry(BEST_TITLE, BEST_TRIALS, skipped=str(why), kind="table")]
        missing += [
            Entry(f"Optuna: {p.title}", p.shows, skipped=str(why)) for p in optuna_study.PLOTS
        ]
        return missing, f"Optuna study `{ref.name}`: could not be read ({why})."
    names = optuna_study.objective_names(study, list(settings["objective"].dropna().unique()))
    entries = [_optuna_best(study, names, folder)]
    entries += [_optuna_plot(plot, study, names, folder) for plot in optuna_study.PLOTS]
    where = ref.storage or str(optuna_study.default_journal())
    return entries, optuna_study.summary(study, where)


def _optuna_best(study: optuna.Study, names: list[str], folder: Path) -> Entry:
    best = optuna_study.best_trials(study, names)
    shown = optuna_study.best_display(best, names)
    files = tables.write(best, shown, folder, "optuna_best_trials")
    if best.empty:
        return Entry(BEST_TITLE, BEST_TRIALS, files, skipped="no trial finished", kind="table")
    return Entry(BEST_TITLE, BEST_TRIALS, files, table=shown, kind="table")


def _optuna_plot(
    plot: optuna_study.OptunaPlot, study: optuna.Study, names: list[str], folder: Path
) -> Entry:
    title = f"Optuna: {plot.title}"
    try:
        return Entry(title, plot.shows, optuna_study.draw(plot, study, names, folder))
    except (ValueError, RuntimeError) as why:  # Optuna's word on what it cannot draw
        return Entry(title, plot.shows, skipped=str(why).splitlines()[0])


def _figures(
    record: StudyRecord,
    trials: pd.DataFrame,
    settings: pd.DataFrame,
    folder: Path,
    grid: bool = True,
) -> list[Entry]:
    """Every figure the study supports; the grid figures only when ``grid``."""
    histories = Histories(record.uri)
    datasets = sorted(settings["dataset"].unique())
    entries = []
    for spec in (f for f in FIGURES if grid or not f.grid):
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


def _title(name: str) -> str:
    return f"Study report: {name}"


def _index(name: str, intro: list[str], entries: list[Entry]) -> str:
    lines = [f"# {_title(name)}", "", *intro, "", HOLD_NOTE, ""]
    for n, entry in enumerate(entries, start=1):
        lines += [f"## {n}. {entry.title}", "", entry.shows, ""]
        if entry.skipped:
            missing = "Not drawn" if entry.kind == "figure" else "Nothing to show"
            lines += [f"*{missing}: {entry.skipped}.*", ""]
            continue
        if entry.table is not None:
            lines += [tables.markdown(entry.table)]
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
