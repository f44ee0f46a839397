"""Open-loop replay as an asynchronous controller runs a policy (`gr00t-eval latency_steps=j`).

The robot executes `k` steps of every chunk (`action_horizon`, by default the embodiment's chunk
length), counted from the step the chunk was requested at. Inference takes `j` steps, so each new
chunk is requested `j` steps before the current one runs out: chunk i is requested at
``s_i = s_{i−1} + k − j`` (s_0 = 0) with the observation of step s_i, and the j actions of steps
s_i … s_i+j−1 — already committed, the current chunk's — are frozen: they are sent as the RTC
prefix (``frozen_steps = j``, `gr00t.model.rtc`; ``prev_actions`` = those j executed actions
followed by the rest of the current chunk's plan, which guidance mode may use as overlap). The new
chunk takes over at step s_i + j and runs its indices j … k−1. The first chunk runs from its
index 0. ``j = 0`` is the synchronous controller (queries every k steps, no prefix).

Executed actions are compared with the recorded ones (MSE/MAE, as the plain replay). At every
chunk boundary the jump ``|first new action − last executed action|`` is measured per dimension
(in the dataset's units), next to two scales: the recorded actions' own step ``|a_t − a_{t−1}|``
at the same places (what a smooth controller should stay near) and the policy's own step between
consecutive actions inside its chunks (``inner_step``; a jump above it is a boundary effect, not
general jitter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gr00t.eval.samples import observation_from_sample, sample_task
from gr00t.policy.base import Policy


def query_plan(length: int, horizon: int, k: int, j: int, max_steps: int | None) -> list[int]:
    """Request steps s_0 = 0, s_i = s_{i−1} + k − j whose chunk window fits the episode (and
    `max_steps`)."""
    if not 1 <= k <= horizon:
        raise ValueError(f"action_horizon={k}: expected 1..{horizon} (the embodiment's chunk length)")
    if not 0 <= j < k:
        raise ValueError(f"latency_steps={j}: expected 0..{k - 1} (less than the {k} steps run per chunk)")
    last = length - horizon
    if max_steps is not None:
        last = min(last, int(max_steps) - k)
    return list(range(0, last + 1, k - j))


def replay_with_latency(
    policy: Policy,
    dataset: Any,
    episode: int,
    latency_steps: int,
    action_horizon: int | None = None,
    max_steps: int | None = None,
    seed: int | None = 0,
    rtc_mode: str | None = None,
) -> dict[str, Any]:
    """Replay one episode; returns ``query_steps``, ``predicted`` / ``ground_truth`` (executed and
    recorded actions per key, ``[N, D]``), ``task``, ``boundary_jump`` and ``ground_truth_step`` (per key,
    ``[boundaries, D]``) and ``inner_step`` (per key, ``[steps, D]``: executed steps inside chunks)."""
    emb = dataset.embodiment
    horizon = emb.action_horizon
    k = horizon if action_horizon is None else int(action_horizon)
    j = int(latency_steps)
    length = dataset.episode_lengths[dataset.episode_indices.index(episode)]
    queries = query_plan(length, horizon, k, j, max_steps)
    if not queries:
        raise ValueError(f"episode {episode} ({length} steps) is too short for one {horizon}-step chunk")
    keys = list(emb.action.keys)
    executed: dict[str, list[np.ndarray]] = {key: [] for key in keys}  # one row per executed step
    truth: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    jumps: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    gt_steps: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    inner: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    chunk: dict[str, np.ndarray] = {}
    task = ""
    for i, step in enumerate(queries):
        sample = dataset.sample(episode, step)
        task = task or sample_task(sample)
        options: dict[str, Any] = {} if seed is None else {"seed": int(seed) + i}
        first = 0 if i == 0 else j
        if i > 0 and j > 0:
            options["rtc"] = _rtc_option(executed, chunk, step, k, j, rtc_mode)
        chunk = _ask(policy, sample, options, keys, k, emb.language.keys)
        recorded = {key: np.asarray(sample["action"][key], dtype=np.float32) for key in keys}
        for key in keys:
            if i > 0:  # boundary: step + first is the first step this chunk executes
                jumps[key].append(np.abs(chunk[key][first] - executed[key][step + first - 1]))
                gt_steps[key].append(np.abs(recorded[key][first] - truth[key][step + first - 1]))
            executed[key].extend(chunk[key][first:k])
            inner[key].extend(np.abs(np.diff(chunk[key][first:k], axis=0)))
            truth[key].extend(recorded[key][first:k])
    return {
        "query_steps": queries,
        "predicted": {key: np.stack(v) for key, v in executed.items()},
        "ground_truth": {key: np.stack(v) for key, v in truth.items()},
        "boundary_jump": {key: _rows(v, chunk[key].shape[-1]) for key, v in jumps.items()},
        "ground_truth_step": {key: _rows(v, chunk[key].shape[-1]) for key, v in gt_steps.items()},
        "inner_step": {key: _rows(v, chunk[key].shape[-1]) for key, v in inner.items()},
        "task": task,
    }


def _rows(values: list[np.ndarray], dim: int) -> np.ndarray:
    return np.stack(values) if values else np.zeros((0, dim), dtype=np.float32)


def _rtc_option(
    executed: Mapping[str, list[np.ndarray]],
    chunk: Mapping[str, np.ndarray],
    step: int,
    k: int,
    j: int,
    mode: str | None,
) -> dict[str, Any]:
    """The frozen prefix (steps step … step+j−1, already executed) and the current chunk's remaining
    plan after it, as absolute ``[1, steps, D]`` arrays per key."""
    prev = {}
    for key, rows in executed.items():
        frozen = np.stack(rows[step : step + j])
        rest = chunk[key][k:]  # the current chunk's plan beyond what it executes
        prev[key] = np.concatenate([frozen, rest])[None]
    plan = next(iter(prev.values())).shape[1]
    option: dict[str, Any] = {"prev_actions": prev, "frozen_steps": j, "overlap_steps": plan - j}
    if mode is not None:
        option["mode"] = mode
    return option


def _ask(
    policy: Policy,
    sample: Mapping[str, Any],
    options: Mapping[str, Any],
    keys: Sequence[str],
    k: int,
    language_keys: Sequence[str],
) -> dict[str, np.ndarray]:
    action = policy.get_action(observation_from_sample(sample, language_keys[0]), options or None)
    if not isinstance(action, Mapping):
        raise TypeError(f"policy returned {type(action).__name__}, expected an action dict")
    out = {}
    for key in keys:
        if key not in action:
            raise KeyError(f"policy answer lacks action key {key!r} (got {sorted(action)})")
        arr = np.asarray(action[key], dtype=np.float32)
        if arr.ndim != 3 or arr.shape[0] != 1 or arr.shape[1] < k:
            raise ValueError(f"action {key!r}: expected [1, >={k}, D], got {arr.shape}")
        out[key] = arr[0]
    return out


def boundary_metrics(episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean boundary jump per key and over all keys, next to the recorded actions' own step there and
    the policy's step inside chunks: ``{"boundaries", "mean", "ground_truth_step", "inner_step",
    "per_key": {key: {"mean", "ground_truth_step", "inner_step"}}}``."""
    keys = list(episodes[0]["boundary_jump"])
    names = {"mean": "boundary_jump", "ground_truth_step": "ground_truth_step", "inner_step": "inner_step"}
    arrays = {
        name: {key: np.concatenate([e[field][key] for e in episodes]) for key in keys}
        for name, field in names.items()
    }
    count = len(arrays["mean"][keys[0]])
    if count == 0:
        return {"boundaries": 0, **{name: None for name in names}, "per_key": {}}

    def mean(values: Any) -> float:
        return float(np.mean(np.concatenate([a.ravel() for a in values]))) if len(values) else float("nan")

    return {
        "boundaries": int(count),
        **{name: mean(list(per_key.values())) for name, per_key in arrays.items()},
        "per_key": {key: {name: mean([arrays[name][key]]) for name in names} for key in keys},
    }
