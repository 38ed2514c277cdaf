"""A run's artifacts drawn from its history: the history as a table and its learning
curve (one colour per seed, titled with the setting). Reports read them back from MLflow."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from omegaconf import OmegaConf


def history_frame(history: Mapping[str, torch.Tensor], seeds: Sequence[int]) -> pd.DataFrame:
    """Long table: one row per (epoch, trial), one column per metric."""
    frames = []
    for k, seed in enumerate(seeds):
        cols = {}
        for name, values in history.items():
            v = values.detach().cpu()
            cols[name] = (v[:, k] if v.dim() == 2 else v).numpy()
        frame = pd.DataFrame(cols)
        frame.insert(0, "seed", seed)
        frame.insert(0, "trial", k)
        frame.insert(0, "epoch", range(1, len(frame) + 1))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


METRIC_STYLES = {"train_mse": "-", "val_mse": "--", "test_mse": ":"}


def setting_title(config: Mapping[str, Any]) -> str:
    """The setting in a few words, from a run's resolved config (``config.yaml``)."""
    solver, model = config.get("solver", {}), config.get("model", {})
    init = config.get("init", {})
    name = solver.get("name", "?")
    if name == "admm":
        steps = f"λ={solver.get('lam')} β={solver.get('beta')}"
    else:
        steps = f"lr={solver.get('lr')}"
    return (
        f"{config.get('dataset', {}).get('name', '?')}: {name} "
        f"({config.get('activation', {}).get('name', '?')}), "
        f"depth {model.get('depth')}, width {model.get('width')}\n"
        f"init {init.get('name')}×{init.get('scale')}, {steps}, {solver.get('epochs')} epochs"
    )


def _title_beside(path: Path) -> str | None:
    """The setting of the run whose ``config.yaml`` was written beside ``path``, if any."""
    config = path.parent / "config.yaml"
    if not config.is_file():
        return None
    loaded = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    return setting_title(loaded) if isinstance(loaded, dict) else None


def learning_curve_figure(frame: pd.DataFrame, title: str | None = None) -> Figure:
    """Training (and held-out) MSE against epoch, log scale: one colour per seed, one
    line style per metric."""
    metrics = [m for m in METRIC_STYLES if m in frame]
    seeds = list(dict.fromkeys(frame["seed"]))
    colours = dict(
        zip(
            seeds,
            sns.color_palette("husl" if len(seeds) > 10 else "tab10", len(seeds)),
            strict=True,
        )
    )
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7, 4.4), dpi=110)
        for seed, rows in frame.groupby("seed", sort=False):
            for metric in metrics:
                # A diverged run's values would push the log axis past the float range.
                values = rows[metric].astype("float64")
                mse = values.where(np.isfinite(values) & (values < 1e100))
                ax.plot(rows["epoch"], mse, color=colours[seed], ls=METRIC_STYLES[metric], lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("epoch (ADMM: iteration)")
        ax.set_ylabel("mean squared error")
        if title:
            ax.set_title(title, fontsize=9)
        _legend(ax, colours, metrics)
        fig.tight_layout()
    return fig


def _legend(ax: Axes, colours: Mapping[Any, Any], metrics: list[str]) -> None:
    """Seeds by colour, metrics by line style: one entry each, not one per line."""
    handles = [Line2D([], [], color=c, lw=2, label=f"seed {s}") for s, c in colours.items()]
    handles += [Line2D([], [], color="#444444", ls=METRIC_STYLES[m], label=m) for m in metrics]
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        ncols=2 if len(colours) > 12 else 1,
    )


def learning_curve(frame: pd.DataFrame, path: Path, title: str | None = None) -> None:
    """:func:`learning_curve_figure` saved at ``path``; without a ``title``, the setting
    is read from the run's ``config.yaml`` beside it (where train writes it)."""
    fig = learning_curve_figure(frame, title or _title_beside(path))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
