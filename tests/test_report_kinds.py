"""Reports that fit the study: Optuna's own figures for an Optuna study, grid figures
whose lines join only settings that differ along the axis, the paper's values in the
figures, a browsable index.html, and a learning curve per seed."""

import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from admmlab import artifacts as curves
from admmlab import sweeping, tracking
from admmlab.paths import conf_dir
from admmlab.report import aggregate, figures, optuna_study
from admmlab.report.build import GRID_NOTE, write_report
from admmlab.setting import run
from admmlab.tracking.reader import load_study

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OPTUNA_PNGS = {f"{p.stem}.png" for p in optuna_study.PLOTS}
GRID_STEMS = ("error_vs_depth", "error_vs_width", "lambda_beta_heatmap", "init_boxplot")
TINY = [
    "dataset=square",
    "dataset.n_train=100",
    "dataset.n_test=100",
    "model.width=5",
    "trials=2",
    "tracking.log_weights=false",
    "tracking.experiment=kinds-test",
]
ADMM = ["solver=admm", "solver.epochs=4"]
SGD = ["solver=sgd", "solver.batch_size=20"]
# SGD over depth at two epoch counts: a line along depth must not join the two.
GRID_STUDY = [
    [*ADMM, "model.depth=1"],
    [*ADMM, "model.depth=2"],
    [*SGD, "solver.epochs=4", "model.depth=1"],
    [*SGD, "solver.epochs=4", "model.depth=2"],
    [*SGD, "solver.epochs=3", "model.depth=1"],
    [*SGD, "solver.epochs=3", "model.depth=2"],
]


def make_study(
    uri: str,
    name: str,
    settings: list[list[str]],
    mp: pytest.MonkeyPatch,
    tags: dict[str, str] | None = None,
) -> str:
    """Run ``settings`` in-process as one study on ``uri``; returns the study run id."""
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    store = tracking.Store("kinds-test", uri)
    study_id = tracking.start_study(store, name, {"purpose": "test"}, tags)
    study = tracking.StudyContext(study_id, name, "kinds-test")
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for overrides in settings:
            run(compose(config_name="config", overrides=TINY + overrides), study=study)
    tracking.end_study(store, study_id)
    return study_id


class Drawn:
    """The figures a report draws, kept open: ``figures.save`` is wrapped to record them."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def axes(self, stem: str) -> list:
        return self.figures[stem].axes


def keep_drawn(mp: pytest.MonkeyPatch) -> Drawn:
    """Keep every figure the report module saves, to look inside it afterwards."""
    record = Drawn()
    real = figures.save

    def keep(fig: Figure, folder: Path, stem: str, **kwargs) -> list[str]:
        record.figures[stem] = fig  # closed by the real save, but its artists stay
        return real(fig, folder, stem, **kwargs)

    mp.setattr(figures, "save", keep)
    return record


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Drawn:
    return keep_drawn(monkeypatch)


class Links(HTMLParser):
    """Every ``<img src>`` and ``<a href>`` of a page, and any ``<table>``."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        elif tag == "a":
            self.links.append(values["href"] or "")
        elif tag == "table":
            self.tables += 1


def parse_html(folder: Path) -> Links:
    page = Links()
    page.feed((folder / "index.html").read_text(encoding="utf-8"))
    return page


def assert_html_shows_every_figure(folder: Path) -> Links:
    page = parse_html(folder)
    pngs = sorted(p.name for p in folder.glob("*.png"))
    svgs = sorted(p.name for p in folder.glob("*.svg"))
    assert pngs and sorted(page.images) == pngs
    assert set(svgs) <= set(page.links)
    for ref in page.images + page.links:  # relative, and there beside it: no network
        assert not re.match(r"^[a-z]+:|^/", ref), ref
        assert (folder / ref).is_file(), ref
    return page


# ------------------------------------------------------------------ a grid study


