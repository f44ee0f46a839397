"""Open-loop evaluation (SPEC-N16 §4): replay recorded episodes through a policy.

For each episode the policy is queried at steps 0, k, 2k, … (k = `action_horizon`, by default the
embodiment's horizon) with the recorded observation of that step; the first k steps of each returned
chunk are compared with the recorded actions of the same steps. Steps after the last query whose
action window fits in the episode are not evaluated. Errors are in the dataset's own units
(absolute, un-normalised): MSE and MAE per action key, per dimension (named with the dataset's
joint names where meta/info.json has them, see `gr00t.eval.joint_names`), and over all keys.

The policy is any `gr00t.policy.base.Policy`: a local `Gr00tPolicy` or a `PolicyClient` talking to
`gr00t-serve`; both answer ``get_action(observation, options)`` with the action dict.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gr00t import atomic
from gr00t.eval.joint_names import dataset_dim_names
from gr00t.eval.latency_replay import boundary_metrics, replay_with_latency
from gr00t.eval.plots import plot_episode
from gr00t.eval.samples import observation_from_sample, sample_task
from gr00t.policy.base import Policy

logger = logging.getLogger(__name__)


@dataclass
class EpisodeResult:
    """Predicted and recorded actions of one episode, `[N, D]` per key, and where the policy was queried."""

    episode_index: int
    query_steps: list[int]
    predicted: dict[str, np.ndarray]
    ground_truth: dict[str, np.ndarray]
    task: str = ""
    plot: Path | None = None
    # latency replay only (gr00t.eval.latency_replay): per key [boundaries, D]
    boundary_jump: dict[str, np.ndarray] | None = None
    ground_truth_step: dict[str, np.ndarray] | None = None
    inner_step: dict[str, np.ndarray] | None = None

    @property
    def num_steps(self) -> int:
        return len(next(iter(self.ground_truth.values())))


@dataclass
class OpenLoopReport:
    """Per-episode results and the aggregate errors; ``source`` names the policy (checkpoint or server)."""

    episodes: list[EpisodeResult]
    action_horizon: int
    metrics: dict[str, Any] = field(default_factory=dict)
    dim_names: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    dataset: str = ""
    embodiment: str = ""
    latency_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dataset": self.dataset,
            "embodiment": self.embodiment,
            "action_horizon": self.action_horizon,
            "latency_steps": self.latency_steps,
            "metrics": self.metrics,
            "episodes": [
                {
                    "episode_index": e.episode_index,
                    "task": e.task,
                    "num_steps": e.num_steps,
                    "query_steps": e.query_steps,
                    "metrics": error_metrics(e.predicted, e.ground_truth, self.dim_names),
                    "plot": str(e.plot) if e.plot else None,
                }
                for e in self.episodes
            ],
        }


def error_metrics(
    predicted: Mapping[str, np.ndarray],
    ground_truth: Mapping[str, np.ndarray],
    dim_names: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """``{"per_key": {key: {mse, mae, mse_per_dim, mae_per_dim[, names]}}, "mse": all keys, "mae": all keys}``.

    ``names`` (one per dimension, aligned with the per-dim lists) is there when ``dim_names`` has the key.
    """
    per_key: dict[str, Any] = {}
    sq_all, abs_all = [], []
    for key, gt in ground_truth.items():
        pred = np.asarray(predicted[key], dtype=np.float64)
        gt = np.asarray(gt, dtype=np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f"action key {key!r}: predicted {pred.shape} vs ground truth {gt.shape}")
        err = pred - gt
        per_key[key] = {
            "mse": float(np.mean(err**2)),
            "mae": float(np.mean(np.abs(err))),
            "mse_per_dim": np.mean(err**2, axis=0).tolist(),
            "mae_per_dim": np.mean(np.abs(err), axis=0).tolist(),
        }
        names = (dim_names or {}).get(key)
        if names is not None and len(names) == err.shape[1]:
            per_key[key]["names"] = list(names)
        sq_all.append((err**2).ravel())
        abs_all.append(np.abs(err).ravel())
    return {
        "per_key": per_key,
        "mse": float(np.mean(np.concatenate(sq_all))),
        "mae": float(np.mean(np.concatenate(abs_all))),
    }


def evaluate_episode(
    policy: Policy,
    dataset: Any,
    episode: int,
    action_horizon: int | None = None,
    max_steps: int | None = None,
    seed: int | None = 0,
) -> EpisodeResult:
    """Replay one episode of a `Gr00tDataset`, querying every `action_horizon` steps."""
    emb = dataset.embodiment
    horizon = emb.action_horizon
    k = horizon if action_horizon is None else int(action_horizon)
    if not 1 <= k <= horizon:
        raise ValueError(f"action_horizon={k}: expected 1..{horizon} (the embodiment's chunk length)")
    if list(emb.action.delta_indices) != list(range(horizon)):
        raise ValueError(
            f"open-loop evaluation needs action delta_indices 0..{horizon - 1}, got {emb.action.delta_indices}"
        )
    pos = dataset.episode_indices.index(episode)
    length = dataset.episode_lengths[pos]
    last_query = length - horizon
    if max_steps is not None:
        last_query = min(last_query, int(max_steps) - k)
    queries = list(range(0, last_query + 1, k))
    if not queries:
        raise ValueError(f"episode {episode} ({length} steps) is too short for one {horizon}-step chunk")
    preds: dict[str, list[np.ndarray]] = {key: [] for key in emb.action.keys}
    truth: dict[str, list[np.ndarray]] = {key: [] for key in emb.action.keys}
    task = ""
    for i, step in enumerate(queries):
        sample = dataset.sample(episode, step)
        task = task or sample_task(sample)
        obs = observation_from_sample(sample, emb.language.keys[0])
        options = None if seed is None else {"seed": int(seed) + i}
        action = policy.get_action(obs, options)
        if not isinstance(action, Mapping):
            raise TypeError(f"policy returned {type(action).__name__}, expected an action dict")
        for key in emb.action.keys:
            if key not in action:
                raise KeyError(f"policy answer lacks action key {key!r} (got {sorted(action)})")
            chunk = np.asarray(action[key], dtype=np.float32)
            if chunk.ndim != 3 or chunk.shape[0] != 1 or chunk.shape[1] < k:
                raise ValueError(f"action {key!r}: expected [1, >={k}, D], got {chunk.shape}")
            preds[key].append(chunk[0, :k])
            truth[key].append(np.asarray(sample["action"][key], dtype=np.float32)[:k])
    return EpisodeResult(
        episode_index=episode,
        query_steps=queries,
        predicted={key: np.concatenate(v) for key, v in preds.items()},
        ground_truth={key: np.concatenate(v) for key, v in truth.items()},
        task=task,
    )


def run_open_loop(
    policy: Policy,
    dataset: Any,
    episodes: Sequence[int] | None = None,
    action_horizon: int | None = None,
    max_steps: int | None = None,
    plot_dir: str | Path | None = None,
    seed: int | None = 0,
    source: str = "",
    latency_steps: int | None = None,
    rtc_mode: str | None = None,
) -> OpenLoopReport:
    """Evaluate several episodes (default: all) and aggregate their errors over every evaluated step.

    ``source`` names the policy (checkpoint folder or server address) in the plots and the report.
    With `latency_steps` the replay is asynchronous (`gr00t.eval.latency_replay`): chunks are asked
    for that many steps early with the executed prefix frozen (RTC `rtc_mode`, None: the model's
    default), and ``metrics["boundary_jump"]`` reports the jump at chunk boundaries.
    """
    chosen = list(dataset.episode_indices if episodes is None else episodes)
    unknown = sorted(set(chosen) - set(dataset.episode_indices))
    if unknown:
        raise ValueError(f"episodes {unknown} are not in {dataset.root} (usable: {dataset.episode_indices})")
    names = dataset_dim_names(dataset)
    horizon = dataset.embodiment.action_horizon if action_horizon is None else int(action_horizon)
    results = []
    for ep in chosen:
        if latency_steps is None:
            res = evaluate_episode(policy, dataset, ep, action_horizon, max_steps, seed)
        else:
            replay = replay_with_latency(
                policy, dataset, ep, latency_steps, action_horizon, max_steps, seed, rtc_mode
            )
            res = EpisodeResult(episode_index=ep, **replay)
        m = error_metrics(res.predicted, res.ground_truth)
        if plot_dir is not None:
            res.plot = plot_episode(
                res.predicted,
                res.ground_truth,
                res.query_steps,
                Path(plot_dir) / f"episode_{ep:06d}.png",
                dim_names=names,
                header=episode_header(source, dataset, res, horizon, m),
            )
        logger.info("episode %d: %d steps, MSE %.6g, MAE %.6g", ep, res.num_steps, m["mse"], m["mae"])
        results.append(res)
    keys = list(results[0].ground_truth)
    metrics = error_metrics(
        {k: np.concatenate([r.predicted[k] for r in results]) for k in keys},
        {k: np.concatenate([r.ground_truth[k] for r in results]) for k in keys},
        names,
    )
    if latency_steps is not None:
        metrics["boundary_jump"] = boundary_metrics([vars(r) for r in results])
    return OpenLoopReport(
        results,
        horizon,
        metrics,
        dim_names={k: names[k] for k in keys if k in names},
        source=source,
        dataset=str(dataset.root),
        embodiment=str(dataset.embodiment.tag),
        latency_steps=latency_steps,
    )


def episode_header(
    source: str, dataset: Any, result: EpisodeResult, horizon: int, metrics: Mapping[str, Any]
) -> list[str]:
    """The header lines of an episode's plot: policy, dataset and episode, task, overall errors."""
    first = f"{short_path(source)}  |  " if source else ""
    return [
        f"{first}{short_path(str(dataset.root))} episode {result.episode_index}",
        f"task: {result.task!r}" if result.task else "",
        f"{result.num_steps} steps, policy queried every {horizon} steps  |  all dims: "
        f"MSE {metrics['mse']:.4g}  MAE {metrics['mae']:.4g}",
    ]


