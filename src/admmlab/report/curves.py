"""A run's history as a table and its learning curve (used for run artifacts)."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch


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


def learning_curve(frame: pd.DataFrame, path: Path) -> None:
    """Training (and held-out) MSE against epoch, log scale, one line per trial."""
    metrics = [m for m in ("train_mse", "val_mse", "test_mse") if m in frame]
    long = frame.melt(
        id_vars=["epoch", "trial"], value_vars=metrics, var_name="metric", value_name="mse"
    )
    # A diverged run's values would push the log axis past the float range: leave them out.
    long["mse"] = long["mse"].where(np.isfinite(long["mse"]) & (long["mse"] < 1e100))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        sns.lineplot(
            long,
            x="epoch",
            y="mse",
            hue="metric",
            units="trial",
            estimator=None,
            ax=ax,
            linewidth=1,
        )
        ax.set_yscale("log")
        ax.set_xlabel("epoch (ADMM: iteration)")
        ax.set_ylabel("mean squared error")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