@dataclass
class GridReport:
    uri: str
    folder: Path  # the written report
    drawn: Drawn


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, new_store) -> GridReport:
    """The grid study's report, written once: the tests below read it."""
    folder = tmp_path_factory.mktemp("grid")
    uri = new_store(folder)
    with pytest.MonkeyPatch.context() as mp:
        make_study(uri, "grid", GRID_STUDY, mp)
        drawn = keep_drawn(mp)
        report = write_report("grid", uri=uri, out=folder / "report", log=False)
    return GridReport(uri, report, drawn)


def test_a_grid_study_keeps_its_grid_figures_and_no_optuna_ones(grid):
    folder = grid.folder
    for name in ("error_vs_depth.png", "admm_convergence.png"):
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE
    assert not any((folder / name).exists() for name in OPTUNA_PNGS)
    assert not (folder / "optuna_best_trials.csv").exists()
    index = (folder / "index.md").read_text()
    assert "Optuna" not in index and GRID_NOTE not in index
    assert "*Not drawn: width does not vary within any competitor.*" in index


def test_a_line_along_depth_never_joins_settings_that_differ_in_another_key(grid):
    (ax,) = grid.drawn.axes("error_vs_depth")
    lines = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    sgd = sorted(label for label in lines if label.startswith("SGD (sigmoid)"))
    assert sgd == ["SGD (sigmoid), solver.epochs=3", "SGD (sigmoid), solver.epochs=4"]
    assert "ADMM (sigmoid)" in lines  # a competitor with one series keeps its plain name
    settings = aggregate.setting_frame(aggregate.trial_frame(load_study(grid.uri, "grid")))
    epochs = aggregate.setting_params(settings)["solver.epochs"]
    for label in sgd:
        mine = settings[(settings["solver"] == "sgd") & (epochs == label.rsplit("=", 1)[1] + ".0")]
        line = lines[label]
        assert list(line.get_xdata()) == [1.0, 2.0]
        expected = mine.sort_values("depth")["error_mean"].to_list()
        assert list(line.get_ydata()) == pytest.approx(expected, rel=1e-12)


def test_the_depth_figure_marks_the_papers_mean_at_its_best_structure(grid):
    (ax,) = grid.drawn.axes("error_vs_depth")
    marks = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    points = sorted(tuple(c.lines[0].get_xydata()[0]) for c in marks)
    # square: SGD (sigmoid) 2.46e-4 (1.69e-4) at (2, 60), ADMM 2.53e-9 (1.18e-9) at (2, 100)
    assert points == [(2.0, 2.53e-9), (2.0, 2.46e-4)]
    assert "paper: mean (+std)" in [t.get_text() for t in ax.get_legend().get_texts()]
    low, high = ax.get_ylim()
    assert low <= 2.53e-9 and high >= 2.46e-4 + 1.69e-4  # the marks are in view


def test_index_html_shows_every_figure_inline_and_the_tables_as_tables(grid):
    folder = grid.folder
    page = assert_html_shows_every_figure(folder)
    assert page.tables >= 2  # best per competitor, every setting
    text = (folder / "index.html").read_text()
    assert "<title>Study report: grid</title>" in text
    assert "http" not in text  # nothing fetched
    for table in ("best_per_competitor", "settings"):
        assert f'href="{table}.csv"' in text


# ------------------------------------------------------------------ Optuna studies


