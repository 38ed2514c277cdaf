"""The study figures (the paper's Figures 4, 6–15), each drawn from the settings table.

Every function takes one task's :class:`TaskData`, draws into ``folder`` and
returns the file names, or raises :class:`NothingToDraw` saying why the study
holds nothing for it. Along the axis a figure shows, every other axis is held
at its most common value (:func:`aggregate.slice_through`).
"""

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from admmlab.report.aggregate import SGD_TYPE, log10_or_nan, series, slice_through
from admmlab.report.style import (
    competitor_order,
    headroom,
    mark_failed,
    new_figure,
    note,
    palette,
    parameter_scale,
    save,
    spans_decades,
    theme,
    value_scale,
)
from admmlab.report.tables import GRADIENT_FREE, paper_results

MAX_CURVES = 6  # convergence curves per panel, beyond which they stop being readable
LINE_KEY = "line: mean over trials · dots: single trials · x: failed or diverged"
PAPER_KEY = "◆: the paper's mean (+std), at its best (depth, width) written beside it"
BOX_KEY = "box: quartiles over trials · dots: single trials · x: failed or diverged"


class NothingToDraw(Exception):
    """The study holds nothing this figure could show; the message says what is missing."""


class HistorySource(Protocol):
    def get(self, run_id: str, key: str) -> list[tuple[int, float]]: ...


@dataclass
class TaskData:
    """One task's settings and trials, with access to per-epoch histories."""

    dataset: str
    settings: pd.DataFrame
    trials: pd.DataFrame
    histories: HistorySource
    error_label: str

    def competitors(self, solvers: Iterable[str] | None = None) -> list[str]:
        rows = self.settings
        if solvers is not None:
            rows = rows[rows["solver"].isin(list(solvers))]
        return competitor_order(rows["competitor"].unique())

    def of(self, competitor: str) -> pd.DataFrame:
        return self.settings[self.settings["competitor"] == competitor]

    def ok_trials(self, settings: pd.DataFrame) -> pd.DataFrame:
        """The finished trials of ``settings`` (rows of one competitor)."""
        t = self.trials
        keys = set(zip(settings["competitor"], settings["setting_key"], strict=True))
        mine = [k in keys for k in zip(t["competitor"], t["setting_key"], strict=True)]
        return t[np.asarray(mine, dtype=bool) & (t["outcome"] == "ok").to_numpy()]

    def mean_history(self, setting: pd.Series, key: str) -> pd.Series:
        """``key`` against epoch, averaged over the setting's finished trials."""
        runs = self.ok_trials(setting.to_frame().T)["run_id"]
        points = [p for run in runs for p in self.histories.get(run, key)]
        if not points:
            return pd.Series(dtype=float)
        frame = pd.DataFrame(points, columns=["step", "value"])
        return frame.groupby("step")["value"].mean()


Draw = Callable[[TaskData, Path, str], list[str]]


# ------------------------------------------------------------------ helpers


