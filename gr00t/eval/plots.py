"""Predicted-vs-ground-truth action plots for open-loop evaluation (matplotlib Agg, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gr00t import atomic


def plot_episode(
    predicted: Mapping[str, np.ndarray],
    ground_truth: Mapping[str, np.ndarray],
    query_steps: Sequence[int],
    path: str | Path,
    title: str = "",
) -> Path:
    """One PNG: a subplot per (action key, dimension) with ground truth, prediction and markers where
    the policy was queried. Arrays are `[T, D]` per key. Written atomically; returns the path."""
    path = Path(path)
    rows = []
    for key, gt in ground_truth.items():
        if key not in predicted:
            raise ValueError(f"plot_episode: predicted actions lack key {key!r} (have {sorted(predicted)})")
        pred = np.asarray(predicted[key])
        gt = np.asarray(gt)
        if pred.shape != gt.shape or gt.ndim != 2:
            raise ValueError(f"plot_episode: key {key!r}: prediction {pred.shape} vs ground truth {gt.shape}")
        rows.extend((key, d, gt[:, d], pred[:, d]) for d in range(gt.shape[1]))
    if not rows:
        raise ValueError("plot_episode: nothing to plot")
    fig = Figure(figsize=(8, 1.6 * len(rows) + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, d, gt_d, pred_d) in zip(axes, rows):
        steps = np.arange(len(gt_d))
        ax.plot(steps, gt_d, label="ground truth", color="tab:blue", linewidth=1.2)
        ax.plot(steps, pred_d, label="predicted", color="tab:orange", linewidth=1.0, linestyle="--")
        q = np.asarray([s for s in query_steps if 0 <= s < len(gt_d)], dtype=int)
        ax.plot(q, pred_d[q], "o", color="tab:red", markersize=3.5, label="query")
        ax.set_ylabel(f"{key}[{d}]", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1].set_xlabel("step")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic.atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80)
    return path