def journal_study(path: Path, name: str, n_trials: int) -> optuna.Study:
    """A small Optuna study over two of ADMM's keys, in a journal file."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0)
    )

    def objective(trial: optuna.Trial) -> float:
        lam = trial.suggest_float("solver.lam", 1e-8, 1e-2, log=True)
        depth = trial.suggest_int("model.depth", 1, 4)
        return math.log10(lam) ** 2 + depth

    study.optimize(objective, n_trials=n_trials)
    return study


def optuna_tags(name: str, storage: str) -> dict[str, str]:
    return dict(zip(sweeping.OPTUNA_TAGS, (name, storage), strict=True))


def test_the_report_reads_the_tags_the_sweep_writes():
    ref = optuna_study.optuna_ref(optuna_tags("s", "default journal"))
    assert ref == optuna_study.OptunaRef("s", None)
    assert optuna_study.optuna_ref({"admmlab.study": "depth"}) is None


def test_an_optuna_study_gets_optunas_figures_and_its_best_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store
):
    journal = tmp_path / "journal.log"
    study = journal_study(journal, "tuned", n_trials=12)
    before = journal.read_bytes()
    uri = new_store(tmp_path)
    make_study(uri, "tuned", [], monkeypatch, optuna_tags("tuned", str(journal)))
    folder = write_report("tuned", uri=uri, out=tmp_path / "report", log=False)
    for name in OPTUNA_PNGS:
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE, name
    best = pd.read_csv(folder / "optuna_best_trials.csv")
    values = sorted((t.value, t.number) for t in study.trials)[:10]
    assert list(best["trial"]) == [n for _, n in values]
    assert list(best["objective"]) == pytest.approx([v for v, _ in values], rel=1e-12)
    first = study.trials[int(best["trial"].iloc[0])]
    assert best["solver.lam"].iloc[0] == pytest.approx(first.params["solver.lam"], rel=1e-12)
    assert best["model.depth"].iloc[0] == first.params["model.depth"]
    assert journal.read_bytes() == before  # read, never written
    index = (folder / "index.md").read_text()
    assert "Optuna study `tuned`" in index and "12 trials (12 complete)" in index
    assert GRID_NOTE in index
    assert_html_shows_every_figure(folder)


def test_an_optuna_study_whose_storage_is_gone_says_so_and_draws_no_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store
):
    uri = new_store(tmp_path)
    gone = tmp_path / "moved.log"
    settings = [[*ADMM, "model.depth=1"], [*ADMM, "model.depth=2"]]
    make_study(uri, "lost", settings, monkeypatch, optuna_tags("lost", str(gone)))
    folder = write_report("lost", uri=uri, out=tmp_path / "report", log=False)
    index = (folder / "index.md").read_text()
    assert index.count(f"*Not drawn: no Optuna journal at {gone}.*") == 4
    assert index.count(f"*Nothing to show: no Optuna journal at {gone}.*") == 1
    assert not gone.exists()  # not created by reading
    assert not any((folder / f"{stem}.png").exists() for stem in GRID_STEMS)
    assert "## 4. Error against depth" not in index and "Error against depth (paper" not in index
    assert (folder / "admm_convergence.png").is_file()  # not a grid figure: still drawn


@pytest.mark.slow
def test_an_optuna_sweep_at_a_tiny_budget_reports_optunas_figures_and_no_heat_map(
    cli, store_uri, tmp_path
):
    journal = tmp_path / "journal.log"
    done = cli(
        "-m",
        "+sweep=optuna_admm",
        "hydra.sweeper.n_trials=3",
        "solver.epochs=3",
        "trials=1",
        "model.width=choice(4,8)",
        "model.depth=range(1,3)",
        "++dataset.n_train=300",
        f"hydra.sweeper.storage={journal}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # One study name in Optuna and MLflow: the report takes the Optuna study's.
    folder = write_report("optuna_admm_square", uri=store_uri, out=tmp_path / "report", log=False)
    assert {p.name for p in folder.glob("optuna_*.png")} == OPTUNA_PNGS
    assert not any((folder / f"{stem}.png").exists() for stem in GRID_STEMS)
    best = pd.read_csv(folder / "optuna_best_trials.csv")
    study = optuna_study.load(optuna_study.OptunaRef("optuna_admm_square", str(journal)))
    assert len(best) == len(optuna_study.completed(study)) == 3
    assert best["best_train_mse"].iloc[0] == pytest.approx(study.best_value, rel=1e-12)
    swept = {"solver.lam", "solver.beta", "model.depth", "model.width", "init", "init.scale"}
    assert swept <= set(best.columns)
    assert best["best_train_mse"].is_monotonic_increasing
    assert_html_shows_every_figure(folder)


# ------------------------------------------------------------------ figures from frames


class NoHistories:
    def get(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return []


def task(rows: list[dict], dataset: str = "square") -> figures.TaskData:
    """A task's settings and trials from ``(competitor, params, errors)`` rows."""
    numeric = {a: k for a, k in aggregate.AXES.items() if a in aggregate.NUMERIC_AXES}
    trials = []
    for i, row in enumerate(rows):
        params = {k: str(v) for k, v in row["params"].items()}
        for seed, error in enumerate(row["errors"]):
            trials.append(
                {
                    "dataset": dataset,
                    "competitor": row["competitor"],
                    "solver": row.get("solver", "sgd"),
                    "setting_key": aggregate.setting_key(params),
                    "setting_run": f"s{i}",
                    "run_id": f"s{i}t{seed}",
                    "seed": str(seed),
                    "status": "FINISHED",
                    "failure_reason": "",
                    "objective": "best_train_mse",
                    **{a: float(params.get(k, "nan")) for a, k in numeric.items()},
                    "init": params.get("init.name", ""),
                    "outcome": "ok",
                    "error": error,
                }
            )
    frame = pd.DataFrame(trials).reindex(columns=aggregate.TRIAL_COLUMNS)
    settings = aggregate.setting_frame(frame)
    return figures.TaskData(dataset, settings, frame, NoHistories(), "best training MSE")


