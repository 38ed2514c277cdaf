"""The paper's comparison: the tuning sweep, the reproduction sweep in chunks, its report,
and the tuned presets at the paper's structures."""

import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from admmlab.config import validate
from admmlab.report import paper_table
from admmlab.setting import initial_weights, load_trials
from admmlab.solving import run_solver
from conftest import journal_study, runs_of

TINY = ("solver.epochs=3", "model.depth=2", "model.width=6", "dataset.n_train=100")
TASKS = ("square", "product_gate", "radial_piecewise", "radial_smooth")
SGD_TYPE = ("sgd_sigmoid", "sgd_relu", "sgdm_relu", "adam_relu")


@pytest.mark.slow
def test_tuning_sweep_searches_rate_and_decay_on_seeds_apart_from_the_reported(
    cli, client, tmp_path
):
    journal = tmp_path / "tune.log"
    done = cli(
        "-m",
        "+sweep=tune_baselines",
        "experiment=sgd_relu",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={journal}",
        *TINY,
    )
    assert done.returncode == 0, done.stderr
    study = journal_study("tune_sgd_relu_square", journal)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        assert 1e-4 <= t.params["solver.lr"] <= 0.3
        assert 0.95 <= t.params["solver.lr_gamma"] <= 1.0
    settings = runs_of(client, "setting")
    assert {s.data.params["seed"] for s in settings} == {"1000"}
    assert {s.data.tags["solver"] for s in settings} == {"sgd"}


def _trial_errors(client, competitor: str) -> dict[str, float]:
    """seed → best_train_mse of every trial run of ``competitor``, newest run per seed."""
    runs = sorted(runs_of(client, "trial"), key=lambda r: r.info.start_time)
    errors = {}
    for r in runs:
        if r.data.tags.get("competitor") == competitor:
            errors[r.data.tags["seed"]] = r.data.metrics["best_train_mse"]
    return errors


