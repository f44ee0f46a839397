"""The loss-curve PNG of a run: smoothed and raw training loss, validation loss, learning rate.

Input is the run's log records (``<run_dir>/metrics.jsonl`` lines, or HF ``log_history``): dicts
with ``step`` and any of ``loss``, ``val_loss`` (``eval_loss`` as HF's evaluation names it),
``learning_rate``. A step logged twice (a run resumed from an older checkpoint logs some steps
again) keeps its last value. The training loss is drawn raw (faint) and smoothed with a
debiased exponential moving average whose weight grows with the number of points; the learning
rate goes on a second y axis. The loss axis is logarithmic when the loss spans more than 10x.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gr00t import atomic

VAL_KEYS = ("val_loss", "eval_loss")


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file; unreadable lines (a killed writer's last one) are skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def series(records: Iterable[Mapping], key: str | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the first present of ``key`` per record, by step; finite values only."""
    keys = (key,) if isinstance(key, str) else key
    by_step: dict[int, float] = {}
    for record in records:
        value = next((record[k] for k in keys if k in record), None)
        if "step" not in record or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if np.isfinite(value):
            by_step[int(record["step"])] = float(value)
    steps = np.asarray(sorted(by_step), dtype=np.int64)
    return steps, np.asarray([by_step[s] for s in steps], dtype=np.float64)


def ema_weight(n: int) -> float:
    """Smoothing weight for ``n`` points: a time constant of 2% of the run (at least 2 points), so
    ``1 - 1/max(2, n/50)``, at most 0.98; no smoothing under 20 points."""
    return float(min(0.98, 1.0 - 1.0 / max(2.0, n / 50.0))) if n >= 20 else 0.0


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average: ``s_t = w s_{t-1} + (1-w) x_t``, divided by ``1 - w^t``."""
    out = np.empty(len(values), dtype=np.float64)
    acc = 0.0
    for t, x in enumerate(values, start=1):
        acc = weight * acc + (1.0 - weight) * float(x)
        out[t - 1] = acc / (1.0 - weight**t) if weight > 0 else acc
    return out


def loss_curve_figure(records: list[Mapping], title: str = "", subtitle: str = "") -> Figure | None:
    """The figure, or None when no training loss was logged."""
    steps, loss = series(records, "loss")
    if len(steps) == 0:
        return None
    val_steps, val = series(records, VAL_KEYS)
    lr_steps, lr = series(records, "learning_rate")
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    weight = ema_weight(len(loss))
    marker = "." if len(steps) < 50 else None
    if weight > 0:
        ax.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="training loss (raw)")
        ax.plot(
            steps,
            ema(loss, weight),
            color="tab:blue",
            linewidth=1.6,
            label=f"training loss (EMA {weight:.2f})",
        )
    else:
        ax.plot(steps, loss, color="tab:blue", linewidth=1.4, marker=marker, label="training loss")
    if len(val_steps):
        ax.plot(
            val_steps, val, color="tab:red", linewidth=1.4, marker="o", markersize=4, label="validation loss"
        )
    values = np.concatenate([loss, val])
    if values.min() > 0 and values.max() / values.min() > 10:
        ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("flow-matching loss")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if len(lr_steps):
        ax_lr = ax.twinx()
        ax_lr.plot(lr_steps, lr, color="tab:green", linewidth=1.0, linestyle="--", label="learning rate")
        ax_lr.set_ylabel("learning rate", color="tab:green")
        ax_lr.tick_params(axis="y", colors="tab:green", labelsize=8)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax_lr.set_ylim(bottom=0)
        more_handles, more_labels = ax_lr.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    if title or subtitle:
        fig.suptitle("\n".join(t for t in (title, subtitle) if t), fontsize=10)
    return fig


def write_loss_curve(
    records: list[Mapping], path: str | Path, title: str = "", subtitle: str = ""
) -> Path | None:
    """Write the loss curve PNG atomically; returns the path (None if no training loss was logged)."""
    fig = loss_curve_figure(records, title, subtitle)
    if fig is None:
        return None
    path = Path(path)
    with atomic.atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    return path