def test_a_key_set_by_the_same_sweep_as_the_axis_is_not_another_series():
    # lr_beta: solver.step sets lr and beta together; along lr they are one sweep.
    steps = [0.01, 0.1, 1.0]
    rows = [
        {
            "competitor": "SGD (ReLU)",
            "params": {"solver.step": s, "solver.lr": s, "solver.beta": s},
            "errors": [s],
        }
        for s in steps
    ]
    data = task(rows)
    ((name, part),) = aggregate.series(data.settings, "lr", data.settings)
    assert name == "" and sorted(part["lr"]) == steps


def test_settings_along_width_that_differ_in_depth_are_separate_series():
    rows = [
        {
            "competitor": "ADMM (sigmoid)",
            "solver": "admm",
            "params": {"model.depth": d, "model.width": w},
            "errors": [1e-6 * d * w],
        }
        for d, w in [(1, 10), (1, 20), (2, 30), (2, 40)]  # no width at both depths
    ]
    data = task(rows)
    split = aggregate.series(data.settings, "width", data.settings)
    assert [(name, sorted(part["width"])) for name, part in split] == [
        ("depth=1", [10.0, 20.0]),
        ("depth=2", [30.0, 40.0]),
    ]


def test_the_width_figure_marks_the_papers_width(drawn, tmp_path):
    rows = [
        {
            "competitor": "ADMM (sigmoid)",
            "solver": "admm",
            "params": {"model.depth": 2, "model.width": w},
            "errors": [1e-9 * w, 2e-9 * w],
        }
        for w in (50, 100, 200)
    ]
    figures.error_vs_width(task(rows, dataset="product_gate"), tmp_path, "w")
    (ax,) = drawn.axes("w")
    (mark,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert tuple(mark.lines[0].get_xydata()[0]) == (300.0, 2.62e-9)  # product_gate: (2, 300)
    (line,) = [line for line in ax.lines if line.get_label() == "ADMM (sigmoid)"]
    assert list(line.get_xdata()) == [50.0, 100.0, 200.0]


def test_a_task_the_paper_did_not_report_has_no_paper_mark(drawn, tmp_path):
    rows = [
        {"competitor": "SGD (ReLU)", "params": {"model.depth": d}, "errors": [0.1 * d]}
        for d in (1, 2)
    ]
    figures.error_vs_depth(task(rows, dataset="digits"), tmp_path, "d")
    (ax,) = drawn.axes("d")
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


# ------------------------------------------------------------------ learning curve


def history(seeds: int, epochs: int = 5) -> pd.DataFrame:
    torch.manual_seed(0)
    values = {"train_mse": torch.rand(epochs, seeds) + 0.1, "test_mse": torch.rand(epochs, seeds)}
    return curves.history_frame(values, list(range(10, 10 + seeds)))


def line_colours(fig: Figure) -> list[tuple]:
    (ax,) = fig.axes
    return [tuple(np.round(line.get_color(), 6)) for line in ax.lines]


@pytest.mark.parametrize("seeds", [1, 3, 12])
def test_the_learning_curve_has_one_colour_per_seed(seeds):
    fig = curves.learning_curve_figure(history(seeds), "a setting")
    colours = line_colours(fig)
    assert len(colours) == 2 * seeds  # train and test per seed
    assert len(set(colours)) == seeds
    for k in range(seeds):  # seed by seed, train then test: a seed's two share its colour
        assert colours[2 * k] == colours[2 * k + 1]
    assert fig.axes[0].get_title() == "a setting"


def test_a_runs_learning_curve_names_its_setting_and_colours_its_seeds(
    store_uri, monkeypatch: pytest.MonkeyPatch
):
    seen: list[Figure] = []
    real = curves.learning_curve_figure

    def keep(frame: pd.DataFrame, title: str | None = None) -> Figure:
        seen.append(real(frame, title))
        return seen[-1]

    monkeypatch.setattr(curves, "learning_curve_figure", keep)
    tiny = [o for o in TINY if not o.startswith("trials=")]
    overrides = [*tiny, *ADMM, "model.depth=1", "trials=3", "seed=4"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        run(compose(config_name="config", overrides=overrides))
    (fig,) = seen
    assert len(set(line_colours(fig))) == 3
    title = fig.axes[0].get_title()
    assert title.startswith("square: admm (sigmoid), depth 1, width 5")
    assert "λ=1e-06 β=1.0" in title and "4 epochs" in title
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["seed 4", "seed 5", "seed 6", "train_mse", "test_mse"]


# ------------------------------------------------------------------ constraint residual


@pytest.mark.slow
def test_the_constraint_residual_study_reports_each_methods_residual_and_draws_it(
    cli, client, store_uri, tmp_path
):
    done = cli(
        "-m", "+sweep=constraint_residual", "trials=2", "solver.epochs=3",
        "model.depth=2", "model.width=8", "++dataset.n_train=200",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    folder = write_report("constraint_residual", uri=store_uri, out=tmp_path / "r", log=False)
    assert (folder / "residual_curves.png").read_bytes().startswith(PNG_SIGNATURE)
    table = pd.read_csv(folder / "constraint_residual.csv")
    methods = {"ADMM (sigmoid)", "BCD (sigmoid)", "BCD (ReLU)", "dlADMM (ReLU)"}
    assert set(table["competitor"]) == methods and (table["n"] == 2).all()
    # ‖r‖ of a trial is the root of its layers' squared residuals at the last epoch
    record = load_study(store_uri, "constraint_residual")
    (dl,) = [s for s in record.settings if s.tags.get("competitor") == "dlADMM (ReLU)"]
    norms = [
        math.sqrt(sum(t.metrics[f"residual/layer_{i}"] ** 2 for i in (1, 2, 3)))
        for t in record.trials[dl.run_id]
    ]
    row = table[table["competitor"] == "dlADMM (ReLU)"].iloc[0]
    assert row["residual_mean"] == pytest.approx(np.mean(norms), rel=1e-12)
    assert row["residual_std"] == pytest.approx(np.std(norms, ddof=1), rel=1e-12)
    assert "Constraint residual at the end" in (folder / "index.md").read_text()
    assert_html_shows_every_figure(folder)


def test_the_residual_figure_needs_two_gradient_free_methods(tmp_path):
    admm = {"competitor": "ADMM (sigmoid)", "solver": "admm", "params": {"model.depth": 2}}
    sgd = {"competitor": "SGD (ReLU)", "params": {"model.depth": 2}}
    rows = [{**admm, "errors": [1e-3, 2e-3]}, {**sgd, "errors": [1e-2]}]
    with pytest.raises(figures.NothingToDraw, match="two or more of ADMM, BCD and dlADMM"):
        figures.residual_curves(task(rows), tmp_path, "residual_curves")
