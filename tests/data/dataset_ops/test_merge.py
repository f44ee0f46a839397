"""merge: two LeRobot datasets (v2.1, v3.0, mixed) into one, read back exactly."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pandas as pd
import pytest

from gr00t.data.dataset_ops import DatasetOpsError, merge
from gr00t.data.demo import TASKS
from gr00t.data.lerobot import open_lerobot_dataset
from gr00t.data.stats import compute_and_write, compute_stats
from tests.data.dataset_ops.checks import (
    assert_dataset_holds,
    assert_episode_stats_recomputed,
    assert_stats_recomputed,
    leftovers,
)
from tests.data.dataset_ops.conftest import NEW_TASK


@pytest.mark.parametrize(
    "first, second, version",
    [("a3", "b3", "v3.0"), ("a21", "b21", "v2.1"), ("a3", "b21", "v3.0"), ("a21", "b3", "v3.0")],
)
def test_merge_reads_back_exactly(inputs, tmp_path, first, second, version):
    out = tmp_path / "merged"
    report = merge([inputs[first], inputs[second]], out)
    assert report.version == version and report.episodes == 5 and not report.videos_reencoded
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == version
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (
        5,
        17 + 21 + 19 + 19 + 18,
        4,
    )
    assert info["splits"] == {"train": "0:5"}
    reader = assert_dataset_holds(out, [(inputs[first], [0, 1, 2]), (inputs[second], [0, 1])])
    # The union keeps the first input's task indices and appends the second's new task.
    assert [reader.tasks[i] for i in range(4)] == [*TASKS, NEW_TASK]
    assert_stats_recomputed(out)
    assert_episode_stats_recomputed(out)
    assert json.loads((out / "meta/modality.json").read_text()) == json.loads(
        (inputs[first] / "meta/modality.json").read_text()
    )
    assert leftovers(tmp_path, "merged") == []


def test_v21_merge_copies_files_without_rewriting(inputs, tmp_path):
    out = tmp_path / "merged"
    merge([inputs["a21"], inputs["b21"]], out)
    for ep in range(3):  # first input: same indices, so the very same bytes
        name = f"chunk-000/episode_{ep:06d}"
        assert filecmp.cmp(
            inputs["a21"] / f"data/{name}.parquet", out / f"data/{name}.parquet", shallow=False
        )
    for ep in range(2):  # videos are always carried byte for byte; data of later inputs is renumbered
        for cam in ("front", "wrist"):
            src = inputs["b21"] / f"videos/chunk-000/observation.images.{cam}/episode_{ep:06d}.mp4"
            dst = out / f"videos/chunk-000/observation.images.{cam}/episode_{ep + 3:06d}.mp4"
            assert filecmp.cmp(src, dst, shallow=False)


def test_v3_merge_keeps_whole_files_and_locates_episodes(inputs, tmp_path):
    out = tmp_path / "merged"
    merge([inputs["a3"], inputs["b3"]], out)
    front = "videos/observation.images.front/chunk-000"
    assert filecmp.cmp(inputs["a3"] / f"{front}/file-000.mp4", out / f"{front}/file-000.mp4", shallow=False)
    assert filecmp.cmp(
        inputs["a3"] / "data/chunk-000/file-000.parquet",
        out / "data/chunk-000/file-000.parquet",
        shallow=False,
    )
    episodes = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    assert episodes["dataset_from_index"].tolist() == [0, 17, 38, 57, 76]
    assert episodes["data/file_index"].tolist() == [0, 0, 0, 1, 2]
    assert episodes["videos/observation.images.front/file_index"].tolist() == [0, 0, 0, 1, 2]
    assert episodes["meta/episodes/file_index"].tolist() == [0] * 5
    assert sorted(c for c in episodes.columns if c.startswith("stats/observation.state/")) == [
        f"stats/observation.state/{k}" for k in ("count", "max", "mean", "min", "q01", "q99", "std")
    ]


def test_relative_stats_recomputed_when_inputs_agree(inputs, tmp_path, copy_of):
    a, b = copy_of(inputs["a3"]), copy_of(inputs["b21"])
    for root in (a, b):
        compute_and_write(root, "new_embodiment")
    out = tmp_path / "merged"
    report = merge([a, b], out)
    assert any("relative_stats.json recomputed" in n for n in report.notes)
    _, relative = compute_stats(out, "new_embodiment")
    stored = json.loads((out / "meta/relative_stats.json").read_text())
    assert stored["embodiment"] == "new_embodiment"
    for key, stats in relative.items():
        for name in ("mean", "std", "min", "max", "q01", "q99"):
            assert np.array_equal(np.asarray(stored["stats"][key][name]), stats[name])
    assert_stats_recomputed(out)


def test_relative_stats_follow_the_one_embodiment_named(inputs, tmp_path, copy_of):
    """A new session recorded without gr00t statistics still gets them for the base's embodiment."""
    a = copy_of(inputs["a3"])
    compute_and_write(a, "new_embodiment")
    out = tmp_path / "merged"
    report = merge([a, inputs["b3"]], out)
    assert any("recomputed for embodiment 'new_embodiment'" in n for n in report.notes)
    assert (out / "meta/relative_stats.json").is_file()


