"""A deterministic demo dataset for the "new robot" (LeRobot v2.1 or v3.0 layout, real mp4 video).

The robot has a 6-joint arm and a gripper, two cameras (`front`, `wrist`) and a handful of
tasks. Each camera shows a coloured blob whose position follows the arm joints and whose size
follows the gripper, so images carry real information about the state. The top 16 pixel rows
of every frame hold two bar codes (frame index, episode index) that survive compression:
`read_frame_code(frame)` recovers them, which lets tests check that the right frame was decoded.

With `subtasks=True` every frame also carries a sub-task label (`annotation.human.subtask`, an index
into the task table, which then lists the sub-task texts after the tasks): "reach ..." until the
gripper closes, then the task's second phase — a switch in the middle of each episode. The
`new_embodiment_subtask` embodiment reads both channels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gr00t import atomic
from gr00t.data.video_encode import encode_video, resolve_encoder

EMBODIMENT = "new_embodiment"
FPS = 15
IMAGE_HEIGHT = 96
IMAGE_WIDTH = 128
CAMERAS = ("front", "wrist")
ARM_DIM = 6
STATE_NAMES = [f"arm_joint_{i}" for i in range(ARM_DIM)] + ["gripper"]
TASKS = (
    "pick up the red block",
    "push the green block to the left",
    "lift the blue block above the table",
)
# Per task: the sub-task before and after the gripper closes (task table rows len(TASKS) + 2·task + phase).
SUBTASKS = (
    ("reach the red block", "lift the red block"),
    ("reach the green block", "push it to the left"),
    ("reach the blue block", "raise it above the table"),
)
SUBTASK_COLUMN = "annotation.human.subtask"
TASK_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 80, 230]], dtype=np.float32)
CODE_BITS = 16
CODE_ROW_HEIGHT = 8
SUPPORTED_VERSIONS = ("v2.1", "v3.0")
# Per-frame scalar columns of a LeRobot data file besides state and action: (name, dtype).
BOOKKEEPING_COLUMNS = (
    ("timestamp", "float32"),
    ("frame_index", "int64"),
    ("episode_index", "int64"),
    ("index", "int64"),
    ("task_index", "int64"),
    ("annotation.human.task_description", "int64"),
)


# ----------------------------------------------------------------------------- trajectories
def _episode_trajectory(rng: np.random.Generator, task: int, length: int) -> np.ndarray:
    """Smooth state trajectory [length + 1, 7] (one extra step so actions can look ahead)."""
    t = np.linspace(0.0, 1.0, length + 1)[:, None]
    direction = np.zeros(ARM_DIM)
    direction[task % ARM_DIM] = 1.0
    direction[(task + 3) % ARM_DIM] = -0.5
    start = rng.uniform(-0.4, 0.4, size=ARM_DIM)
    freq = rng.uniform(0.5, 1.5, size=ARM_DIM)
    phase = rng.uniform(0, 2 * np.pi, size=ARM_DIM)
    arm = start + 0.8 * direction * np.sin(0.5 * np.pi * t) + 0.2 * np.sin(2 * np.pi * freq * t + phase)
    close_at = rng.uniform(0.3, 0.6)
    gripper = 1.0 / (1.0 + np.exp(-(t - close_at) * 25.0))
    return np.concatenate([arm, gripper], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- images
def _write_code(img: np.ndarray, value: int, row: int) -> None:
    block = img.shape[1] // CODE_BITS
    top = row * CODE_ROW_HEIGHT
    for bit in range(CODE_BITS):
        on = (value >> bit) & 1
        img[top : top + CODE_ROW_HEIGHT, bit * block : (bit + 1) * block] = 255 if on else 0


def read_frame_code(frame: np.ndarray) -> tuple[int, int]:
    """Recover `(episode_index, frame_index)` from a decoded demo frame [H, W, 3]."""
    block = frame.shape[1] // CODE_BITS
    values = []
    for row in range(2):
        top = row * CODE_ROW_HEIGHT
        value = 0
        for bit in range(CODE_BITS):
            patch = frame[top + 2 : top + CODE_ROW_HEIGHT - 2, bit * block + 2 : (bit + 1) * block - 2]
            if patch.mean() > 127:
                value |= 1 << bit
        values.append(value)
    return values[1], values[0]


def _render(
    state: np.ndarray, task: int, camera: str, episode: int, frame_index: int, height: int, width: int
) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if camera == "front":
        background = np.stack([xs / width * 60 + 40, ys / height * 60 + 60, np.full_like(xs, 90)], -1)
        cx = width * (0.5 + 0.35 * np.tanh(state[0]))
        cy = height * (0.6 + 0.25 * np.tanh(state[1]))
    else:
        background = np.stack([np.full_like(xs, 70), xs / width * 50 + 50, ys / height * 80 + 40], -1)
        cx = width * (0.5 + 0.35 * np.tanh(state[2] + state[3]))
        cy = height * (0.6 + 0.25 * np.tanh(state[4] - state[5]))
    radius = (0.10 + 0.08 * (1.0 - state[6])) * min(height, width)
    weight = np.clip(radius + 1.5 - np.hypot(xs - cx, ys - cy), 0.0, 1.0)[..., None]
    img = background * (1 - weight) + TASK_COLOURS[task % len(TASK_COLOURS)] * weight
    img = np.clip(img, 0, 255).astype(np.uint8)
    _write_code(img, frame_index, 0)
    _write_code(img, episode, 1)
    return img


# ----------------------------------------------------------------------------- tables
def _vector_array(values: np.ndarray) -> pa.Array:
    flat = pa.array(values.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _frames_table(episodes: list[dict], first_index: int) -> pa.Table:
    cols: dict[str, list] = {k: [] for k in ("state", "action", "ts", "fi", "ei", "ti", "sub")}
    for ep in episodes:
        if ep.get("subtask") is not None:
            cols["sub"].append(ep["subtask"])
        n = ep["length"]
        cols["state"].append(ep["state"])
        cols["action"].append(ep["action"])
        cols["ts"].append((np.arange(n) / FPS).astype(np.float32))
        cols["fi"].append(np.arange(n, dtype=np.int64))
        cols["ei"].append(np.full(n, ep["episode_index"], dtype=np.int64))
        cols["ti"].append(np.full(n, ep["task_index"], dtype=np.int64))
    cat = {k: np.concatenate(v) for k, v in cols.items() if v}
    total = len(cat["ts"])
    subtask = {SUBTASK_COLUMN: pa.array(cat["sub"])} if "sub" in cat else {}
    return pa.table(
        {
            "observation.state": _vector_array(cat["state"]),
            "action": _vector_array(cat["action"]),
            "timestamp": pa.array(cat["ts"], type=pa.float32()),
            "frame_index": pa.array(cat["fi"]),
            "episode_index": pa.array(cat["ei"]),
            "index": pa.array(np.arange(first_index, first_index + total, dtype=np.int64)),
            "task_index": pa.array(cat["ti"]),
            "annotation.human.task_description": pa.array(cat["ti"]),
            **subtask,
        }
    )


def _features(encoder: str, height: int, width: int, subtasks: bool = False) -> dict:
    video_info = {
        "video.height": height,
        "video.width": width,
        "video.codec": "av1" if "av1" in encoder else "h264",
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": FPS,
        "video.channels": 3,
        "has_audio": False,
    }
    features: dict = {}
    for cam in CAMERAS:
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": dict(video_info),
        }
    features["observation.state"] = {
        "dtype": "float32",
        "shape": [len(STATE_NAMES)],
        "names": list(STATE_NAMES),
    }
    features["action"] = {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)}
    for name, dtype in BOOKKEEPING_COLUMNS + (((SUBTASK_COLUMN, "int64"),) if subtasks else ()):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def task_table(subtasks: bool = False) -> list[str]:
    """The dataset's task strings by task index (the tasks, then the sub-tasks when written)."""
    return list(TASKS) + ([text for pair in SUBTASKS for text in pair] if subtasks else [])