@pytest.mark.slow
def test_paper_table_in_two_chunks_reports_each_seed_once_beside_the_paper(
    cli, client, store_uri, tmp_path
):
    first = cli("-m", "+sweep=paper_table", "trials=2", *TINY)
    assert first.returncode == 0, first.stderr
    # A second chunk for one competitor: seeds 1 and 2, so seed 1 is run twice.
    second = cli("-m", "+sweep=paper_table", "experiment=sgd_relu", "seed=1", "trials=2", *TINY)
    assert second.returncode == 0, second.stderr
    # A third, for another, with its rate changed: its earlier trials no longer count.
    third = cli(
        "-m", "+sweep=paper_table", "experiment=sgdm_relu", "seed=1", "trials=2",
        "solver.lr=0.001", *TINY,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert len(runs_of(client, "study")) == 3

    out = paper_table.write(store_uri, tmp_path / "report")
    chunks = paper_table.load_study_runs(store_uri, "paper_table")
    table = paper_table.compare(paper_table.trial_rows(chunks))
    written = (out / "tables.csv").read_text().splitlines()
    assert written[0].split(",")[:12] == paper_table.COLUMNS[:12]
    assert len(written) == 1 + 20
    assert len(table) == 20

    square = table[table["task"] == "square"].set_index("competitor")
    assert list(square.index) == [
        "SGD (ReLU)", "SGDM (ReLU)", "Adam (ReLU)", "SGD (sigmoid)", "ADMM (sigmoid)"
    ]  # fmt: skip
    sgd_relu = square.loc["SGD (ReLU)"]
    errors = _trial_errors(client, "SGD (ReLU)")
    assert sorted(errors) == ["0", "1", "2"]
    assert sgd_relu["trials"] == 3 and bool(sgd_relu["reduced"])
    assert sgd_relu["ours_mean"] == pytest.approx(sum(errors.values()) / 3, rel=1e-12)
    assert sgd_relu["ratio"] == pytest.approx(sgd_relu["ours_mean"] / 5.34e-8, rel=1e-12)
    assert sgd_relu["epochs"] == "3"
    assert (sgd_relu["depth"], sgd_relu["width"]) == (2, 6)
    assert square.loc["ADMM (sigmoid)", "trials"] == 2
    sgdm = square.loc["SGDM (ReLU)"]
    assert (sgdm["trials"], sgdm["n_superseded"]) == (2, 1)
    newest = _trial_errors(client, "SGDM (ReLU)")
    assert sgdm["ours_mean"] == pytest.approx((newest["1"] + newest["2"]) / 2, rel=1e-12)
    assert all(math.isfinite(v) for v in square["ours_mean"])
    radial = table[table["task"] == "radial_smooth"]
    assert (radial["trials"] == 0).all() and radial["ours_mean"].isna().all()

    text = (out / "tables.md").read_text()
    assert "| square | SGD (ReLU) | (2, 6) |" in text and "3 (reduced)" in text
    assert "square, ADMM (sigmoid): ours is" in text and "worse" in text
    assert "run at (2, 6), not the paper's (18, 100)" in text
    assert "radial_smooth, Adam (ReLU): not run yet" in text
    assert "square, SGDM (ReLU): 1 trial(s) run with other settings" in text
    assert (out / "paper_square.png").is_file() and (out / "paper_square.svg").is_file()
    assert not (out / "paper_radial_smooth.png").exists()
    assert "![paper_square.png](paper_square.png)" in text


@pytest.mark.slow
def test_extra_competitors_join_the_paper_table_as_rows_without_a_paper_value(
    cli, store_uri, tmp_path
):
    extra = "experiment=admm_sigmoid,bcd_relu,dladmm_relu"  # the paper's five stay the default
    done = cli("-m", "+sweep=paper_table", extra, "trials=2", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    out = paper_table.write(store_uri, tmp_path / "report")
    table = pd.read_csv(out / "tables.csv")
    assert len(table) == 20 + 2
    square = list(table.loc[table["task"] == "square", "competitor"])
    assert square[5:] == ["BCD (ReLU)", "dlADMM (ReLU)"]  # after the task's five
    for name in ("BCD (ReLU)", "dlADMM (ReLU)"):
        row = table[table["competitor"] == name].iloc[0]
        assert row["task"] == "square" and row["trials"] == 2 and row["ours_mean"] > 0
        assert math.isnan(row["paper_mean"]) and math.isnan(row["ratio"])
    text = (out / "tables.md").read_text()
    assert "square, dlADMM (ReLU): not in the paper's table (an extra competitor)." in text
    assert "| square | BCD (ReLU) | (2, 6) |" in text


@pytest.mark.slow
def test_paper_table_outlives_its_store_through_the_trial_archive(cli, client, store_uri, tmp_path):
    """The store is lost between two chunks (as ``mlruns/`` between sessions): the report
    rebuilds the table from ``trials.csv`` and adds the next chunk's trials to it."""
    first = cli("-m", "+sweep=paper_table", "experiment=admm_sigmoid", "trials=2", *TINY)
    assert first.returncode == 0, first.stderr
    before = _trial_errors(client, "ADMM (sigmoid)")
    out = paper_table.write(store_uri, tmp_path / "report")
    table_before = (out / "tables.csv").read_text()
    archived = paper_table.read_archive(out / paper_table.ARCHIVE)
    assert sorted(archived["seed"]) == ["0", "1"]
    assert archived["error"].tolist() == pytest.approx([before["0"], before["1"]], rel=1e-9)

    store = tmp_path / "store" / "mlflow.db"
    store.rename(tmp_path / "lost.db")
    (out / "paper_product_gate.png").write_bytes(b"left by an earlier report")
    again = paper_table.write(store_uri, out)
    assert not (out / "paper_product_gate.png").exists()  # no trials of that task now
    assert (again / "tables.csv").read_text() == table_before
    assert "2 trial(s) of runs no longer there" in (again / "tables.md").read_text()

    # The next session's store: a new one, with the next chunk (seeds 1 and 2) in it.
    next_uri = f"sqlite:///{tmp_path / 'next' / 'mlflow.db'}"
    second = subprocess.run(
        [sys.executable, "-m", "admmlab.train", "-m", "+sweep=paper_table",
         "experiment=admm_sigmoid", "seed=1", "trials=2", *TINY],
        cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": next_uri},
        capture_output=True, text=True,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    after = _trial_errors(MlflowClient(next_uri), "ADMM (sigmoid)")
    paper_table.write(next_uri, out)
    square = pd.read_csv(out / "tables.csv").set_index(["task", "competitor"])
    row = square.loc[("square", "ADMM (sigmoid)")]
    assert row["trials"] == 3
    expected = (before["0"] + after["1"] + after["2"]) / 3
    assert row["ours_mean"] == pytest.approx(expected, rel=1e-5)
    assert len(paper_table.read_archive(out / paper_table.ARCHIVE)) == 3


def test_a_file_that_is_not_a_trial_archive_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "trials.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a paper-table trial archive"):
        paper_table.read_archive(bad)


def test_paper_table_report_names_an_unknown_study_in_one_line(store_uri, tmp_path, capsys):
    from admmlab.report import cli as report_cli

    (tmp_path / "store").mkdir(exist_ok=True)
    with pytest.raises(SystemExit) as stop:
        report_cli.main(["paper_table", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert "error:" in capsys.readouterr().err


PRESET_CASES = [pytest.param(t, c, id=f"{t}-{c}") for t in TASKS for c in SGD_TYPE]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "competitor"), PRESET_CASES)
def test_tuned_presets_do_not_diverge_over_the_20_reported_seeds(make_cfg, task, competitor):
    """Every SGD-type preset at its paper-best structure, seeds 0–19 (the paper table's;
    tuning used 1000+), for the first epochs: where a rate too large blows up."""
    overrides = (f"experiment={competitor}", f"dataset={task}", "seed=0", "trials=20")
    cfg = validate(make_cfg(*overrides, "solver.epochs=2", "tracking.enabled=false"))
    seeds = list(range(20))
    data = load_trials(cfg, seeds, torch.device("cpu"))
    weights = initial_weights(cfg, data, seeds)
    fit = run_solver(cfg.solver, data, weights, activation=cfg.activation.name, seeds=seeds)
    assert not fit.diverged, fit.diverged
    assert torch.isfinite(fit.history["train_mse"]).all()


def test_settings_differ_only_in_parameters_both_runs_record():
    old = paper_table.settings_of({"solver.lr": "0.0081", "seed": "0", "tracking.uri": "x"})
    new = paper_table.settings_of({"solver.lr": "0.0081", "seed": "10", "solver.impl": "fast"})
    assert old == {"solver.lr": "0.0081"} and not paper_table.differ(old, new)
    newer = paper_table.settings_of({"solver.lr": "0.005", "model.depth": "18"})
    assert paper_table.differ(old, newer)


def test_float32_is_compared_with_float64_on_the_seeds_both_ran():
    def trial(seed: int, dtype: str, error: float) -> dict:
        return {"dataset": "square", "competitor": "SGD (ReLU)", "seed": str(seed),
                "dtype": dtype, "outcome": "ok", "error": error}  # fmt: skip

    e64 = {0: 1.0e-8, 1: 3.0e-8, 2: 2.0e-8}
    e32 = {0: 2.0e-8, 1: 3.0e-8, 3: 9.0e-8}  # seed 3 has no float64 twin: left out
    frame = pd.DataFrame(
        [trial(s, "float64", e) for s, e in e64.items()]
        + [trial(s, "float32", e) for s, e in e32.items()]
        + [{**trial(9, "float64", 1.0), "competitor": "ADMM (sigmoid)"}]
    )
    (row,) = paper_table.dtype_rows(frame).itertuples(index=False)
    assert (row.task, row.competitor, row.seeds) == ("square", "SGD (ReLU)", 2)
    assert row.float64_mean == pytest.approx(2.0e-8) and row.float32_mean == pytest.approx(2.5e-8)
    assert row.seed_ratio_median == pytest.approx(1.5)
    assert (row.seed_ratio_min, row.seed_ratio_max) == pytest.approx((1.0, 2.0))
    # The means differ by 5e-9, less than the float32 trials' std (7.1e-9): they agree.
    assert row.agree
    frame.loc[frame["dtype"] == "float32", "error"] *= 10
    assert not paper_table.dtype_rows(frame).iloc[0]["agree"]
