"""The benchmark scripts' core functions at tiny sizes, so they do not rot.

Nothing here asserts a time: only the structure of what each function returns
and the checks the benchmarks rely on (batched equals separate, the fast SGD
step's gradient equals autograd's).
"""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import admm_iteration
import batched_trials
import benchkit
import gpu_check
import memory
import run_all
import sgd_epoch
import studies
import tracking_overhead
from admmlab.nets import get_activation
from admmlab.solvers import sgd_graphs, sgd_steps
from admmlab.solvers.settings import SGD


def test_interleaved_gives_one_median_per_candidate_and_tables_print(capsys):
    calls = []
    times = benchkit.interleaved({"a": lambda: calls.append("a"), "b": lambda: None}, 3)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    assert len(calls) == 4  # one warm-up, then one per repeat
    benchkit.table("T", ["name", "value"], [("x", 1.5e-7), ("y", 3)])
    benchkit.summary("thing", ratio=0.5, ok=True)
    out = capsys.readouterr().out
    assert "1.50e-07" in out and "summary: thing ratio=0.5 ok=True" in out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_admm_iteration_row_compares_with_numpy_in_the_same_dtype(dtype):
    row = admm_iteration.compare_with_numpy(2, 10, dtype, epochs=1, repeats=1)
    setting, name, plain, ours, ratio, rate, peak, fraction = row
    assert (setting, name) == ("(2, 10)", str(dtype).removeprefix("torch."))
    assert plain > 0 and ours > 0 and ratio == pytest.approx(ours / plain)
    assert fraction == pytest.approx(rate / peak) and peak > 0


def test_iteration_flops_counts_the_big_products():
    n, samples = 300, 1000
    flops = admm_iteration.iteration_flops([1, n, n, 1], samples)
    # About seven n × N × n products (2n²N flops each) plus the factorisations.
    assert 6 * 2 * n * n * samples < flops < 10 * 2 * n * n * samples


@pytest.mark.parametrize("solver", batched_trials.SOLVERS)
def test_batched_trials_match_separate_runs(solver):
    c = batched_trials.compare(solver, 4, epochs=2, repeats=1, n_trials=3, n_train=60)
    assert c.batched_s > 0 and c.separate_s > 0 and c.ratio > 0
    assert c.mse_difference < 1e-9 and c.weight_difference < 1e-9


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("lam", [0.0, 1e-3])
def test_fast_step_gradient_equals_autograds(activation, lam):
    _, _, _, _, weights = benchkit.square_trials(2, [1, 5, 4, 1], n_train=30)
    x, y = torch.rand(2, 7, 1, dtype=torch.float64), torch.rand(2, 7, 1, dtype=torch.float64)
    act = get_activation(activation)
    settings = SGD(lr=0.1, lam=lam)
    fast = sgd_steps.FastStep(weights, act, settings)
    reference = sgd_steps.ReferenceStep(weights, act, settings)
    fast.train(x, y)
    reference.train(x, y)
    for i, (g_ref, wt, b) in enumerate(
        zip(reference.params, fast.grad_wts, fast.grad_biases, strict=True)
    ):
        as_shared = torch.cat([wt.mT, b.mT], dim=-1)
        assert torch.allclose(as_shared, g_ref.grad, rtol=1e-13, atol=1e-15), i


def test_sgd_epoch_benchmark_measures_every_column():
    x, y, weights = sgd_epoch.problem(2, 1, 2, 6, torch.float64, "cpu")
    assert sgd_epoch.fast_epoch(x, y, weights, epochs=2) > 0
    assert sgd_epoch.plain_epoch(x, y, weights, epochs=2) > 0
    assert sgd_epoch.ProductsOnly(2, 1, 2, 6, torch.float64, "cpu").epoch() > 0
    assert sgd_epoch.epoch_products(2, 1, 2, 6, torch.float64, "cpu") > 0


@pytest.mark.slow  # times a whole benchmark: make test runs it, make test-fast does not
def test_tracking_overhead_measures_and_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset-by-the-benchmark")
    result = tracking_overhead.measure(3, 1, tmp_path, extra=["dataset.n_train=100"])
    assert result.epochs == 3 and result.tracked_s > 0 and result.untracked_s > 0
    assert isinstance(result.fraction, float)
    parts = tracking_overhead.profile_tracked(3, tmp_path, extra=["dataset.n_train=100"])
    assert parts["whole run (profiled)"] > 0
    assert parts["per-epoch callback (setting.log_epoch)"] > 0
    assert parts["end of the setting (SettingRun.finish)"] > 0
    assert parts["  of which the learning-curve figure"] > 0
    assert set(tracking_overhead.TRACKING_PARTS) <= set(parts)


@pytest.mark.slow  # times a whole benchmark: make test runs it, make test-fast does not
def test_memory_counts_iterates_and_follows_live_tensors():
    tiny = memory.Setting(depth=2, width=10, n_samples=200, epochs=2)
    # W: 10·2 + 10·11 + 1·11; V and U: 2·(10 + 10 + 1)·200; X and Y: 2·200
    assert memory.iterate_and_data_bytes(tiny) == 8 * (141 + 8400 + 400)
    rss = memory.in_subprocess("rss", tiny)
    assert rss["peak"] > 0 and rss["baseline"] > 0
    traced = memory.trace_live(tiny)
    assert traced["peak"] > 0
    labels = [label for label, _ in traced["at_peak"]]
    assert any(label.startswith("admm.py:") for label in labels)
    growth = memory.in_subprocess("growth", memory.Setting(epochs=12))
    assert growth["seconds"] > 0 and math.isfinite(growth["growth_per_epoch"])


