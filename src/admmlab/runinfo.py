"""What a run records about itself: flat params, tags, provenance."""

import json
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from admmlab.config import RunConfig
from admmlab.paths import project_root
from admmlab.tracking import STUDY_TAG, digest

PACKAGES = ("admmlab", "torch", "numpy", "mlflow", "optuna", "hydra-core")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"solver": {"lam": 1e-6}}`` → ``{"solver.lam": 1e-6}``; lists stay whole."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


# Keys that do not change what a setting computes: where it is recorded and how a
# sweep runs. Two setting runs with equal other keys are the same setting.
NOT_THE_SETTING = ("tracking.", "study", "restart", "max_failure_rate")


def setting_key(params: dict[str, Any]) -> str:
    """A setting's identity (flattened, resolved config) as a short hash: a resumed
    study finds the settings it already finished by it."""
    kept = {k: v for k, v in params.items() if not k.startswith(NOT_THE_SETTING)}
    return digest(json.dumps(kept, sort_keys=True, default=str))


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def provenance() -> dict[str, str]:
    """Git commit and dirtiness, package versions and the command line."""
    tags = {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": str(_git("status", "--porcelain", "--untracked-files=no") != ""),
        "command": " ".join(sys.argv),
    }
    for name in PACKAGES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            tags[f"version.{name}"] = "missing"
    return tags


def tags(cfg: RunConfig, study: str | None = None) -> dict[str, str]:
    out = {
        "solver": cfg.solver.name,
        "activation": cfg.activation.name,
        "init": cfg.init.name,
        "dataset": cfg.dataset.name,
        "competitor": competitor(cfg),
        **provenance(),
    }
    if study:
        out[STUDY_TAG] = study
    return out


def competitor(cfg: RunConfig) -> str:
    """The paper's column label, e.g. ``ADMM (sigmoid)`` or ``Adam (ReLU)``."""
    solver = cfg.solver.label or cfg.solver.name
    act = {"relu": "ReLU"}.get(cfg.activation.name, cfg.activation.name)
    return f"{solver} ({act})"


# Keys a run's name leaves out: already in it, in its tags, or about the sweep itself.
UNNAMED = {
    "solver", "activation", "init", "model.depth", "model.width", "seed", "trials",
    "experiment", "dataset", "sweep", "study", "restart", "max_failure_rate", "objective",
}  # fmt: skip
# Constant tables every run carries in its config: not the run's parameters.
CONSTANT_TABLES = ("dataset.paper_best.", "dataset.tuned.")


def run_name(cfg: RunConfig, overrides: Sequence[str] = ()) -> str:
    """``admm-sigmoid-msra-d2w100-lam1e-06-beta1``: the net, then each value the command
    line or sweep set (by its last key segment); the seed only on a run of one trial."""
    name = (
        f"{cfg.solver.name}-{cfg.activation.name}-{cfg.init.name}"
        f"-d{cfg.model.depth}w{cfg.model.width}"
    )
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in UNNAMED or key.startswith(("hydra", "tracking.")) or not value:
            continue
        name += f"-{key.rsplit('.', 1)[-1]}{value}"
    return name + (f"-seed{cfg.seed}" if cfg.trials == 1 else "")


# The stability study's knob: recorded only when a sweep sets it (as Solver.settings()).
UNSET_KNOBS = ("solver.step",)


def params(container: dict[str, Any]) -> dict[str, Any]:
    """A run's params: its flattened, resolved config less the constant tables, the
    class a node names (``solver._target_``: plumbing, not a setting) and an unset knob."""
    return {
        k: v
        for k, v in flatten(container).items()
        if not k.startswith(CONSTANT_TABLES)
        and not k.endswith("._target_")
        and not (k in UNSET_KNOBS and v is None)
    }