def test_relative_stats_left_out_when_embodiments_differ(inputs, tmp_path, copy_of):
    a, b = copy_of(inputs["a3"]), copy_of(inputs["b3"])
    compute_and_write(a, "new_embodiment")
    compute_and_write(b, "new_embodiment")
    stored = json.loads((b / "meta/relative_stats.json").read_text())
    (b / "meta/relative_stats.json").write_text(json.dumps({**stored, "embodiment": "other_robot"}))
    out = tmp_path / "merged"
    report = merge([a, b], out)
    assert not (out / "meta/relative_stats.json").exists()
    assert any("different embodiments ['new_embodiment', 'other_robot']" in n for n in report.notes)


def test_modality_must_agree(inputs, tmp_path, copy_of):
    b = copy_of(inputs["b3"])
    modality = json.loads((b / "meta/modality.json").read_text())
    modality["action"]["arm"]["absolute"] = True
    (b / "meta/modality.json").write_text(json.dumps(modality))
    with pytest.raises(
        DatasetOpsError,
        match=r"b3/meta/modality.json differs from .*a3/meta/modality.json in section\(s\) \['action'\]",
    ):
        merge([inputs["a3"], b], tmp_path / "merged")
    assert not (tmp_path / "merged").exists() and leftovers(tmp_path, "merged") == []


def test_input_without_modality_adopts_the_others(inputs, tmp_path, copy_of):
    b = copy_of(inputs["b3"])
    (b / "meta/modality.json").unlink()
    report = merge([inputs["a3"], b], tmp_path / "merged")
    assert (tmp_path / "merged/meta/modality.json").is_file()
    assert any("modality.json taken from the other inputs" in n for n in report.notes)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda info: info.update(fps=30),
            r"b3/meta/info.json: fps 30 differs from .*a3/meta/info.json: fps 15",
        ),
        (
            lambda info: info["features"]["action"].update(shape=[8]),
            r"b3/meta/info.json: feature 'action' is .*'shape': \[8\].* but .*a3/meta/info.json has",
        ),
        (lambda info: info.update(robot_type="other_arm"), r"robot_type 'other_arm' differs"),
    ],
)
def test_incompatible_inputs_are_refused(inputs, tmp_path, copy_of, edit, message):
    b = copy_of(inputs["b3"])
    info = json.loads((b / "meta/info.json").read_text())
    edit(info)
    (b / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetOpsError, match=message):
        merge([inputs["a3"], b], tmp_path / "merged")


def test_output_rules(inputs, tmp_path):
    with pytest.raises(DatasetOpsError, match="at least two"):
        merge([inputs["a3"]], tmp_path / "x")
    with pytest.raises(DatasetOpsError, match="given twice"):
        merge([inputs["a3"], inputs["a3"]], tmp_path / "x")
    with pytest.raises(DatasetOpsError, match="lies inside the input"):
        merge([inputs["a3"], inputs["b3"]], inputs["a3"] / "merged")
    (tmp_path / "x").mkdir()
    (tmp_path / "x/keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty .*overwrite=true"):
        merge([inputs["a3"], inputs["b3"]], tmp_path / "x")
    merge([inputs["a3"], inputs["b3"]], tmp_path / "x", overwrite=True)
    assert not (tmp_path / "x/keep.txt").exists()
    assert open_lerobot_dataset(tmp_path / "x").num_episodes == 5
