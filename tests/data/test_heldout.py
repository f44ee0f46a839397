"""Held-out episodes (`val_episodes`, gr00t/data/heldout.py): the choice, its record, its lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gr00t.data.dataset_ops.ops import choose_validation
from gr00t.data.heldout import HeldoutError, choose_heldout, episodes_for, heldout_record, read_heldout


def test_count_and_fraction_follow_gr00t_dataset_split() -> None:
    episodes = [0, 1, 2, 5, 7, 9, 11, 12]
    for spec in (1, 3, 0.25, "2"):
        for seed in (0, 42):
            chosen = choose_heldout(episodes, spec, seed, "d")
            assert chosen == choose_validation(episodes, spec, seed)  # same episodes as `split val=`
            assert chosen == sorted(chosen) and set(chosen) < set(episodes)
    assert choose_heldout(episodes, 3, 1, "d") != choose_heldout(episodes, 3, 2, "d")  # the seed matters
    assert choose_heldout(episodes, None, 0, "d") == []
    assert choose_heldout(episodes, [9, 2], 0, "d") == [2, 9]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (8, r"val_episodes=8: /data/x has 8 episodes, so a count must be 1..7"),
        (1.5, r"a fraction must lie strictly between 0 and 1"),
        ("many", r"val_episodes='many': expected an episode count"),
        ([4], r"val_episodes=\[4\]: /data/x has no episode\(s\) \[4\]"),
        ([0, 1, 2, 5, 7, 9, 11, 12], r"no episode of /data/x would be left for training"),
    ],
)
def test_bad_specs_name_the_key(spec, message) -> None:
    with pytest.raises(HeldoutError, match=message):
        choose_heldout([0, 1, 2, 5, 7, 9, 11, 12], spec, 0, "/data/x")


def test_record_round_trip_and_lookup(tmp_path: Path) -> None:
    data = tmp_path / "robot_a"
    data.mkdir()
    record = heldout_record(7, 2, [(data, "new_embodiment", [3, 5])])
    (tmp_path / "heldout_episodes.json").write_text(json.dumps(record))
    back = read_heldout(tmp_path)
    assert back == record and back["datasets"][0]["path"] == str(data.resolve())
    assert episodes_for(back, data) == [3, 5]
    moved = tmp_path / "elsewhere" / "robot_a"  # the same dataset copied to another place
    assert episodes_for(back, moved) == [3, 5]
    assert episodes_for(back, tmp_path / "robot_b") is None
    assert episodes_for(None, data) is None and read_heldout(tmp_path / "none") is None
    (tmp_path / "heldout_episodes.json").write_text("{}")
    with pytest.raises(HeldoutError, match="heldout_episodes.json: expected"):
        read_heldout(tmp_path)
