"""``python -m admmlab.demo``: the README's main job, small enough for a laptop.

A study on the square task: ADMM on sigmoid nets against the four SGD-type
competitors over a few depths, 3 trials per setting, plus a 2 × 2
initialisation comparison and ADMM's 3 × 3 λ × β grid, all tracked in MLflow;
then the study's report.
``MLFLOW_TRACKING_URI`` and ``ADMMLAB_REPORT_DIR`` redirect the store and the report.
"""

import sys
import time
from dataclasses import dataclass

from hydra import compose, initialize_config_dir

from admmlab import interrupts, tracking
from admmlab.paths import conf_dir, mlruns_dir
from admmlab.report.build import write_report
from admmlab.setting import run
from admmlab.sweeping import best_setting

STUDY = "demo"
EXPERIMENT = "demo"
TRIALS = 3
WIDTH = 30
N_TRAIN = 500
EPOCHS = {"admm": 30, "sgd": 150, "sgdm": 150, "adam": 150}
COMMON = [
    "dataset=square",
    f"dataset.n_train={N_TRAIN}",
    f"dataset.n_test={N_TRAIN}",
    f"model.width={WIDTH}",
    f"trials={TRIALS}",
    "tracking.log_weights=false",
    f"tracking.experiment={EXPERIMENT}",
]
# label → (solver, activation, depths): sigmoid nets are shallow in the paper, ReLU nets deep.
COMPETITORS = {
    "ADMM (sigmoid)": ("admm", "sigmoid", (1, 2, 3)),
    "SGD (sigmoid)": ("sgd", "sigmoid", (1, 2, 3)),
    "SGD (ReLU)": ("sgd", "relu", (2, 4, 6)),
    "SGDM (ReLU)": ("sgdm", "relu", (2, 4, 6)),
    "Adam (ReLU)": ("adam", "relu", (2, 4, 6)),
}
# The 2 × 2 initialisation comparison: these competitors at depth 2 under each scheme.
INIT_SCHEMES = ("msra", "xavier")
INIT_COMPETITORS = ("ADMM (sigmoid)", "Adam (ReLU)")
INIT_DEPTH = 2
# ADMM's λ × β stability at depth 2: three decades each around the paper's defaults.
LAMS = (1e-8, 1e-6, 1e-4)
BETAS = (0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Setting:
    competitor: str
    depth: int
    init: str = "msra"
    lam_beta: tuple[float, float] | None = None  # ADMM only; None: the solver's defaults

    def overrides(self) -> list[str]:
        solver, activation, _ = COMPETITORS[self.competitor]
        extra = []
        if self.lam_beta is not None:
            extra = [f"solver.lam={self.lam_beta[0]}", f"solver.beta={self.lam_beta[1]}"]
        return [
            *COMMON,
            f"solver={solver}",
            f"activation={activation}",
            f"init={self.init}",
            f"model.depth={self.depth}",
            f"solver.epochs={EPOCHS[solver]}",
            *extra,
        ]


def settings() -> list[Setting]:
    """Every competitor at its depths, then the init schemes and ADMM's λ × β grid
    (the point at the defaults, λ = 1e-6 and β = 1, is the depth-2 setting itself)."""
    grid = [Setting(c, d) for c, (_, _, depths) in COMPETITORS.items() for d in depths]
    extra = [Setting(c, INIT_DEPTH, i) for c in INIT_COMPETITORS for i in INIT_SCHEMES]
    admm = "ADMM (sigmoid)"
    extra += [
        Setting(admm, INIT_DEPTH, lam_beta=(lam, beta))
        for lam in LAMS
        for beta in BETAS
        if (lam, beta) != (1e-6, 1.0)
    ]
    return grid + [s for s in extra if s not in grid]


def definition() -> dict[str, object]:
    """The study's params: enough to say what was swept."""
    return {
        "task": "square",
        "competitors": ", ".join(COMPETITORS),
        # MLflow param names allow no parentheses: key by solver-activation.
        **{f"depths.{s}-{a}": list(d) for s, a, d in COMPETITORS.values()},
        "init_comparison": f"{list(INIT_SCHEMES)} x {list(INIT_COMPETITORS)} at depth {INIT_DEPTH}",
        "admm_lam_beta": f"lam {list(LAMS)} x beta {list(BETAS)} at depth {INIT_DEPTH}",
        "width": WIDTH,
        "trials": TRIALS,
        "n_train": N_TRAIN,
        **{f"epochs.{s}": e for s, e in EPOCHS.items()},
    }


def run_setting(setting: Setting, study: tracking.StudyContext) -> str:
    """Train one setting; returns a one-line result.

    A failure is not fatal: ``setting.run`` has recorded the run FAILED, with its reason.
    """
    cfg = compose(config_name="config", overrides=setting.overrides())
    try:
        outcome = run(cfg, study=study)
    except Exception as err:
        return f"FAILED ({type(err).__name__}: {err})"
    result = f"{outcome.objective_name} {outcome.finished_mean(outcome.objective_name):.2e}"
    if outcome.diverged:
        result += f" ({len(outcome.diverged)} of {TRIALS} trials diverged)"
    return result


def run_study(store: tracking.Store) -> str:
    """Run every setting under one study run; returns the study run's id.

    Ctrl-C or SIGTERM ends the setting in progress and the study run KILLED; the
    settings that finished stay as they are.
    """
    todo = settings()
    with (
        tracking.study_run(store, STUDY, definition()) as study_id,
        initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"),
    ):
        for i, setting in enumerate(todo, start=1):
            start = time.perf_counter()
            result = run_setting(setting, tracking.StudyContext(study_id, STUDY, EXPERIMENT))
            knobs = ""
            if setting.lam_beta is not None:
                knobs = f" lam {setting.lam_beta[0]:g} beta {setting.lam_beta[1]:g}"
            print(
                f"[demo] {i:2d}/{len(todo)} {setting.competitor:15s} depth {setting.depth} "
                f"init {setting.init:7s}{knobs} {result} ({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
        best = best_setting(tracking.study_settings(store, study_id))
        tracking.end_study(store, study_id, best=best)
    return study_id


def main() -> None:
    interrupts.install()  # a signal is raised between store writes, not inside one
    uri = tracking.default_uri()
    start = time.perf_counter()
    print(
        f"[demo] study {STUDY!r}: {len(settings())} settings x {TRIALS} trials, tracking to {uri}",
        flush=True,
    )
    try:
        store = tracking.Store(EXPERIMENT, uri)
    except tracking.TrackingError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        study_id = run_study(store)
    except KeyboardInterrupt:
        sys.exit(
            "[demo] interrupted: the study run and the setting in progress are KILLED, "
            "the settings that finished are kept"
        )
    try:
        folder = write_report(study_id, uri=uri)
    except KeyboardInterrupt:
        sys.exit(
            f"[demo] interrupted while writing the report: admmlab-report {study_id} redoes it"
        )
    print(f"[demo] done in {time.perf_counter() - start:.0f} s")
    print(
        f"[demo] report: {folder / 'index.md'} (also on the study run in MLflow, "
        f"under artifacts/report)"
    )
    if uri == f"sqlite:///{mlruns_dir() / 'mlflow.db'}":
        print("[demo] browse the runs: make ui, then open http://127.0.0.1:5000")
    else:
        print(
            f"[demo] browse the runs: mlflow ui --backend-store-uri {uri} "
            "(make ui opens the project's default store)"
        )


if __name__ == "__main__":
    main()
