"""Readers on datasets laid out exactly as LeRobot's own writer lays them out (without LeRobot).

Conventions reproduced here were observed on datasets written by lerobot 0.4.4 (v3.0) and 0.3.3
(v2.1) with `LeRobotDataset.create(..., use_videos=False)`: camera features get
`"dtype": "image"`, `info.json` has `"video_path": null`, there are no `videos/` files nor
`videos/*` episode-metadata columns, and every data row holds the frame as a PNG inside a
`struct<bytes: binary, path: string>` column (path `frame-000000.png` in v3.0,
`frame_000000.png` in v2.1).
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gr00t.data.lerobot import open_lerobot_dataset
from gr00t.data.modality import default_modality, load_modality, write_default_modality
from gr00t.data.video import VideoDecodeError

FRONT, WRIST = "observation.images.front", "observation.images.wrist"
SIZES = {FRONT: (24, 40), WRIST: (32, 20)}  # non-square, different per camera
LENGTHS = [4, 6, 5]


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _images(seed: int) -> dict[str, list[np.ndarray]]:
    """Random frames per camera, in dataset row order (episodes back to back)."""
    rng = np.random.default_rng(seed)
    total = sum(LENGTHS)
    return {
        k: [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(total)]
        for k, (h, w) in SIZES.items()
    }


def _image_column(frames: list[np.ndarray], rows: np.ndarray, within: np.ndarray, sep: str) -> pa.Array:
    # LeRobot names each cell after its frame index inside the episode.
    cells = [{"bytes": _png(frames[r]), "path": f"frame{sep}{i:06d}.png"} for r, i in zip(rows, within)]
    return pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def _to_image_dataset(root, images: dict[str, list[np.ndarray]]) -> None:
    """Turn a demo dataset's cameras into LeRobot image features (frames taken from `images`)."""
    info = json.loads((root / "meta/info.json").read_text())
    for key, (h, w) in SIZES.items():
        info["features"][key] = {
            "dtype": "image",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
        }
    info["video_path"] = None
    info["total_videos"] = 0
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    shutil.rmtree(root / "videos")
    v3 = info["codebase_version"] == "v3.0"
    if v3:
        for path in (root / "meta/episodes").rglob("*.parquet"):
            frame = pd.read_parquet(path)
            frame.drop(columns=[c for c in frame.columns if c.startswith("videos/")]).to_parquet(
                path, index=False
            )
    for path in sorted((root / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        rows = table.column("index").to_numpy()
        within = table.column("frame_index").to_numpy()
        for key in SIZES:
            table = table.append_column(key, _image_column(images[key], rows, within, "-" if v3 else "_"))
        pq.write_table(table, path)


@pytest.fixture(params=["v3.0", "v2.1"])
def image_dataset(request, tmp_path):
    from gr00t.data.demo import write_demo_dataset

    root = write_demo_dataset(
        tmp_path / "ds",
        version=request.param,
        num_episodes=len(LENGTHS),
        episode_length=LENGTHS,
        height=24,
        width=64,
    )
    images = _images(seed=1)
    _to_image_dataset(root, images)
    return root, images


def _expected(images, key, episode, indices):
    start = sum(LENGTHS[:episode])
    return np.stack([images[key][start + i] for i in indices])


def test_image_features_decode_exactly(image_dataset):
    root, images = image_dataset
    reader = open_lerobot_dataset(root)
    assert reader.video_keys == [] and reader.image_keys == [FRONT, WRIST]
    assert reader.camera_keys == [FRONT, WRIST]
    for ep, length in enumerate(LENGTHS):
        for key in (FRONT, WRIST):
            indices = [length - 1, 0, length // 2, length // 2]
            frames = reader.decode_frames(ep, key, indices)
            assert frames.shape == (4, *SIZES[key], 3) and frames.dtype == np.uint8
            assert np.array_equal(frames, _expected(images, key, ep, indices))
            segment = reader.decode_segment(ep, key, 1, length)
            assert np.array_equal(segment, _expected(images, key, ep, range(1, length)))
    # Image columns are not numeric data, and timestamps need no video offset.
    assert not {FRONT, WRIST} & set(reader.episode_data(1))
    assert reader.frame_timestamps(2, [0, 3], FRONT) == pytest.approx([0.0, 3 / reader.fps], abs=1e-6)
    with pytest.raises(IndexError, match="has 6 frames"):
        reader.decode_frames(1, FRONT, [6])
    with pytest.raises(KeyError, match="image feature"):
        reader.video_location(0, FRONT)


def test_default_modality_names_image_cameras(image_dataset):
    root, _ = image_dataset
    info = json.loads((root / "meta/info.json").read_text())
    assert default_modality(info)["video"] == {
        "front": {"original_key": FRONT},
        "wrist": {"original_key": WRIST},
    }
    (root / "meta/modality.json").unlink(missing_ok=True)
    write_default_modality(root)
    assert {e.original_key for e in load_modality(root).video.values()} == {FRONT, WRIST}


def _rewrite_cell(root, key, row, cell):
    path = next(
        p
        for p in sorted((root / "data").rglob("*.parquet"))
        if row in pq.read_table(p).column("index").to_pylist()
    )
    table = pq.read_table(path)
    cells = table.column(key).to_pylist()
    cells[table.column("index").to_pylist().index(row)] = cell
    table = table.set_column(
        table.schema.get_field_index(key), key, pa.array(cells, type=table.schema.field(key).type)
    )
    pq.write_table(table, path)


def test_image_cells_given_by_path_and_bad_cells(image_dataset):
    root, images = image_dataset
    # A cell without embedded bytes falls back to its path (relative to the dataset root).
    (root / "images").mkdir()
    Image.fromarray(images[FRONT][LENGTHS[0] + 2]).save(root / "images/x.png")
    _rewrite_cell(root, FRONT, LENGTHS[0] + 2, {"bytes": None, "path": "images/x.png"})
    _rewrite_cell(root, FRONT, LENGTHS[0] + 3, {"bytes": None, "path": "images/missing.png"})
    _rewrite_cell(root, WRIST, 1, {"bytes": b"not a png", "path": "frame-000001.png"})
    reader = open_lerobot_dataset(root)
    assert np.array_equal(reader.decode_frames(1, FRONT, [2])[0], images[FRONT][LENGTHS[0] + 2])
    with pytest.raises(
        VideoDecodeError, match=r"episode 1, 'observation.images.front', frame 3: .*missing.png"
    ):
        reader.decode_frames(1, FRONT, [3])
    with pytest.raises(
        VideoDecodeError, match=r"episode 0, 'observation.images.wrist', frame 1: cannot decode"
    ):
        reader.decode_frames(0, WRIST, [0, 1])


def test_v3_episode_with_several_tasks(demo_dataset_v3, tmp_path):
    """lerobot 0.4.4 lists every task of an episode (in first-seen set order, not sorted) and switches
    `task_index` per frame; its episode metadata also carries meta/episodes/* columns."""
    from gr00t.data.demo import TASKS

    root = tmp_path / "ds"
    shutil.copytree(demo_dataset_v3, root)
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    episodes = pd.read_parquet(meta)
    episodes["tasks"] = [
        [TASKS[2], TASKS[0]] if ep == 2 else t.tolist()
        for ep, t in zip(episodes["episode_index"], episodes["tasks"])
    ]
    episodes["meta/episodes/chunk_index"] = 0
    episodes["meta/episodes/file_index"] = 0
    episodes.to_parquet(meta, index=False)
    data_path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data_path)
    ep, frame = table.column("episode_index").to_numpy(), table.column("frame_index").to_numpy()
    task = table.column("task_index").to_numpy().copy()
    task[(ep == 2) & (frame >= 30)] = 0
    pq.write_table(
        table.set_column(table.schema.get_field_index("task_index"), "task_index", pa.array(task)), data_path
    )
    reader = open_lerobot_dataset(root)
    assert reader.episode_tasks(2) == [TASKS[2], TASKS[0]]
    indices = reader.episode_data(2, ["task_index"])["task_index"]
    assert [reader.tasks[int(i)] for i in indices] == [TASKS[2]] * 30 + [TASKS[0]] * 30