def _subtask_labels(task: int, gripper: np.ndarray) -> np.ndarray:
    """Per-frame sub-task index: phase 0 until the gripper closes (> 0.5), then phase 1."""
    return (len(TASKS) + 2 * task + (gripper > 0.5)).astype(np.int64)


def demo_modality(subtasks: bool = False) -> dict:
    """The meta/modality.json content of the demo dataset."""
    annotation = {"human.task_description": {}, **({"human.subtask": {}} if subtasks else {})}
    return {
        "state": {"arm": {"start": 0, "end": ARM_DIM}, "gripper": {"start": ARM_DIM, "end": ARM_DIM + 1}},
        "action": {
            "arm": {"start": 0, "end": ARM_DIM, "absolute": False},
            "gripper": {"start": ARM_DIM, "end": ARM_DIM + 1, "absolute": True},
        },
        "video": {cam: {"original_key": f"observation.images.{cam}"} for cam in CAMERAS},
        "annotation": annotation,
    }


def _numeric_stats(values: np.ndarray) -> dict:
    values = values.astype(np.float64)
    return {
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "q01": np.quantile(values, 0.01, axis=0).tolist(),
        "q99": np.quantile(values, 0.99, axis=0).tolist(),
        "count": [int(values.shape[0])],
    }


def _write_json(path: Path, data) -> None:
    atomic.write_json(path, data, indent=4)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- writers
