"""Small synthetic LeRobot v3.0 datasets for every entry of a data mixture (`gr00t-demo-data --mixture`).

Each entry gets a dataset at its path (relative paths under the given root) with its embodiment's
keys: one mp4 per camera, `observation.state` / `action` columns whose `meta/modality.json` slices
name the embodiment's state and action groups, and the annotation column of its language key.
Group widths follow the public reference metadata of the shipped robots (`GROUP_WIDTHS`); a group
not listed there is one number wide. Trajectories are smooth random curves, frames a moving blob
(real h264 video, the encoder of `gr00t.data.demo`). This is how a mixture is smoke-tested
before pointing it at real data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gr00t import atomic
from gr00t.data.demo import FPS, _numeric_stats, _vector_array, _write_json
from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.video_encode import encode_video

# (embodiment tag, group key) -> width, for groups wider than one number (state and action alike).
GROUP_WIDTHS: dict[tuple[str, str], int] = {
    **{
        ("unitree_g1", k): w
        for k, w in {
            "left_leg": 6,
            "right_leg": 6,
            "waist": 3,
            "left_arm": 7,
            "right_arm": 7,
            "left_hand": 7,
            "right_hand": 7,
            "navigate_command": 3,
        }.items()
    },  # fmt: skip
    **{
        ("gr1", k): w
        for k, w in {"left_arm": 7, "right_arm": 7, "left_hand": 6, "right_hand": 6, "waist": 3}.items()
    },  # fmt: skip
    ("oxe_droid", "joint_position"): 7,
    **{
        ("behavior_r1_pro", k): w
        for k, w in {
            "robot_pos": 3,
            "robot_ori_cos": 3,
            "robot_ori_sin": 3,
            "robot_lin_vel": 3,
            "robot_ang_vel": 3,
            "arm_left_qpos": 7,
            "arm_left_qpos_sin": 7,
            "arm_left_qpos_cos": 7,
            "eef_left_pos": 3,
            "eef_left_quat": 4,
            "gripper_left_qpos": 2,
            "arm_right_qpos": 7,
            "arm_right_qpos_sin": 7,
            "arm_right_qpos_cos": 7,
            "eef_right_pos": 3,
            "eef_right_quat": 4,
            "gripper_right_qpos": 2,
            "trunk_qpos": 4,
            "base": 3,
            "torso": 4,
            "left_arm": 7,
            "right_arm": 7,
        }.items()
    },  # fmt: skip
}
TASKS = ("pick up the cup", "open the drawer")
SIZE = 64  # frame height and width


def group_width(embodiment: EmbodimentConfig, key: str) -> int:
    """Width of a state/action group: the table's, else a relative action's state group's, else 1."""
    width = GROUP_WIDTHS.get((embodiment.tag, key))
    if width is None and key in embodiment.action.keys:
        group = embodiment.action.group(key)
        if group.rep == "relative":
            width = GROUP_WIDTHS.get((embodiment.tag, group.state_key or key))
    return width or 1


def _slices(keys: Sequence[str], widths: Sequence[int]) -> dict[str, dict[str, int]]:
    out, start = {}, 0
    for key, width in zip(keys, widths):
        out[key] = {"start": start, "end": start + width}
        start += width
    return out


def modality(embodiment: EmbodimentConfig) -> dict:
    """`meta/modality.json` of the synthetic dataset of `embodiment`."""
    state_keys, action_keys = embodiment.state.keys, embodiment.action.keys
    return {
        "state": _slices(state_keys, [group_width(embodiment, k) for k in state_keys]),
        "action": _slices(action_keys, [group_width(embodiment, k) for k in action_keys]),
        "video": {cam: {"original_key": f"observation.images.{cam}"} for cam in embodiment.video.keys},
        "annotation": {k.removeprefix("annotation."): {} for k in embodiment.language.keys},
    }


