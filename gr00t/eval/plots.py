"""Predicted-vs-ground-truth action plots for open-loop evaluation (matplotlib Agg, no pyplot state).

One PNG per episode: a header (checkpoint, episode, task, overall errors), one legend under it,
then one panel per action dimension, titled with the dimension's name and its MSE, laid out in a
grid whose width grows with the number of dimensions (29 dimensions: 4 columns of 8 rows).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gr00t import atomic

PANEL_W, PANEL_H = 3.6, 1.9  # inches per panel
MIN_FIG_W = 8.0
HEADER_LINE_H = 0.23  # inches per header line
LEGEND_H = 0.35
CHARS_PER_INCH = 13  # of a 9 pt header line
DPI = 100


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) for ``n`` panels: one column up to 3, then about twice as many rows as columns."""
    if n <= 3:
        return n, 1
    cols = min(5, max(2, math.ceil(math.sqrt(n / 2))))
    return math.ceil(n / cols), cols


def _panels(
    predicted: Mapping[str, np.ndarray],
    ground_truth: Mapping[str, np.ndarray],
    dim_names: Mapping[str, Sequence[str]] | None,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, ground truth [T], prediction [T]) per dimension; labels are unique."""
    rows = []
    for key, gt in ground_truth.items():
        if key not in predicted:
            raise ValueError(f"plot_episode: predicted actions lack key {key!r} (have {sorted(predicted)})")
        pred, gt = np.asarray(predicted[key]), np.asarray(gt)
        if pred.shape != gt.shape or gt.ndim != 2:
            raise ValueError(f"plot_episode: key {key!r}: prediction {pred.shape} vs ground truth {gt.shape}")
        names = list((dim_names or {}).get(key) or [])
        if len(names) != gt.shape[1]:
            names = [f"{key}[{d}]" for d in range(gt.shape[1])]
        rows.extend((key, names[d], gt[:, d], pred[:, d]) for d in range(gt.shape[1]))
    if not rows:
        raise ValueError("plot_episode: nothing to plot")
    counts: dict[str, int] = {}
    for _, name, _, _ in rows:
        counts[name] = counts.get(name, 0) + 1
    # names repeated across keys (x/y/z of two end effectors) get their key in front
    return [(name if counts[name] == 1 else f"{key}.{name}", gt, pred) for key, name, gt, pred in rows]


def plot_episode(
    predicted: Mapping[str, np.ndarray],
    ground_truth: Mapping[str, np.ndarray],
    query_steps: Sequence[int],
    path: str | Path,
    *,
    dim_names: Mapping[str, Sequence[str]] | None = None,
    header: Sequence[str] = (),
) -> Path:
    """Write `episode_figure` as a PNG (atomically); returns the path."""
    path = Path(path)
    _save_png(episode_figure(predicted, ground_truth, query_steps, dim_names=dim_names, header=header), path)
    return path


def episode_figure(
    predicted: Mapping[str, np.ndarray],
    ground_truth: Mapping[str, np.ndarray],
    query_steps: Sequence[int],
    *,
    dim_names: Mapping[str, Sequence[str]] | None = None,
    header: Sequence[str] = (),
) -> Figure:
    """The figure of one episode; arrays are `[T, D]` per key, ``dim_names`` ``{key: [D names]}``.

    Each panel shows the recorded and the predicted action of one dimension, the steps where the
    policy was queried, and that dimension's MSE in its title. ``header`` lines go on top.
    """
    panels = _panels(predicted, ground_truth, dim_names)
    rows, cols = grid_shape(len(panels))
    width = max(MIN_FIG_W, cols * PANEL_W)
    header = [part for line in header if line for part in textwrap.wrap(line, int(width * CHARS_PER_INCH))]
    head_h = len(header) * HEADER_LINE_H + LEGEND_H
    fig = Figure(figsize=(width, head_h + rows * PANEL_H), layout="constrained")
    FigureCanvasAgg(fig)
    # the header (title lines, then the legend) has its own strip, so the two can never overlap
    top, grid = fig.subfigures(2, 1, height_ratios=[head_h, rows * PANEL_H])
    axes = grid.subplots(rows, cols, sharex=True, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.remove()
            axes[index // cols - 1, index % cols].xaxis.set_tick_params(labelbottom=True)
            continue
        _draw_panel(ax, *panels[index], query_steps)
        if index + cols >= len(panels):  # nothing below: label the step axis
            ax.set_xlabel("step", fontsize=7)
    if header:
        top.text(0.5, 1.0, "\n".join(header), ha="center", va="top", fontsize=9, linespacing=1.5)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    top.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    return fig


def _draw_panel(ax, label: str, gt: np.ndarray, pred: np.ndarray, query_steps: Sequence[int]) -> None:
    steps = np.arange(len(gt))
    mse = float(np.mean((pred.astype(np.float64) - gt) ** 2))
    ax.plot(steps, gt, label="recorded", color="tab:blue", linewidth=1.3)
    ax.plot(steps, pred, label="predicted", color="tab:orange", linewidth=1.1, linestyle="--")
    q = np.asarray([s for s in query_steps if 0 <= s < len(gt)], dtype=int)
    ax.plot(q, pred[q], "o", color="tab:red", markersize=3, label="policy queried")
    ax.set_title(f"{label}   MSE {mse:.3g}", fontsize=8, loc="left")
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.25)


def _save_png(fig: Figure, path: Path) -> None:
    with atomic.atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