def _sweeps(
    data: TaskData, axis: str, solvers: Iterable[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Per competitor whose settings vary ``axis``: its settings along it."""
    out = {}
    for comp in data.competitors(solvers):
        rows = slice_through(data.of(comp), {axis})
        if rows[axis].nunique() > 1:
            out[comp] = rows.sort_values(axis)
    return out


LINE_STYLES = ("-", "--", ":", "-.")
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P")


def _draw_lines(
    ax: Axes, data: TaskData, lines: dict[str, pd.DataFrame], x: str, mean: str, per_trial: str
) -> tuple[list[float], int]:
    """Mean per setting as a line, each trial as a dot, failures as marks.

    A line joins only settings that differ in nothing but ``x``: settings that differ
    in another param too are separate series (same colour, another line style).
    Returns the y values drawn and the number of rows of failure marks.
    """
    colours = palette(data.settings["competitor"].unique())
    levels: dict[float, int] = {}
    ys: list[float] = []
    for comp, rows in lines.items():
        for i, (name, part) in enumerate(series(rows, x, data.of(comp))):
            done = part[part["n"] > 0]
            ax.plot(
                done[x],
                done[mean],
                marker=SERIES_MARKERS[i % len(SERIES_MARKERS)],
                linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                color=colours[comp],
                label=f"{comp}, {name}" if name else comp,
                lw=1.8,
                ms=5,
            )
            ys += list(done[mean])
        dots = data.ok_trials(rows)
        ax.scatter(dots[x], dots[per_trial], color=colours[comp], s=14, alpha=0.35, lw=0)
        ys += list(dots[per_trial])
        for _, r in rows[rows["n_bad"] > 0].iterrows():
            mark_failed(ax, r[x], int(r["n_bad"]), colours[comp], levels.get(r[x], 0))
            levels[r[x]] = levels.get(r[x], 0) + 1
    return ys, max(levels.values(), default=0)


def _paper_marks(
    ax: Axes, data: TaskData, axis: str, competitors: Iterable[str]
) -> list[tuple[float, float]]:
    """The paper's mean (+std) for each competitor, at its best structure's ``axis`` value.

    Returns the points drawn, bar tops included (none when the paper did not report
    this task).
    """
    paper = paper_results()
    paper = paper[(paper["task"] == data.dataset) & paper["competitor"].isin(list(competitors))]
    colours = palette(data.settings["competitor"].unique())
    points: list[tuple[float, float]] = []
    for r in paper.itertuples(index=False):
        x = float(getattr(r, axis))
        ax.errorbar(
            [x],
            [r.error_mean],
            yerr=[[0.0], [r.error_std]],  # upward only: mean − std can fall below zero
            fmt="D",
            color=colours[r.competitor],
            mec="black",
            ms=7,
            capsize=3,
            zorder=4,
        )
        ax.annotate(
            f"({r.depth}, {r.width})",
            (x, r.error_mean),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=7,
            va="center",
            color=colours[r.competitor],
        )
        points += [(x, r.error_mean), (x, r.error_mean + r.error_std)]
    if points:  # one legend entry for all, in no competitor's colour
        ax.plot([], [], "D", color="#bbbbbb", mec="black", ms=7, label="paper: mean (+std)")
    return points


def _finish_error_axis(ax: Axes, ys: list[float], label: str, mark_rows: int) -> None:
    value_scale(ax, ys)
    headroom(ax, mark_rows)
    ax.set_ylabel(label)


def _legend(ax: Axes, outside: bool = False, **kwargs) -> None:
    """A legend inside the panel, or right of it where it would hide points."""
    if not ax.get_legend_handles_labels()[0]:
        return
    if outside:
        kwargs.update(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.legend(fontsize=8, **kwargs)


# ------------------------------------------------------------------ figures


def error_vs_axis(axis: str, xlabel: str) -> Draw:
    """Figures 6, 8, 10, 13 (depth) and the width study's: error against ``axis``,
    one line per competitor, the paper's mean at its best structure beside them."""

    def draw(data: TaskData, folder: Path, stem: str) -> list[str]:
        lines = _sweeps(data, axis)
        if not lines:
            raise NothingToDraw(f"{axis} does not vary within any competitor")
        with theme():
            fig, (ax,) = new_figure()
            ys, rows = _draw_lines(ax, data, lines, axis, "error_mean", "error")
            paper = _paper_marks(ax, data, axis, lines)
            _finish_error_axis(ax, ys + [y for _, y in paper], data.error_label, rows)
            ax.set_xlabel(xlabel)
            _axis_scale(ax, axis, pd.concat(lines.values())[axis], paper)
            key = f"{LINE_KEY}\n{PAPER_KEY}" if paper else LINE_KEY
            ax.set_title(f"{data.dataset}: error against {axis}\n{key}", fontsize=10)
            _legend(ax, outside=True, title="competitor")
            return save(fig, folder, stem)

    return draw


def _axis_scale(ax: Axes, axis: str, values: pd.Series, paper: list[tuple[float, float]]) -> None:
    """Depth: integer ticks; width: a log axis when it spans decades (10 … 400)."""
    if axis == "depth":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        parameter_scale(ax, [*values, *(x for x, _ in paper)])


error_vs_depth = error_vs_axis("depth", "depth L (hidden layers)")
error_vs_width = error_vs_axis("width", "width (units per hidden layer)")


def lambda_beta_heatmap(data: TaskData, folder: Path, stem: str) -> list[str]:
    """Figures 7a, 9a, 11a, 14a: log10 error over λ × β for ADMM."""
    panels = {}
    for comp in data.competitors(["admm"]):
        rows = slice_through(data.of(comp), {"lam", "beta"})
        if rows["lam"].nunique() > 1 and rows["beta"].nunique() > 1:
            panels[comp] = rows
    if not panels:
        raise NothingToDraw("no ADMM competitor varies both λ and β")
    with theme():
        fig, axes = new_figure(len(panels), width=6.2, height=4.8)
        for ax, (comp, rows) in zip(axes, panels.items(), strict=True):
            _heatmap(ax, rows, data.error_label)
            ax.set_title(f"{data.dataset}, {comp}: log10 {data.error_label}")
        return save(fig, folder, stem)


def _heatmap(ax: Axes, rows: pd.DataFrame, label: str) -> None:
    rows = rows.assign(log_error=log10_or_nan(rows["error_mean"]))
    grid = rows.pivot_table(
        index="lam", columns="beta", values="log_error", aggfunc="min", dropna=False
    ).sort_index(ascending=False)
    bad = rows.pivot_table(
        index="lam", columns="beta", values="n_bad", aggfunc="sum", dropna=False
    ).reindex_like(grid)
    finite = grid.to_numpy()[np.isfinite(grid.to_numpy())]
    low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    ax.set_facecolor("#dddddd")  # cells with no finished trial
    sns.heatmap(
        grid,
        ax=ax,
        cmap="viridis",
        mask=grid.isna(),
        vmin=low,
        vmax=max(high, low + 1e-9),
        linewidths=0.5,
        linecolor="white",
        cbar_kws={"label": f"log10 {label} (mean over trials)"},
        xticklabels=[f"{b:g}" for b in grid.columns],
        yticklabels=[f"{lam:g}" for lam in grid.index],
    )
    for i, lam in enumerate(grid.index):
        for j, beta in enumerate(grid.columns):
            _annotate_cell(ax, i, j, grid.loc[lam, beta], bad.loc[lam, beta], (low, high))
    ax.set_xlabel("β (penalty parameter)")
    ax.set_ylabel("λ (weight regularisation)")
    ax.tick_params(axis="y", rotation=0)
    ax.grid(False)


def _annotate_cell(
    ax: Axes, i: int, j: int, value: float, bad: float, span: tuple[float, float]
) -> None:
    failed = int(bad) if np.isfinite(bad) else 0
    if np.isfinite(value):
        text = f"{value:.1f}" + (f"\n{failed} failed" if failed else "")
        share = (value - span[0]) / max(span[1] - span[0], 1e-9)
        colour = "white" if share < 0.55 else "black"  # dark end of viridis is low
    elif failed:
        text, colour = f"×\n{failed} failed", "#333333"
    else:
        return
    ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8, color=colour)


def init_boxplot(data: TaskData, folder: Path, stem: str) -> list[str]:
    """Figures 7b, 9b, 11b, 14b: error per initialisation scheme and competitor."""
    sweeps = _sweeps(data, "init")
    if not sweeps:
        raise NothingToDraw("the initialisation scheme does not vary within any competitor")
    rows = pd.concat(sweeps.values(), ignore_index=True)
    dots = data.ok_trials(rows)
    if dots.empty:
        raise NothingToDraw(
            "no trial of the initialisation comparison finished (see the failures table)"
        )
    order = sorted(rows["init"].unique())
    hue_order = list(sweeps)
    colours = palette(data.settings["competitor"].unique())
    with theme():
        fig, (ax,) = new_figure(width=max(6.4, 1.6 * len(order) + 2.5))
        log = bool(dots["error"].gt(0).all() and spans_decades(dots["error"]))
        common = {
            "data": dots,
            "x": "init",
            "y": "error",
            "hue": "competitor",
            "order": order,
            "hue_order": hue_order,
            "palette": colours,
            "ax": ax,
            "log_scale": log,
        }
        sns.boxplot(**common, showfliers=False, boxprops={"alpha": 0.6})
        with _fixed_jitter():
            sns.stripplot(**common, dodge=True, size=3.5, alpha=0.7, legend=False)
        headroom(ax, _mark_box_failures(ax, rows, order, hue_order, colours))
        ax.set_xlabel("initialisation scheme (weights × the competitor's scale)")
        ax.set_ylabel(data.error_label)
        ax.set_title(f"{data.dataset}: error per initialisation scheme\n{BOX_KEY}", fontsize=10)
        _legend(ax, outside=True, title="competitor")
        return save(fig, folder, stem)


@contextmanager
def _fixed_jitter() -> Iterator[None]:
    """Seed the global RNG seaborn jitters with, so re-drawn figures match; then restore it."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        yield
    finally:
        np.random.set_state(state)


def _mark_box_failures(
    ax: Axes, rows: pd.DataFrame, order: list[str], hue_order: list[str], colours: dict[str, str]
) -> int:
    """'x' marks above the boxes whose setting had failed trials; returns the rows of marks.

    The offsets follow seaborn's dodge: the hue boxes share 0.8 of each category's width.
    """
    failed = rows[rows["n_bad"] > 0]
    for _, r in failed.iterrows():
        j = hue_order.index(r["competitor"])
        x = order.index(r["init"]) - 0.4 + 0.8 * (j + 0.5) / len(hue_order)
        mark_failed(ax, x, int(r["n_bad"]), colours[r["competitor"]])
    return int(not failed.empty)


def noise(data: TaskData, folder: Path, stem: str) -> list[str]:
    """Figures 12 and 15: training and test error against the noise level."""
    lines = _sweeps(data, "noise_std")
    if not lines:
        raise NothingToDraw("the noise level does not vary within any competitor")
    panels = [
        ("train_mse_mean", "train_mse", "training MSE (noisy targets)"),
        ("test_mse_mean", "test_mse", "test MSE (clean targets)"),
    ]
    levels = pd.concat(lines.values())["noise_std"]
    with theme():
        fig, axes = new_figure(2)
        for ax, (mean, per_trial, label) in zip(axes, panels, strict=True):
            ys, rows = _draw_lines(ax, data, lines, "noise_std", mean, per_trial)
            _finish_error_axis(ax, ys, label, rows)
            parameter_scale(ax, levels)
            ax.set_xlabel("noise standard deviation σ (target units)")
            ax.set_title(f"{label.split(' (')[0]} against noise")
        _legend(axes[1], outside=True, title="competitor")
        fig.suptitle(f"{data.dataset}: error against noise\n{LINE_KEY}", fontsize=10)
        return save(fig, folder, stem)


def lr_beta(data: TaskData, folder: Path, stem: str) -> list[str]:
    """The stability claim: SGD-type error against lr beside ADMM's against β."""
    panels = [
        (_sweeps(data, "lr", SGD_TYPE), "lr", "initial learning rate", "SGD-type"),
        (_sweeps(data, "beta", ["admm"]), "beta", "β (penalty parameter)", "ADMM"),
    ]
    panels = [p for p in panels if p[0]]
    if not panels:
        raise NothingToDraw("neither an SGD-type learning rate nor ADMM's β varies")
    with theme():
        fig, axes = new_figure(len(panels), sharey=True)
        ys: list[float] = []
        mark_rows = 0
        for ax, (lines, axis, xlabel, who) in zip(axes, panels, strict=True):
            drawn, rows = _draw_lines(ax, data, lines, axis, "error_mean", "error")
            ys, mark_rows = ys + drawn, max(mark_rows, rows)
            parameter_scale(ax, pd.concat(lines.values())[axis])
            ax.set_xlabel(xlabel)
            ax.set_title(f"{who}: error against {xlabel.split(' (')[0]}")
            _legend(ax, title="competitor")
        _finish_error_axis(axes[0], ys, data.error_label, mark_rows)
        fig.suptitle(f"{data.dataset}: stability in the step size\n{LINE_KEY}", fontsize=10)
        return save(fig, folder, stem)


def saturation(data: TaskData, folder: Path, stem: str) -> list[str]:
    """Figure 4: SGD's per-layer gradient norms against ADMM's per-layer residuals."""
    sgd_names = data.competitors(SGD_TYPE)
    admm_names = data.competitors(["admm"])
    if not sgd_names or not admm_names:
        raise NothingToDraw("needs both SGD-type and ADMM runs that finished")
    sgd_name = "SGD (sigmoid)" if "SGD (sigmoid)" in sgd_names else sgd_names[0]
    sgd_row = _deepest(slice_through(data.of(sgd_name), {"depth"}))
    admm_row = _deepest(slice_through(data.of(admm_names[0]), {"depth"}), _depth(sgd_row))
    if sgd_row is None or admm_row is None:
        raise NothingToDraw("needs both SGD-type and ADMM runs that finished")
    panels = [
        (
            sgd_name,
            sgd_row,
            "grad_norm",
            "epoch",
            r"RMS gradient norm $\|\partial\ell/\partial W_i\|_F$ per step",
        ),
        (
            admm_names[0],
            admm_row,
            "residual",
            "iteration",
            r"constraint residual $\|\sigma(W_i\tilde{V}_{i-1}) - V_i\|_F$",
        ),
    ]
    curves = [_layer_curves(data, row, prefix) for _, row, prefix, _, _ in panels]
    if any(c.empty for c in curves):
        raise NothingToDraw("the per-layer histories (grad_norm/…, residual/…) were not recorded")
    with theme():
        fig, axes = new_figure(2)
        for ax, frame, (name, row, _, xlabel, ylabel) in zip(axes, curves, panels, strict=True):
            _plot_layers(ax, frame)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{name}, depth {_depth(row)}: per layer (mean over trials)")
        fig.suptitle(
            f"{data.dataset}: gradients through the layers against ADMM's residuals", fontsize=11
        )
        return save(fig, folder, stem)


def _depth(row: pd.Series | None) -> int:
    return int(row["depth"]) if row is not None and math.isfinite(row["depth"]) else 0


def _deepest(rows: pd.DataFrame, prefer_depth: int | None = None) -> pd.Series | None:
    """A finished setting: at ``prefer_depth`` if there is one, else the deepest; least error."""
    done = rows[rows["n"] > 0]
    if prefer_depth is not None and (done["depth"] == prefer_depth).any():
        done = done[done["depth"] == prefer_depth]
    if done.empty:
        return None
    ranked = done.sort_values(["depth", "error_mean", "setting_key"], ascending=[False, True, True])
    return ranked.iloc[0]


def _layer_curves(data: TaskData, row: pd.Series, prefix: str) -> pd.DataFrame:
    """Long table (step, layer, value) of ``<prefix>/layer_i`` for i = 1 … depth + 1."""
    frames = []
    last = _depth(row) + 1
    for i in range(1, last + 1):
        series = data.mean_history(row, f"{prefix}/layer_{i}")
        name = f"layer {i} (output)" if i == last else f"layer {i}"
        if not series.empty:
            frames.append(
                pd.DataFrame({"step": series.index, "layer": name, "value": series.to_numpy()})
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _plot_layers(ax: Axes, frame: pd.DataFrame) -> None:
    layers = list(dict.fromkeys(frame["layer"]))
    colours = sns.color_palette("viridis", len(layers))
    for colour, layer in zip(colours, layers, strict=True):
        part = frame[frame["layer"] == layer]
        ax.plot(part["step"], part["value"], color=colour, lw=1.5, label=layer)
    value_scale(ax, frame["value"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, title="layer i", ncols=2 if len(layers) > 4 else 1)


def residual_curves(data: TaskData, folder: Path, stem: str) -> list[str]:
    """ADMM beside BCD and dlADMM: the links' residual and the training error against
    the epoch, and the residual per layer at the end, one colour per method."""
    chosen = {}
    for comp in data.competitors(GRADIENT_FREE):
        best = _deepest(data.of(comp))
        if best is not None:
            chosen[comp] = best
    if len(chosen) < 2:
        raise NothingToDraw("needs finished runs of two or more of ADMM, BCD and dlADMM")
    totals = {c: _total_residual(data, row) for c, row in chosen.items()}
    if all(t.empty for t in totals.values()):
        raise NothingToDraw("the per-layer residuals (residual/layer_i) were not recorded")
    colours = palette(chosen)
    with theme():
        fig, axes = new_figure(3, width=5.2)
        for comp, row in chosen.items():
            label = f"{comp}, ({_depth(row)}, {int(row['width'])})"
            total = totals[comp]
            axes[0].plot(total.index, total.to_numpy(), color=colours[comp], lw=1.6, label=label)
            train = data.mean_history(row, "train_mse")
            axes[1].plot(train.index, train.to_numpy(), color=colours[comp], lw=1.6, label=label)
            last = _last_per_layer(data, row)
            axes[2].plot(last.index, last.to_numpy(), color=colours[comp], marker="o", label=label)
        axes[0].set_ylabel(r"residual $\|r\| = (\sum_i \|r_i\|_F^2)^{1/2}$")
        axes[0].set_title("links' residual (mean over trials)")
        axes[1].set_ylabel("training MSE")
        axes[1].set_title("training error (mean over trials)")
        axes[2].set_ylabel(r"$\|r_i\|_F = \|\sigma(W_i\tilde{V}_{i-1}) - V_i\|_F$, last epoch")
        axes[2].set_xlabel("layer i (the last: output)")
        axes[2].set_title("residual per layer at the end")
        for ax, key in zip(axes, ("total", "train", "last"), strict=True):
            value_scale(ax, [v for line in ax.get_lines() for v in line.get_ydata()])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if key != "last":
                ax.set_xlabel("epoch (ADMM, dlADMM: iteration; BCD: sweep)")
        _legend(axes[2], outside=True, title="method, (depth, width)")
        fig.suptitle(
            f"{data.dataset}: do the gradient-free methods satisfy the links?", fontsize=11
        )
        return save(fig, folder, stem)


def _total_residual(data: TaskData, row: pd.Series) -> pd.Series:
    """``‖r‖`` against epoch: per trial the root of the layers' squared residuals, then
    the mean over the setting's finished trials."""
    runs = data.ok_trials(row.to_frame().T)["run_id"]
    per_trial = []
    for run in runs:
        layers = [
            pd.Series(dict(data.histories.get(run, f"residual/layer_{i}")))
            for i in range(1, _depth(row) + 2)
        ]
        if all(len(s) for s in layers):
            per_trial.append(np.sqrt(sum(s.pow(2) for s in layers)))
    if not per_trial:
        return pd.Series(dtype=float)
    return pd.concat(per_trial, axis=1).mean(axis=1).sort_index()


def _last_per_layer(data: TaskData, row: pd.Series) -> pd.Series:
    """Each layer's residual at the last recorded epoch, mean over trials, by layer i."""
    values = {}
    for i in range(1, _depth(row) + 2):
        series = data.mean_history(row, f"residual/layer_{i}")
        if not series.empty:
            values[i] = series.iloc[-1]
    return pd.Series(values, dtype=float)


def admm_convergence(data: TaskData, folder: Path, stem: str) -> list[str]:
    """ADMM's augmented Lagrangian, residuals and training error against iteration."""
    chosen = _convergence_settings(data)
    if chosen.empty:
        raise NothingToDraw("no ADMM run finished")
    best = chosen.sort_values(["error_mean", "setting_key"]).iloc[0]
    residuals = _layer_curves(data, best, "residual")
    with theme():
        fig, axes = new_figure(3, width=5.2)
        colours = sns.color_palette("flare", len(chosen))
        _setting_curves(axes[0], data, chosen, "aug_lagrangian", colours)
        axes[0].set_ylabel(r"augmented Lagrangian $\mathcal{L}$")
        axes[0].set_title("augmented Lagrangian")
        if residuals.empty:
            note(axes[1], "residual/layer_i not recorded")
        else:
            _plot_layers(axes[1], residuals)
        axes[1].set_ylabel(r"constraint residual $\|\sigma(W_i\tilde{V}_{i-1}) - V_i\|_F$")
        axes[1].set_title(f"residual per layer\n{best['competitor']}: {best['label']}", fontsize=9)
        _setting_curves(axes[2], data, chosen, "train_mse", colours)
        axes[2].set_ylabel("training MSE")
        axes[2].set_title("training error")
        for ax in axes:
            ax.set_xlabel("iteration")
        _legend(axes[2], outside=True, title="mean over trials")
        fig.suptitle(f"{data.dataset}: ADMM convergence", fontsize=11)
        return save(fig, folder, stem)


def _convergence_settings(data: TaskData) -> pd.DataFrame:
    """Finished ADMM settings: one per depth (others at baseline), at most a handful."""
    parts = []
    for comp in data.competitors(["admm"]):
        rows = slice_through(data.of(comp), {"depth"})
        parts.append(rows[rows["n"] > 0])
    chosen = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if chosen.empty:
        return chosen
    chosen = chosen.sort_values(["competitor", "depth", "setting_key"], ignore_index=True)
    return chosen.head(MAX_CURVES)


def _setting_curves(
    ax: Axes, data: TaskData, chosen: pd.DataFrame, key: str, colours: list
) -> None:
    several = chosen["competitor"].nunique() > 1
    values: list[float] = []
    for colour, (_, row) in zip(colours, chosen.iterrows(), strict=True):
        series = data.mean_history(row, key)
        if series.empty:
            continue
        label = f"{row['competitor']}, {row['label']}" if several else row["label"]
        ax.plot(series.index, series.to_numpy(), color=colour, lw=1.6, label=label)
        values += list(series)
    if not values:
        note(ax, f"{key} not recorded")
    value_scale(ax, values)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
