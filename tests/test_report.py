"""The study report, on a temporary MLflow store holding real tiny runs."""

import contextlib
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from admmlab import tracking
from admmlab.paths import conf_dir
from admmlab.report import aggregate, tables
from admmlab.report.build import FIGURES, write_report
from admmlab.report.cli import main as report_main
from admmlab.setting import run
from admmlab.tracking.reader import load_study

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = [
    "dataset=square",
    "dataset.n_train=100",
    "dataset.n_test=100",
    "model.width=5",
    "trials=2",
    "tracking.log_weights=false",
    "tracking.experiment=report-test",
]
ADMM = ["solver=admm", "solver.epochs=4"]
SGD = ["solver=sgd", "solver.epochs=4", "solver.batch_size=20"]
# lr = 1e8 sends these seeds' training error to inf within 4 epochs: recorded FAILED.
DIVERGING = [*SGD, "model.depth=1", "solver.lr=1e8"]
# Seed 1 of this setting diverges at epoch 3, seed 0 does not: only seed 1 stops.
PARTLY_DIVERGING = [
    *SGD, "activation=relu", "model.depth=3", "model.width=20", "dataset.n_train=200",
    "solver.batch_size=50", "solver.lr=0.2", "solver.epochs=6",
]  # fmt: skip
MAIN_STUDY = [
    [*ADMM, "model.depth=1"],
    [*ADMM, "model.depth=2"],
    [*SGD, "model.depth=1"],
    [*SGD, "model.depth=2"],
    DIVERGING,
]
FIGURES_OF_MAIN = {"error_vs_depth", "lr_vs_beta", "saturation", "admm_convergence"}
NOT_IN_MAIN = {"lambda_beta_heatmap", "init_boxplot", "noise"}


