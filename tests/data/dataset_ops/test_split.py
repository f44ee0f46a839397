"""split: <out>/train and <out>/val, deterministic for a seed, each a valid dataset read back exactly."""

from __future__ import annotations

import pytest

from gr00t.data.dataset_ops import DatasetOpsError, choose_validation, split
from gr00t.data.demo import write_demo_dataset
from tests.data.dataset_ops.checks import (
    assert_dataset_holds,
    assert_episode_stats_recomputed,
    assert_stats_recomputed,
    leftovers,
    tree_digest,
)


@pytest.mark.parametrize("name", ["a3", "a21"])
def test_split_reads_back_exactly(inputs, tmp_path, name):
    out = tmp_path / "split"
    reports = split(inputs[name], "1", out, seed=5)
    val = choose_validation([0, 1, 2], "1", 5)
    train = [e for e in (0, 1, 2) if e not in val]
    assert len(val) == 1 and reports["val"].episodes == 1 and reports["train"].episodes == 2
    assert all(not r.videos_reencoded for r in reports.values())
    assert_dataset_holds(out / "train", [(inputs[name], train)])
    assert_dataset_holds(out / "val", [(inputs[name], val)])
    for part in ("train", "val"):
        assert_stats_recomputed(out / part)
        assert_episode_stats_recomputed(out / part)
    assert leftovers(tmp_path, "split") == []


def test_split_is_deterministic_for_a_seed(inputs, tmp_path):
    split(inputs["a3"], "0.34", tmp_path / "one", seed=3)
    split(inputs["a3"], "0.34", tmp_path / "two", seed=3)
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")


def test_validation_choice():
    episodes = list(range(10))
    assert choose_validation(episodes, "0.2", 0) == choose_validation(episodes, 0.2, 0)
    assert len(choose_validation(episodes, "0.2", 0)) == 2
    assert len(choose_validation(episodes, "3", 0)) == 3
    assert len(choose_validation(episodes, "0.01", 0)) == 1  # at least one episode
    assert len(choose_validation(episodes, "0.99", 0)) == 9  # at least one left to train on
    draws = {tuple(choose_validation(episodes, "3", seed)) for seed in range(5)}
    assert len(draws) > 1  # the seed picks the episodes
    for bad, message in [
        ("0", "count must be 1..9"),
        ("10", "count must be 1..9"),
        ("1.5", "strictly between 0 and 1"),
        ("0.0", "strictly between 0 and 1"),
        ("half", "expected a fraction"),
    ]:
        with pytest.raises(DatasetOpsError, match=message):
            choose_validation(episodes, bad, 0)


def test_long_gop_episodes_are_cut_without_reencoding(tmp_path):
    """With a keyframe every 12 frames most episodes start mid-GOP; the copy starts at the keyframe
    before them, and every frame still decodes to the source's pixels."""
    src = write_demo_dataset(
        tmp_path / "long_gop",
        version="v3.0",
        num_episodes=4,
        episode_length=[13, 17, 11, 20],
        gop=12,
        height=32,
        width=64,
    )
    reports = split(src, "2", tmp_path / "split", seed=1)
    assert reports["train"].videos_stream_copied == 2 and reports["val"].videos_stream_copied == 2
    assert not reports["train"].videos_reencoded and not reports["val"].videos_reencoded
    val = choose_validation([0, 1, 2, 3], "2", 1)
    assert_dataset_holds(tmp_path / "split/train", [(src, [e for e in range(4) if e not in val])])
    assert_dataset_holds(tmp_path / "split/val", [(src, val)])


def test_split_needs_two_episodes(tmp_path):
    src = write_demo_dataset(
        tmp_path / "one", version="v2.1", num_episodes=1, episode_length=5, height=32, width=64
    )
    with pytest.raises(DatasetOpsError, match="cannot split a dataset of 1 episode"):
        split(src, "1", tmp_path / "split")
