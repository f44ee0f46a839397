"""Malformed statistics files (gr00t/data/stats_check.py via gr00t/data/stats.py and gr00t-stats).

Statistics that are present but do not fit the embodiment are an error naming file, key and both
shapes, unless the user asks to recompute; absent ones are added; nothing is overwritten silently.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import numpy as np
import pytest

from gr00t.cli.stats import main as stats_main
from gr00t.data.stats import (
    RELATIVE_STATS_FILE,
    STATS_FILE,
    StatsError,
    check_stats,
    compute_and_write,
    ensure_stats,
    load_stats,
)
from tests.data.test_stats import writable_copy

EMB = "new_embodiment"  # observation.state and action are 7 wide; action group "arm" (6) is relative, H=16


@pytest.fixture
def root(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    compute_and_write(root, EMB)
    return root


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path.read_bytes()


def test_good_statistics_pass_and_are_not_rewritten(root):
    report = check_stats(root, EMB)
    assert report.ok, report
    before = {f: (root / f).stat().st_mtime_ns for f in (STATS_FILE, RELATIVE_STATS_FILE)}
    ensure_stats([root], EMB)
    assert {f: (root / f).stat().st_mtime_ns for f in (STATS_FILE, RELATIVE_STATS_FILE)} == before


def test_wrong_width_is_an_error_naming_file_key_and_shapes(root, caplog):
    raw = _edit(root / STATS_FILE, lambda d: d["observation.state"].update(std=[1.0] * 6))
    with pytest.raises(StatsError) as info:
        ensure_stats([root], EMB)
    message = str(info.value)
    assert f"{root / STATS_FILE}: 'observation.state' 'std' has shape [6], expected [7]" in message
    assert "meta/info.json" in message and "recompute_stats=true" in message and "recompute=true`" in message
    assert "\n" not in message
    assert (root / STATS_FILE).read_bytes() == raw  # never overwritten silently
    with pytest.raises(StatsError, match="'std' has shape \\[6\\], expected \\[7\\]"):
        load_stats(root, EMB)
    with caplog.at_level(logging.WARNING, logger="gr00t.data.stats"):
        grouped, _ = ensure_stats([root], EMB, recompute=True)
    assert "recompute_stats: recomputing and replacing the statistics" in caplog.text
    assert "'std' has shape [6]" in caplog.text
    assert (
        grouped["state"]["arm"]["std"].shape == (6,)
        and len(json.loads((root / STATS_FILE).read_text())["observation.state"]["std"]) == 7
    )


def test_every_entry_malformed_is_an_error_not_a_silent_recompute(root):
    raw = _edit(root / STATS_FILE, lambda d: d.update({"observation.state": "oops", "action": {"mean": "x"}}))
    with pytest.raises(StatsError) as info:
        ensure_stats([root], EMB)
    message = str(info.value)
    assert "'observation.state' is a str, expected a mapping of statistics" in message
    assert "'action' 'mean' is not an array of numbers" in message
    assert (root / STATS_FILE).read_bytes() == raw
    (root / STATS_FILE).write_text("{ not json")
    with pytest.raises(StatsError, match="stats.json: not valid JSON"):
        ensure_stats([root], EMB)
    ensure_stats([root], EMB, recompute=True)  # asked for: the unreadable file is replaced
    assert check_stats(root, EMB).ok


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda d: d["stats"]["arm"].update(mean=[[0.0] * 5] * 16),
            "group 'arm' 'mean' has shape [16, 5], expected [16, 6]",
        ),
        (
            lambda d: d["stats"]["arm"].update(q99=[[0.0] * 6] * 15),
            "'q99' has shape [15, 6], expected [16, 6]",
        ),
        (lambda d: d.update(action_horizon=8), "computed for horizon 8, embodiment 'new_embodiment' uses 16"),
        (lambda d: d["groups"]["arm"].update(type="eef"), "group 'arm' was computed as"),
        (lambda d: d["stats"]["arm"].update(std=[[float("nan")] * 6] * 16), "'std' holds NaN or infinity"),
    ],
)
def test_malformed_relative_statistics(root, edit, expected):
    raw = _edit(root / RELATIVE_STATS_FILE, edit)
    with pytest.raises(StatsError, match="recompute") as info:
        ensure_stats([root], EMB)
    assert expected in str(info.value) and str(root / RELATIVE_STATS_FILE) in str(info.value)
    assert (root / RELATIVE_STATS_FILE).read_bytes() == raw
    _, rel = ensure_stats([root], EMB, recompute=True)
    assert rel["arm"]["mean"].shape == (16, 6)


def test_absent_statistics_are_added_and_present_ones_kept(root, caplog):
    # LeRobot v2.1 writes mean/std/min/max/count but no q01/q99; its values stay, ours fill the gaps.
    _edit(
        root / STATS_FILE,
        lambda d: [d["action"].pop(k) for k in ("q01", "q99")] + [d["action"].update(mean=[0.5] * 7)],
    )
    (root / RELATIVE_STATS_FILE).unlink()
    report = check_stats(root, EMB)
    assert not report.problems and len(report.missing) == 2, report
    with caplog.at_level(logging.WARNING, logger="gr00t.data.stats"):
        grouped, rel = ensure_stats([root], EMB)
    assert "computing missing statistics" in caplog.text and "lacks ['q01', 'q99']" in caplog.text
    action = json.loads((root / STATS_FILE).read_text())["action"]
    assert action["mean"] == [0.5] * 7 and len(action["q01"]) == 7
    assert grouped["action"]["arm"]["mean"].tolist() == [0.5] * 6 and rel["arm"]["mean"].shape == (16, 6)


def test_statistics_files_honour_the_umask(demo_dataset_v3, tmp_path):
    root = writable_copy(demo_dataset_v3, tmp_path)
    old = os.umask(0o027)
    try:
        ensure_stats([root], EMB)
    finally:
        os.umask(old)
    for name in (STATS_FILE, RELATIVE_STATS_FILE):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o640, name
    assert not [p.name for p in (root / "meta").iterdir() if ".tmp" in p.name]


def test_cli_refuses_to_overwrite_unless_recompute(root, capsys):
    raw = _edit(root / STATS_FILE, lambda d: d["action"].update(max=[1.0] * 9))
    assert stats_main([str(root), "--embodiment", EMB]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gr00t-stats: error: ") and err.count("\n") == 1
    assert "'action' 'max' has shape [9], expected [7]" in err and "recompute=true" in err
    assert (root / STATS_FILE).read_bytes() == raw
    assert stats_main([str(root), f"embodiment={EMB}", "--recompute"]) == 0
    assert "replaced" in capsys.readouterr().out
    assert np.asarray(json.loads((root / STATS_FILE).read_text())["action"]["max"]).shape == (7,)
    mtime = (root / STATS_FILE).stat().st_mtime_ns
    assert stats_main([str(root), "--embodiment", EMB]) == 0
    assert "nothing written" in capsys.readouterr().out and (root / STATS_FILE).stat().st_mtime_ns == mtime