def _write_v21(root: Path, episodes: list[dict], encoder: str, info: dict, gop: int, crf: int) -> None:
    chunks_size = info["chunks_size"]
    for ep in episodes:
        chunk = ep["episode_index"] // chunks_size
        path = root / info["data_path"].format(episode_chunk=chunk, episode_index=ep["episode_index"])
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_frames_table([ep], ep["first_index"]), path)
        for cam in CAMERAS:
            key = f"observation.images.{cam}"
            vpath = root / info["video_path"].format(
                episode_chunk=chunk, video_key=key, episode_index=ep["episode_index"]
            )
            encode_video(vpath, ep["frames"][cam], FPS, codec=encoder, gop=gop, crf=crf)
    _write_jsonl(
        root / "meta/episodes.jsonl",
        [
            {"episode_index": ep["episode_index"], "tasks": [TASKS[ep["task_index"]]], "length": ep["length"]}
            for ep in episodes
        ],
    )
    tasks = task_table(info["total_tasks"] > len(TASKS))
    _write_jsonl(root / "meta/tasks.jsonl", [{"task_index": i, "task": t} for i, t in enumerate(tasks)])
    _write_jsonl(
        root / "meta/episodes_stats.jsonl",
        [
            {
                "episode_index": ep["episode_index"],
                "stats": {
                    "observation.state": _numeric_stats(ep["state"]),
                    "action": _numeric_stats(ep["action"]),
                },
            }
            for ep in episodes
        ],
    )


def _write_v30(
    root: Path, episodes: list[dict], encoder: str, info: dict, gop: int, crf: int, episodes_per_file: int
) -> None:
    import pandas as pd

    chunks_size = info["chunks_size"]
    rows: list[dict] = []
    for file_number, start in enumerate(range(0, len(episodes), episodes_per_file)):
        group = episodes[start : start + episodes_per_file]
        chunk, file_index = divmod(file_number, chunks_size)
        data_path = root / info["data_path"].format(chunk_index=chunk, file_index=file_index)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_frames_table(group, group[0]["first_index"]), data_path)
        for cam in CAMERAS:
            key = f"observation.images.{cam}"
            vpath = root / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file_index)
            encode_video(
                vpath, (f for ep in group for f in ep["frames"][cam]), FPS, codec=encoder, gop=gop, crf=crf
            )
        offset = 0
        for ep in group:
            row = {
                "episode_index": ep["episode_index"],
                "tasks": [TASKS[ep["task_index"]]],
                "length": ep["length"],
                "data/chunk_index": chunk,
                "data/file_index": file_index,
                "dataset_from_index": ep["first_index"],
                "dataset_to_index": ep["first_index"] + ep["length"],
            }
            for cam in CAMERAS:
                key = f"observation.images.{cam}"
                row[f"videos/{key}/chunk_index"] = chunk
                row[f"videos/{key}/file_index"] = file_index
                row[f"videos/{key}/from_timestamp"] = offset / FPS
                row[f"videos/{key}/to_timestamp"] = (offset + ep["length"]) / FPS
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            offset += ep["length"]
            rows.append(row)
    episodes_path = root / "meta/episodes/chunk-000/file-000.parquet"
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(episodes_path, index=False)
    names = task_table(info["total_tasks"] > len(TASKS))
    tasks = pd.DataFrame({"task_index": list(range(len(names)))}, index=pd.Index(names, name="task"))
    tasks.to_parquet(root / "meta/tasks.parquet")
    all_state = np.concatenate([ep["state"] for ep in episodes])
    all_action = np.concatenate([ep["action"] for ep in episodes])
    _write_json(
        root / "meta/stats.json",
        {"observation.state": _numeric_stats(all_state), "action": _numeric_stats(all_action)},
    )