def short_path(text: str, keep: int = 3, limit: int = 60) -> str:
    """``text`` itself, or its last ``keep`` path components after an ellipsis when longer than ``limit``."""
    if len(text) <= limit or "/" not in text:
        return text
    return "…/" + "/".join(Path(text).parts[-keep:])


def format_report(report: OpenLoopReport) -> str:
    """The report as text: errors per action key, then per dimension (by name), then over all keys."""
    lines = [
        f"open-loop evaluation of {report.source or 'the policy'}: {len(report.episodes)} episode(s), "
        f"query every {report.action_horizon} steps (errors in the dataset's units)"
    ]
    per_key = report.metrics["per_key"]
    width = max([20, *(len(n) + 2 for m in per_key.values() for n in m.get("names", []))])
    for key, m in per_key.items():
        lines.append(f"  {key:<{width}} MSE {m['mse']:<12.6g} MAE {m['mae']:.6g}")
        names = m.get("names") or [f"[{d}]" for d in range(len(m["mse_per_dim"]))]
        for name, mse, mae in zip(names, m["mse_per_dim"], m["mae_per_dim"]):
            lines.append(f"    {name:<{width - 2}} MSE {mse:<12.6g} MAE {mae:.6g}")
    lines.append(f"  {'all':<{width}} MSE {report.metrics['mse']:<12.6g} MAE {report.metrics['mae']:.6g}")
    jump = report.metrics.get("boundary_jump")
    if jump and jump["boundaries"]:
        lines.append(
            f"  chunk boundaries (latency {report.latency_steps} steps): {jump['boundaries']}, mean jump "
            f"{jump['mean']:.6g} (recorded step there {jump['ground_truth_step']:.6g}, policy step inside "
            f"chunks {jump['inner_step']:.6g})"
        )
    return "\n".join(lines)


def write_report(report: OpenLoopReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically)."""
    return atomic.write_json(path, report.to_dict())