def make_study(uri: str, name: str, settings: list[list[str]], mp: pytest.MonkeyPatch) -> str:
    """Run ``settings`` as one study on the store at ``uri``; returns the study run id."""
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    store = tracking.Store("report-test", uri)
    study_id = tracking.start_study(store, name, {"purpose": "test"})
    study = tracking.StudyContext(study_id, name, "report-test")
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for overrides in settings:
            # The diverging setting raises; setting.run has recorded it FAILED by then.
            with contextlib.suppress(FloatingPointError):
                run(compose(config_name="config", overrides=TINY + overrides), study=study)
    tracking.end_study(store, study_id)
    return study_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, new_store):
    """A store with the main study (5 settings × 2 trials, one diverging), a one-setting
    study, one whose only setting has a diverging trial, and an empty one."""
    folder = tmp_path_factory.mktemp("store")
    uri = new_store(folder)
    with pytest.MonkeyPatch.context() as mp:
        ids = {
            "main": make_study(uri, "main", MAIN_STUDY, mp),
            "lonely": make_study(uri, "lonely", [[*ADMM, "model.depth=1"]], mp),
            "partly": make_study(uri, "partly", [PARTLY_DIVERGING], mp),
            "empty": make_study(uri, "empty", [], mp),
        }
        mp.setenv("ADMMLAB_REPORT_DIR", str(folder / "reports"))
        report = write_report("main", uri=uri)
        yield {"uri": uri, "ids": ids, "report": report, "folder": folder}


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def trial_errors(client: MlflowClient, setting_id: str) -> list[float]:
    """``best_train_mse`` of a setting's trial runs, read straight from MLflow."""
    runs = client.search_runs(
        [client.get_run(setting_id).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{setting_id}'",
    )
    return [r.data.metrics["best_train_mse"] for r in runs if r.info.status == "FINISHED"]


def test_every_supported_figure_is_a_sensible_png(store):
    report = store["report"]
    assert report == store["folder"] / "reports" / "main"
    for stem in FIGURES_OF_MAIN:
        width, height = png_size(report / f"{stem}.png")
        assert 300 <= width <= 4000 and 200 <= height <= 2000, (stem, width, height)
        assert (report / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    for stem in NOT_IN_MAIN:
        assert not (report / f"{stem}.png").exists()


def test_index_shows_everything_in_order_and_says_what_is_missing(store):
    index = (store["report"] / "index.md").read_text()
    positions = [
        index.index(f"({stem}.png)")
        for stem in ("error_vs_depth", "lr_vs_beta", "saturation", "admm_convergence")
    ]
    assert positions == sorted(positions)
    assert "*Not drawn: no ADMM competitor varies both λ and β.*" in index
    assert "*Not drawn: the initialisation scheme does not vary" in index
    assert "*Not drawn: the noise level does not vary" in index
    for table in ("best_per_competitor", "settings", "failures"):
        assert f"[{table}.csv]({table}.csv)" in index


def test_table_means_and_stds_match_the_runs(store):
    client = MlflowClient(store["uri"])
    settings = pd.read_csv(store["report"] / "settings.csv")
    finished = settings[settings["n"] > 0]
    assert len(finished) == 4
    for row in finished.itertuples():
        errors = trial_errors(client, row.setting_runs)
        assert row.n == len(errors) == 2
        assert row.error_mean == pytest.approx(statistics.mean(errors), rel=1e-12)
        assert row.error_std == pytest.approx(statistics.stdev(errors), rel=1e-12)
        assert row.error_median == pytest.approx(statistics.median(errors), rel=1e-12)
        # The setting run's own aggregate (logged by tracking) agrees as well.
        logged = client.get_run(row.setting_runs).data.metrics
        assert row.error_mean == pytest.approx(logged["best_train_mse"], rel=1e-12)
        assert row.error_std == pytest.approx(logged["best_train_mse_std"], rel=1e-9)


def test_best_table_picks_least_mean_error_beside_the_paper(store):
    best = pd.read_csv(store["report"] / "best_per_competitor.csv")
    settings = pd.read_csv(store["report"] / "settings.csv")
    assert list(best["competitor"]) == ["SGD (sigmoid)", "ADMM (sigmoid)"]
    for row in best.itertuples():
        mine = settings[(settings["competitor"] == row.competitor) & (settings["n"] > 0)]
        assert row.error_mean == mine["error_mean"].min()
    admm = best.set_index("competitor").loc["ADMM (sigmoid)"]
    assert (admm["paper_error_mean"], admm["paper_depth"], admm["paper_width"]) == (
        2.53e-9,
        2,
        100,
    )


def test_the_diverged_run_is_counted_not_dropped(store):
    report = store["report"]
    settings = pd.read_csv(report / "settings.csv")
    diverged = settings[settings["lr"] == 1e8].iloc[0]
    assert (diverged["n"], diverged["n_diverged"] + diverged["n_failed"]) == (0, 2)
    assert math.isnan(diverged["error_mean"])
    failures = pd.read_csv(report / "failures.csv")
    assert len(failures) == 2 and set(failures["status"]) == {"FAILED"}
    best = pd.read_csv(report / "best_per_competitor.csv").set_index("competitor")
    assert best.loc["SGD (sigmoid)", "bad_trials_all"] == 2
    index = (report / "index.md").read_text()
    assert "10 trials: 8 finished, 2 diverged, 0 failed" in index
    assert "NonFiniteError: train_mse became non-finite" in index  # the failures table


def test_a_trial_that_diverged_alone_is_counted_and_its_sibling_kept(store, tmp_path: Path):
    folder = write_report("partly", uri=store["uri"], out=tmp_path, log=False)
    (setting,) = pd.read_csv(folder / "settings.csv").itertuples()
    assert (setting.n, setting.n_diverged, setting.n_failed) == (1, 1, 0)
    assert math.isfinite(setting.error_mean)
    failures = pd.read_csv(folder / "failures.csv")
    assert list(failures["seed"]) == [1]
    index = (folder / "index.md").read_text()
    assert "2 trials: 1 finished, 1 diverged, 0 failed" in index
    assert "NonFiniteError: train_mse became non-finite at epoch 3" in index


def test_the_best_setting_is_chosen_among_settings_none_of_whose_trials_diverged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store
):
    clean = [o for o in PARTLY_DIVERGING if not o.startswith("solver.lr=")] + ["solver.lr=0.02"]
    uri = new_store(tmp_path)
    make_study(uri, "best", [PARTLY_DIVERGING, clean], monkeypatch)
    settings = aggregate.setting_frame(aggregate.trial_frame(load_study(uri, "best")))
    by_lr = settings.set_index("lr")
    # the partly diverged setting's mean, over its one finished trial, is the lower one
    assert by_lr.loc[0.2, "n_diverged"] == 1 and by_lr.loc[0.02, "n_diverged"] == 0
    assert by_lr.loc[0.2, "error_mean"] < by_lr.loc[0.02, "error_mean"]
    (best,) = aggregate.best_settings(settings).itertuples()
    assert (best.lr, best.n_diverged) == (0.02, 0)
    assert best.error_mean == by_lr.loc[0.02, "error_mean"]


def test_rerunning_gives_identical_tables(store, tmp_path: Path):
    again = write_report(store["ids"]["main"], uri=store["uri"], out=tmp_path, log=False)
    stems = ("best_per_competitor", "settings", "failures")
    for name in [f"{t}.{ext}" for t in stems for ext in ("csv", "md")] + ["index.md"]:
        assert (again / name).read_bytes() == (store["report"] / name).read_bytes(), name


def test_report_is_logged_on_the_study_run(store):
    client = MlflowClient(store["uri"])
    logged = {Path(a.path).name for a in client.list_artifacts(store["ids"]["main"], "report")}
    assert {"index.md", "settings.csv", "error_vs_depth.png", "error_vs_depth.svg"} <= logged


def test_a_study_with_nothing_to_compare_says_so(store, tmp_path: Path):
    folder = write_report("lonely", uri=store["uri"], out=tmp_path, log=False)
    index = (folder / "index.md").read_text()
    assert "*Not drawn: depth does not vary within any competitor.*" in index
    assert "*Not drawn: needs both SGD-type and ADMM runs that finished.*" in index
    assert "*Nothing to show: no trial failed or diverged.*" in index
    assert png_size(folder / "admm_convergence.png")[0] > 300
    assert not (folder / "error_vs_depth.png").exists()


def test_an_empty_study_reports_nothing_without_failing(store, tmp_path: Path):
    folder = write_report("empty", uri=store["uri"], out=tmp_path, log=False)
    index = (folder / "index.md").read_text()
    assert index.count("*Not drawn: the study has no setting runs.*") == len(FIGURES)
    assert "*Nothing to show: the study has no setting runs.*" in index
    assert not list(folder.glob("*.png"))


def test_cli_writes_the_report_and_rejects_unknown_studies(store, tmp_path, capsys):
    report_main(["lonely", "--tracking-uri", store["uri"], "--out", str(tmp_path / "r")])
    assert (tmp_path / "r" / "index.md").is_file()
    assert "index.md" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        report_main(["no-such-study", "--tracking-uri", store["uri"]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown study 'no-such-study'") and "\n" not in err


def test_missing_store_is_an_unknown_study(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report_main(["x", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "none.db").exists()


def test_numbers_spelled_differently_are_one_setting():
    a = aggregate.setting_key({"solver.beta": "1", "seed": "0", "tracking.uri": "a"})
    b = aggregate.setting_key({"solver.beta": "1.0", "seed": "5", "tracking.uri": "b"})
    assert a == b


@pytest.mark.parametrize(
    ("status", "reason", "error", "expected"),
    [
        ("FINISHED", "", 1e-3, "ok"),
        ("FINISHED", "", float("nan"), "diverged"),
        ("FINISHED", "", 1.7e308, "diverged"),
        ("FAILED", "NonFiniteError: train_mse became non-finite", float("nan"), "diverged"),
        ("FAILED", "RuntimeError: boom", float("nan"), "failed"),
        ("KILLED", "interrupted", float("nan"), "failed"),
    ],
)
def test_outcomes(status, reason, error, expected):
    assert aggregate.outcome(status, reason, error) == expected


def test_paper_results_ship_with_the_package():
    paper = tables.paper_results()
    assert len(paper) == 20
    assert set(paper["task"]) == {"square", "product_gate", "radial_piecewise", "radial_smooth"}
    row = paper[(paper["task"] == "radial_smooth") & (paper["competitor"] == "Adam (ReLU)")]
    assert row[["error_mean", "depth", "width"]].to_numpy().tolist() == [[1.02e-5, 11, 400]]