def write_demo_dataset(
    root: str | Path,
    version: str = "v3.0",
    num_episodes: int = 6,
    episode_length: int | list[int] = 60,
    seed: int = 0,
    codec: str = "h264",
    height: int = IMAGE_HEIGHT,
    width: int = IMAGE_WIDTH,
    episodes_per_file: int | None = None,
    gop: int = 2,
    crf: int = 23,
    overwrite: bool = False,
    subtasks: bool = False,
) -> Path:
    """Write the demo dataset to `root` and return its path.

    `version` is "v3.0" (episodes packed into shared data/video files, `episodes_per_file` per
    file, all of them by default) or "v2.1" (one file per episode). `episode_length` is one
    length for all episodes or a list with one per episode. `codec` is "h264", "av1" or a
    concrete PyAV encoder name (e.g. "libsvtav1", "libaom-av1"). The output is a pure function
    of the arguments. The dataset is built in a temporary folder and renamed into place. `subtasks`
    adds the per-frame sub-task channel (module docstring).
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"demo dataset version {version!r}: expected one of {SUPPORTED_VERSIONS}")
    if height % 2 or width % 2 or width < CODE_BITS * 4 or height < 2 * CODE_ROW_HEIGHT + 8:
        raise ValueError(
            f"demo frames {height}x{width}: need even sides, width >= {CODE_BITS * 4}, height >= 24"
        )
    lengths = [episode_length] * num_episodes if isinstance(episode_length, int) else list(episode_length)
    if len(lengths) != num_episodes or min(lengths, default=1) < 1:
        raise ValueError(f"episode_length {episode_length!r}: need {num_episodes} positive lengths")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} exists and is not empty (pass overwrite=True to replace it)")
    encoder = resolve_encoder(codec)
    rng = np.random.default_rng(seed)
    episodes = []
    first_index = 0
    for ep_index, length in enumerate(lengths):
        task = ep_index % len(TASKS)
        traj = _episode_trajectory(rng, task, length)
        state, action = traj[:-1], traj[1:]
        frames = {
            cam: [_render(state[i], task, cam, ep_index, i, height, width) for i in range(length)]
            for cam in CAMERAS
        }
        episodes.append(
            {
                "episode_index": ep_index,
                "task_index": task,
                "length": length,
                "state": state,
                "action": action,
                "frames": frames,
                "first_index": first_index,
                "subtask": _subtask_labels(task, state[:, -1]) if subtasks else None,
            }
        )
        first_index += length

    info = {
        "codebase_version": version,
        "robot_type": EMBODIMENT,
        "total_episodes": num_episodes,
        "total_frames": int(sum(lengths)),
        "total_tasks": len(task_table(subtasks)),
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{num_episodes}"},
        "features": _features(encoder, height, width, subtasks),
    }
    if version == "v2.1":
        info.update(
            total_videos=num_episodes * len(CAMERAS),
            total_chunks=(num_episodes - 1) // 1000 + 1,
            data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        )
    else:
        info.update(
            data_files_size_in_mb=100,
            video_files_size_in_mb=500,
            data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        )

    with atomic.atomic_dir(root, replace=True) as tmp:
        if version == "v2.1":
            _write_v21(tmp, episodes, encoder, info, gop, crf)
        else:
            _write_v30(tmp, episodes, encoder, info, gop, crf, episodes_per_file or num_episodes)
        _write_json(tmp / "meta/info.json", info)
        _write_json(tmp / "meta/modality.json", demo_modality(subtasks))
    return root