def _frames(rng: np.random.Generator, length: int) -> list[np.ndarray]:
    """A blob of a random colour wandering over a fixed background."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    background = np.stack([xs * 2 % 255, ys * 3 % 255, np.full_like(xs, 90)], axis=-1)
    path = np.cumsum(rng.normal(0, 2.0, size=(length, 2)), axis=0) + SIZE / 2
    colour = rng.uniform(40, 220, size=3)
    frames = []
    for cx, cy in path:
        blob = (np.hypot(xs - cx % SIZE, ys - cy % SIZE) < SIZE / 6)[..., None]
        frames.append(np.where(blob, colour, background).astype(np.uint8))
    return frames


def write_embodiment_dataset(
    root: str | Path, embodiment: EmbodimentConfig, episodes: int = 2, length: int = 48, seed: int = 0
) -> Path:
    """Write a LeRobot v3.0 dataset for `embodiment` at `root` (atomically; replaces nothing)."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty")
    if length <= embodiment.action_horizon:
        raise ValueError(
            f"length={length}: episodes must be longer than the action horizon {embodiment.action_horizon}"
        )
    meta = modality(embodiment)
    state_dim = max(s["end"] for s in meta["state"].values())
    action_dim = max(s["end"] for s in meta["action"].values())
    rng = np.random.default_rng(seed)
    cameras = [f"observation.images.{cam}" for cam in embodiment.video.keys]
    lang_columns = list(embodiment.language.keys)
    with atomic.atomic_dir(root) as tmp:
        states, actions, rows, frames = [], [], [], {c: [] for c in cameras}
        for ep in range(episodes):
            t = np.linspace(0, 1, length + 1)[:, None]
            traj = np.sin(2 * np.pi * (t * rng.uniform(0.3, 1.0, state_dim) + rng.uniform(0, 1, state_dim)))
            states.append(traj[:-1].astype(np.float32))
            act = np.sin(2 * np.pi * (t * rng.uniform(0.3, 1.0, action_dim) + rng.uniform(0, 1, action_dim)))
            actions.append(act[1:].astype(np.float32))
            for cam in cameras:
                frames[cam].extend(_frames(rng, length))
            rows.append({"episode_index": ep, "tasks": [TASKS[ep % len(TASKS)]], "length": length,
                         "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": ep * length,
                         "dataset_to_index": (ep + 1) * length, "meta/episodes/chunk_index": 0,
                         "meta/episodes/file_index": 0,
                         **{f"videos/{c}/{k}": v for c in cameras for k, v in (
                             ("chunk_index", 0), ("file_index", 0), ("from_timestamp", ep * length / FPS),
                             ("to_timestamp", (ep + 1) * length / FPS))}})  # fmt: skip
        _write_tables(
            tmp, np.concatenate(states), np.concatenate(actions), rows, episodes, length, lang_columns
        )
        for cam in cameras:
            encode_video(tmp / f"videos/{cam}/chunk-000/file-000.mp4", frames[cam], FPS, codec="h264", gop=8)
        _write_json(
            tmp / "meta/info.json",
            _info(embodiment, cameras, lang_columns, state_dim, action_dim, episodes * length, episodes),
        )
        _write_json(tmp / "meta/modality.json", meta)
    return root


def _write_tables(
    root: Path,
    state: np.ndarray,
    action: np.ndarray,
    rows: list[dict],
    episodes: int,
    length: int,
    lang: list[str],
) -> None:
    import pandas as pd

    total = episodes * length
    task = np.repeat(np.arange(episodes) % len(TASKS), length)
    table = {
        "observation.state": _vector_array(state),
        "action": _vector_array(action),
        "timestamp": pa.array(np.tile(np.arange(length) / FPS, episodes).astype(np.float32)),
        "frame_index": pa.array(np.tile(np.arange(length), episodes)),
        "episode_index": pa.array(np.repeat(np.arange(episodes), length)),
        "index": pa.array(np.arange(total)),
        "task_index": pa.array(task),
        **{column: pa.array(task) for column in lang},
    }
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(table), root / "data/chunk-000/file-000.parquet")
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "meta/episodes/chunk-000/file-000.parquet", index=False)
    tasks = pd.DataFrame({"task_index": list(range(len(TASKS)))}, index=pd.Index(list(TASKS), name="task"))
    tasks.to_parquet(root / "meta/tasks.parquet")
    _write_json(
        root / "meta/stats.json",
        {"observation.state": _numeric_stats(state), "action": _numeric_stats(action)},
    )


def _info(embodiment: EmbodimentConfig, cameras: list[str], lang: list[str], state_dim: int, action_dim: int,
          frames: int, episodes: int) -> dict:  # fmt: skip
    video = {"video.height": SIZE, "video.width": SIZE, "video.codec": "h264", "video.pix_fmt": "yuv420p",
             "video.is_depth_map": False, "video.fps": FPS, "video.channels": 3, "has_audio": False}  # fmt: skip
    features: dict = {c: {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"],
                          "info": dict(video)} for c in cameras}  # fmt: skip
    features["observation.state"] = {"dtype": "float32", "shape": [state_dim], "names": None}
    features["action"] = {"dtype": "float32", "shape": [action_dim], "names": None}
    for name, dtype in [
        ("timestamp", "float32"),
        *[(c, "int64") for c in ("frame_index", "episode_index", "index", "task_index", *lang)],
    ]:
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return {"codebase_version": "v3.0", "robot_type": embodiment.tag, "total_episodes": episodes,
            "total_frames": frames, "total_tasks": len(TASKS), "chunks_size": 1000, "fps": FPS,
            "splits": {"train": f"0:{episodes}"}, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features}  # fmt: skip


def write_mixture_demo(
    mixture: str | Path, root: str | Path, episodes: int = 2, length: int = 48
) -> list[Path]:
    """A synthetic dataset for every entry of `mixture` (a name or a YAML path) at its path under `root`."""
    from gr00t.data.mixture import load_mixture

    loaded = load_mixture(mixture, data_root=root)
    written = []
    for index, entry in enumerate(loaded.entries):
        embodiment = load_embodiment(entry.embodiment)
        written.append(write_embodiment_dataset(entry.path, embodiment, episodes, length, seed=index))
    return written