def test_studies_parse_every_small_budget_and_measure_a_setting():
    from admmlab.paths import sweeps_dir

    for sweep_file in sweeps_dir().glob("*.yaml"):
        command = studies.small_budget_command(sweep_file)
        assert command is not None, sweep_file.name
        assert command[:3] == [sys.executable, "-m", "admmlab.train"]
    grid = studies.depth_grid()
    assert max(studies.study_depths("admm_sigmoid", grid)) <= studies.SIGMOID_MAX_DEPTH
    assert studies.study_depths("adam_relu", grid) == grid
    cost = studies.measure_setting(
        "adam_relu", 1, epochs=2, n_trials=2, extra=("model.width=4", "dataset.n_train=100")
    )
    assert cost.seconds_per_epoch > 0 and cost.full_epochs == 2000
    assert cost.projected_s == pytest.approx(2000 * cost.seconds_per_epoch)
    assert cost.device_seconds_per_epoch > 0
    assert cost.device_projected_s == pytest.approx(2000 * cost.device_seconds_per_epoch)


def test_device_work_counts_launches_and_product_flops():
    a, b = torch.rand(3, 4, 5, dtype=torch.float64), torch.rand(3, 5, 6, dtype=torch.float64)
    system = torch.eye(4, dtype=torch.float64).expand(2, 4, 4).contiguous()
    with benchkit.DeviceWork() as work:
        product = a @ b  # bmm: 2·3·4·5·6 flops
        product.mT.sigmoid()  # a view, then one kernel
        torch.linalg.cholesky_ex(system)  # 2 · 4³/3 flops
    assert work.flops == pytest.approx(2 * 3 * 4 * 5 * 6 + 2 * 4**3 / 3)
    assert work.launches >= 3
    seconds = work.projected_seconds(torch.float64)
    flop_time = work.flops / benchkit.DEVICE_FLOPS[torch.float64]
    assert seconds == pytest.approx(work.launches * benchkit.LAUNCH_S + flop_time)


def test_gpu_check_without_cuda_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    gpu_check.main()
    assert capsys.readouterr().out.strip() == "no CUDA device"


def test_gpu_check_runs_its_checks_on_any_device(capsys):
    epochs = dict.fromkeys(batched_trials.SOLVERS, 1)
    gpu_check.run_checks("cpu", sizes=(1000,), epochs=1, repeats=1, trial_epochs=epochs, n_trials=2)
    out = capsys.readouterr().out
    assert "seconds per iteration" in out and "summary: gpu_check[N=1000,float32]" in out


def test_sgd_epoch_parts_time_training_and_evaluation_beside_their_products(capsys):
    parts = sgd_epoch.measure_parts(1, torch.float32, "cpu", rounds=2)
    assert [p.part for p in parts] == ["training", "evaluation"]
    assert all(p.seconds > 0 and p.products_s > 0 and len(p.limit_shares) == 2 for p in parts)
    sgd_epoch.report_parts(parts)
    assert "the epoch's parts apart" in capsys.readouterr().out


def test_gpu_check_times_the_sgd_epoch_graphed_and_eager(capsys):
    rows = gpu_check.sgd_epochs("cpu", rounds=1, name="square (15, 80)", trials=(1,))
    assert [len(rows[g]) for g in (True, False)] == [2, 2]
    assert all(r.fast_s > 0 and r.products_s > 0 for g in rows for r in rows[g])
    out = capsys.readouterr().out
    assert "replayed from CUDA graphs" in out and "the fast step eager" in out
    assert sgd_graphs.ENABLED


@pytest.mark.slow
def test_run_all_collects_summaries(tmp_path, capsys):
    script = tmp_path / "fake.py"
    script.write_text("import sys\nprint('table')\nprint('summary: fake x=1', sys.argv[1:])\n")
    outcome = run_all.run_script(script, quick=True, env=run_all.child_env(1))
    assert outcome.returncode == 0 and outcome.summaries == ["fake x=1 ['--quick']"]
    run_all.print_summary([outcome])
    assert "fake.py" in capsys.readouterr().out


@pytest.mark.slow  # times a whole benchmark: make test runs it, make test-fast does not
def test_gpu_check_times_the_depth_study_on_the_device_it_is_given(monkeypatch, capsys):
    """Check (3) on the CPU, with the smallest and largest depth of each competitor."""
    measured = []
    real = studies.measure_setting

    def smaller(competitor, depth, epochs, extra=()):
        measured.append((competitor, depth, extra))
        return real(competitor, depth, epochs, n_trials=2, extra=(*extra, "dataset.n_train=100"))

    monkeypatch.setattr(studies, "measure_setting", smaller)
    hours, model_hours = gpu_check.depth_study("cpu", epochs=1, quick=True)
    assert hours > 0 and model_hours > 0
    assert {extra for _, _, extra in measured} == {("device=cpu",)}
    assert len(measured) == 2 * len(studies.COMPETITORS)
    assert "20 trials batched per setting (projected from a few epochs each on cpu)" in (
        capsys.readouterr().out
    )
