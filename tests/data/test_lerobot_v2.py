"""The LeRobot v2.0/v2.1 reader on generated data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from gr00t.data.demo import TASKS, read_frame_code
from gr00t.data.lerobot import LeRobotV2Reader, open_lerobot_dataset

FRONT, WRIST = "observation.images.front", "observation.images.wrist"


def test_metadata(demo_dataset_v21):
    reader = open_lerobot_dataset(demo_dataset_v21)
    assert isinstance(reader, LeRobotV2Reader) and reader.version == "v2.1"
    assert reader.fps == 15.0 and reader.num_episodes == 6
    assert reader.episode_lengths == dict.fromkeys(range(6), 60)
    assert reader.tasks == dict(enumerate(TASKS))
    assert reader.episode_tasks(2) == [TASKS[2]]
    assert reader.video_keys == [FRONT, WRIST]
    assert reader.data_path(3) == demo_dataset_v21 / "data/chunk-000/episode_000003.parquet"
    assert reader.video_location(3, WRIST) == (
        demo_dataset_v21 / "videos/chunk-000" / WRIST / "episode_000003.mp4",
        0.0,
    )


def test_episode_data_matches_the_parquet_file(demo_dataset_v21):
    reader = open_lerobot_dataset(demo_dataset_v21)
    for ep in (0, 4):
        expected = pd.read_parquet(demo_dataset_v21 / f"data/chunk-000/episode_{ep:06d}.parquet")
        data = reader.episode_data(ep, ["observation.state", "action", "task_index"])
        assert np.array_equal(data["observation.state"], np.stack(expected["observation.state"]))
        assert np.array_equal(data["action"], np.stack(expected["action"]))
        assert data["task_index"].tolist() == expected["task_index"].tolist()
    assert reader.frame_timestamps(4, [0, 15]) == pytest.approx([0.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_decoded_frames_are_the_requested_ones(demo_dataset_v21, backend):
    reader = open_lerobot_dataset(demo_dataset_v21)
    frames = reader.decode_frames(2, WRIST, [3, 58, 0, 3], backend=backend)
    assert frames.shape == (4, 96, 128, 3)
    assert [read_frame_code(f) for f in frames] == [(2, 3), (2, 58), (2, 0), (2, 3)]
    segment = reader.decode_segment(5, FRONT, 0, 8, backend=backend)
    assert [read_frame_code(f) for f in segment] == [(5, i) for i in range(8)]


def test_v20_chunks_and_sparse_episode_indices(demo_dataset_v21, tmp_path):
    """v2.0 (no episodes_stats), chunks_size 4 (episodes 4, 5 in chunk-001), episodes 1..5 only."""
    root = tmp_path / "ds"
    shutil.copytree(demo_dataset_v21, root)
    info = json.loads((root / "meta/info.json").read_text())
    info.update(codebase_version="v2.0", chunks_size=4, total_episodes=5, total_frames=300)
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/episodes_stats.jsonl").unlink()
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()[1:]
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    (root / "data/chunk-000/episode_000000.parquet").unlink()
    for ep in (4, 5):
        for rel in (
            f"data/chunk-000/episode_{ep:06d}.parquet",
            *(f"videos/chunk-000/{k}/episode_{ep:06d}.mp4" for k in (FRONT, WRIST)),
        ):
            dst = root / rel.replace("chunk-000", "chunk-001")
            dst.parent.mkdir(parents=True, exist_ok=True)
            (root / rel).rename(dst)
    reader = open_lerobot_dataset(root)
    assert reader.version == "v2.0" and reader.episode_indices == [1, 2, 3, 4, 5]
    assert reader.data_path(5) == root / "data/chunk-001/episode_000005.parquet"
    assert reader.episode_data(5, ["frame_index"])["frame_index"].tolist() == list(range(60))
    assert read_frame_code(reader.decode_frames(4, FRONT, [9])[0]) == (4, 9)
    with pytest.raises(KeyError, match="no episode 0"):
        reader.episode_data(0)
