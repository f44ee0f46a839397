"""Datasets whose cameras are LeRobot image features (PNG bytes inside the parquet rows)."""

from __future__ import annotations

import json

from gr00t.data.dataset_ops import choose_validation, merge, split
from gr00t.data.demo import write_demo_dataset
from tests.data.dataset_ops.checks import assert_dataset_holds, assert_stats_recomputed
from tests.data.test_lerobot_compat import LENGTHS, _images, _to_image_dataset


def _image_dataset(root, version, seed):
    write_demo_dataset(
        root, version=version, num_episodes=len(LENGTHS), episode_length=LENGTHS, height=24, width=64
    )
    _to_image_dataset(root, _images(seed))
    return root


def test_image_feature_datasets_merge_and_split(tmp_path):
    a = _image_dataset(tmp_path / "a", "v3.0", seed=1)
    b = _image_dataset(tmp_path / "b", "v2.1", seed=2)
    report = merge([a, b], tmp_path / "merged")
    assert report.version == "v3.0" and report.videos_stream_copied == 0
    info = json.loads((tmp_path / "merged/meta/info.json").read_text())
    assert info["video_path"] is None and info["features"]["observation.images.front"]["dtype"] == "image"
    assert_dataset_holds(tmp_path / "merged", [(a, [0, 1, 2]), (b, [0, 1, 2])])
    assert_stats_recomputed(tmp_path / "merged", embodiment=None)
    split(b, "1", tmp_path / "split", seed=0)
    val = choose_validation([0, 1, 2], "1", 0)
    assert_dataset_holds(tmp_path / "split/val", [(b, val)])
    assert_dataset_holds(tmp_path / "split/train", [(b, [e for e in range(3) if e not in val])])
