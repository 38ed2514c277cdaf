"""One look for every report figure: theme, fixed competitor colours, scales, saving."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

# The paper's five columns, in its table order; the same colour in every figure.
PALETTE: dict[str, str] = {
    "SGD (ReLU)": "#1f77b4",
    "SGDM (ReLU)": "#17becf",
    "Adam (ReLU)": "#2ca02c",
    "SGD (sigmoid)": "#ff7f0e",
    "ADMM (sigmoid)": "#d62728",
}
COMPETITORS: tuple[str, ...] = tuple(PALETTE)
# Competitors outside the paper's five (e.g. "ADMM (tanh)") draw from these, by name order.
_SPARE = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
FAILED_MARKER = "x"
FAILED_COLOUR = "#444444"
DPI = 120
# A fixed salt makes the SVGs' element ids, and so the files, the same on every run.
SVG_RC = {"svg.hashsalt": "admmlab-report"}


def competitor_order(names: Iterable[str]) -> list[str]:
    """The paper's order first, then any others alphabetically."""
    present = set(names)
    return [c for c in COMPETITORS if c in present] + sorted(present - set(COMPETITORS))


def palette(names: Iterable[str]) -> dict[str, str]:
    """Colours for ``names``: fixed for the paper's five, stable for the rest."""
    extra = sorted(set(names) - set(PALETTE))
    spare = {n: _SPARE[i % len(_SPARE)] for i, n in enumerate(extra)}
    return {n: PALETTE.get(n) or spare[n] for n in competitor_order(names)}


@contextmanager
def theme() -> Iterator[None]:
    """The report's seaborn theme, applied only inside the block."""
    with (
        sns.axes_style("whitegrid"),
        sns.plotting_context("notebook", font_scale=0.9),
        plt.rc_context(SVG_RC),
    ):
        yield


def new_figure(
    ncols: int = 1, width: float = 6.4, height: float = 4.4, sharey: bool = False
) -> tuple[Figure, list[Axes]]:
    """A row of ``ncols`` panels, each ``width`` × ``height`` inches."""
    fig, axes = plt.subplots(
        1, ncols, figsize=(width * ncols, height), dpi=DPI, squeeze=False, sharey=sharey
    )
    return fig, list(axes[0])


def save(fig: Figure, folder: Path, stem: str, tight: bool = True) -> list[str]:
    """Write ``stem.png`` and ``stem.svg``; no dates inside, so re-runs give the same SVG.

    ``tight=False`` keeps a layout made elsewhere (Optuna places its own colour bars).
    """
    if tight:
        fig.tight_layout()
    # One layout pass finds the crop for both files; "tight" would draw once more per file.
    fig.draw_without_rendering()
    crop = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
    names = [f"{stem}.png", f"{stem}.svg"]
    fig.savefig(folder / names[0], dpi=DPI, bbox_inches=crop, metadata={"Software": None})
    fig.savefig(folder / names[1], bbox_inches=crop, metadata={"Date": None})
    plt.close(fig)
    return names


def spans_decades(values: Iterable[float], decades: float = 1.0) -> bool:
    """True when the positive finite values span more than ``decades`` powers of ten."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    return len(v) > 1 and np.log10(v.max() / v.min()) > decades


def value_scale(ax: Axes, values: Iterable[float], axis: str = "y") -> None:
    """Log for positive values spanning decades; symlog when signs mix (a Lagrangian)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if not len(v):
        return
    if (v > 0).all():
        if spans_decades(v):
            setter("log")
        return
    magnitude = np.abs(v[v != 0])
    if len(magnitude) and spans_decades(magnitude, 2.0):
        setter("symlog", linthresh=float(max(magnitude.min(), magnitude.max() * 1e-6)))


def parameter_scale(ax: Axes, values: Iterable[float]) -> None:
    """x axis: log for positive decade sweeps; symlog when 0 is among them (noise 0, 1e-3, …)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return
    positive = v[v > 0]
    if len(positive) == len(v) and spans_decades(v):
        ax.set_xscale("log")
    elif len(positive) and (v == 0).any() and spans_decades(positive):
        linthresh = float(positive.min())
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
        ax.set_xlim(-0.3 * linthresh, 1.4 * v.max())  # no empty negative decades left of 0


MARK_ROW = 0.11  # axes height per row of failure marks (marker and its label)


def mark_failed(
    ax: Axes, x: float, count: int, colour: str = FAILED_COLOUR, level: int = 0
) -> None:
    """An 'x' in the band above the data at ``x``, labelled with the failure count.

    ``level`` stacks the marks of several competitors failing at the same ``x``;
    :func:`headroom` makes the band.
    """
    trans = ax.get_xaxis_transform()  # x in data units, y in axes units
    y = 0.97 - MARK_ROW * level
    ax.plot(
        [x],
        [y],
        marker=FAILED_MARKER,
        color=colour,
        markersize=7,
        markeredgewidth=2,
        transform=trans,
        linestyle="none",
        clip_on=False,
    )
    ax.annotate(
        f"{count} failed",
        (x, y),
        xycoords=trans,
        xytext=(0, -6),
        textcoords="offset points",
        fontsize=7,
        color=colour,
        ha="center",
        va="top",
    )


def headroom(ax: Axes, levels: int) -> None:
    """Raise the top of the y axis so ``levels`` rows of failure marks hide no data."""
    if levels <= 0 or ax.get_yscale() not in ("log", "linear"):
        return
    share = min(0.6, MARK_ROW * levels + 0.03)
    low, high = ax.get_ylim()
    stretch = share / (1 - share)
    if ax.get_yscale() == "log":
        span = np.log10(high) - np.log10(low)
        ax.set_ylim(low, 10 ** (np.log10(high) + stretch * span))
    else:
        ax.set_ylim(low, high + stretch * (high - low))
    # A faint band, so the marks' values on the y axis are not read as errors.
    ax.add_patch(
        Rectangle(
            (0, 1 - share),
            1,
            share,
            transform=ax.transAxes,
            facecolor="#eeeeee",
            edgecolor="none",
            zorder=0.5,
        )
    )


def note(ax: Axes, text: str) -> None:
    """A small grey note in the lower left corner of a panel."""
    ax.text(
        0.01,
        0.01,
        text,
        transform=ax.transAxes,
        fontsize=7,
        color="#555555",
        va="bottom",
        ha="left",
    )
