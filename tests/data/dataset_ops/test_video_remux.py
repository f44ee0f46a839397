"""Stream copy of episode segments, the re-encode fallback, and codec-aware file grouping."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from gr00t.data.dataset_ops import merge
from gr00t.data.dataset_ops.video_remux import keyframe_interval, stream_signature
from gr00t.data.demo import write_demo_dataset
from gr00t.data.lerobot import open_lerobot_dataset
from tests.data.dataset_ops.checks import assert_dataset_holds

FRONT = "observation.images.front"


def test_keyframe_interval_and_signature(tmp_path):
    a = write_demo_dataset(
        tmp_path / "a", version="v2.1", num_episodes=1, episode_length=30, gop=7, height=32, width=64
    )
    b = write_demo_dataset(
        tmp_path / "b", version="v2.1", num_episodes=1, episode_length=30, gop=2, height=32, width=64
    )
    video_a = a / f"videos/chunk-000/{FRONT}/episode_000000.mp4"
    video_b = b / f"videos/chunk-000/{FRONT}/episode_000000.mp4"
    assert keyframe_interval(video_a) == 7 and keyframe_interval(video_b) == 2
    assert stream_signature(video_a)[:4] == ("h264", 64, 32, "yuv420p")


def test_reencode_fallback_keeps_timestamps_consistent(inputs, tmp_path):
    out = tmp_path / "merged"
    report = merge([inputs["a3"], inputs["b21"]], out, reencode=True)
    assert len(report.videos_reencoded) == 4 and all("reencode=true" in r for r in report.videos_reencoded)
    reader = open_lerobot_dataset(out)
    sources = [(open_lerobot_dataset(inputs["a3"]), e) for e in range(3)] + [
        (open_lerobot_dataset(inputs["b21"]), e) for e in range(2)
    ]
    for ep, (src, src_ep) in enumerate(sources):
        n = src.episode_length(src_ep)
        got = reader.decode_segment(ep, FRONT, 0, n).astype(np.int16)
        want = src.decode_segment(src_ep, FRONT, 0, n).astype(np.int16)
        assert np.abs(got - want).mean() < 4.0  # lossy, but the same frames in the same order
        assert np.array_equal(reader.episode_data(ep)["action"], src.episode_data(src_ep)["action"])


def test_different_codecs_go_to_different_files(inputs, tmp_path):
    """AV1 episodes appended to an h264 dataset are stream-copied into their own files, not re-encoded."""
    av1 = write_demo_dataset(
        tmp_path / "av1",
        version="v2.1",
        num_episodes=2,
        episode_length=[9, 8],
        codec="av1",
        height=32,
        width=64,
    )
    out = tmp_path / "merged"
    report = merge([inputs["a3"], av1], out)
    assert not report.videos_reencoded and report.videos_stream_copied == 2
    episodes = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    assert episodes[f"videos/{FRONT}/file_index"].tolist() == [0, 0, 0, 1, 1]
    codecs = [stream_signature(out / f"videos/{FRONT}/chunk-000/file-{i:03d}.mp4")[0] for i in (0, 1)]
    assert codecs == ["h264", "av1"]
    assert_dataset_holds(out, [(inputs["a3"], [0, 1, 2]), (av1, [0, 1])])
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"][FRONT]["info"]["video.codec"] == "h264"  # the first input's description
    assert any("different codecs ['av1', 'h264']" in n for n in report.notes)
