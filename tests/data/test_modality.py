"""meta/modality.json parsing, slicing, language resolution and the default writer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gr00t.data.demo import TASKS
from gr00t.data.lerobot import open_lerobot_dataset
from gr00t.data.modality import (
    ModalityError,
    default_modality,
    load_modality,
    parse_modality,
    write_default_modality,
)


def test_demo_modality(demo_dataset_v3):
    modality = load_modality(demo_dataset_v3)
    assert list(modality.state) == ["arm", "gripper"]
    assert (modality.state["arm"].start, modality.state["arm"].end, modality.state["arm"].width) == (0, 6, 6)
    assert modality.state["arm"].original_key == "observation.state"
    assert modality.action["gripper"].original_key == "action"
    assert modality.action["arm"].absolute is False and modality.action["gripper"].absolute is True
    assert {k: v.original_key for k, v in modality.video.items()} == {
        "front": "observation.images.front",
        "wrist": "observation.images.wrist",
    }
    assert modality.annotation["human.task_description"].original_key == "annotation.human.task_description"
    assert modality.columns() == ["observation.state", "action", "annotation.human.task_description"]


def test_split_and_language(demo_dataset_v21):
    reader = open_lerobot_dataset(demo_dataset_v21)
    modality = load_modality(demo_dataset_v21)
    data = reader.episode_data(4, modality.columns())
    state = modality.split("state", data)
    assert state["arm"].shape == (60, 6) and state["gripper"].shape == (60, 1)
    assert np.array_equal(np.concatenate([state["arm"], state["gripper"]], 1), data["observation.state"])
    action = modality.split("action", data, keys=["gripper"])
    assert list(action) == ["gripper"] and np.array_equal(action["gripper"][:, 0], data["action"][:, 6])
    text = modality.annotation_text(
        "human.task_description", data["annotation.human.task_description"][:2], reader.tasks, episode=4
    )
    assert text == [TASKS[1], TASKS[1]]
    with pytest.raises(
        ModalityError, match="episode 4, column 'annotation.human.task_description' holds task index 9"
    ):
        modality.annotation_text("human.task_description", [9], reader.tasks, episode=4)
    with pytest.raises(KeyError, match="'elbow'"):
        modality.split("state", data, keys=["elbow"])


def test_optional_fields_and_defaults():
    modality = parse_modality(
        {
            "state": {
                "eef_rot": {
                    "start": 3,
                    "end": 9,
                    "rotation_type": "rotation_6d",
                    "original_key": "observation.state.eef",
                }
            },
            "action": {"eef_pos": {"start": 0, "end": 3, "absolute": True, "dtype": "float32"}},
            "video": {"ego": {}},
            "annotation": {"human.action.task_description": {"original_key": "task_index"}},
        }
    )
    assert modality.state["eef_rot"].rotation_type == "rotation_6d"
    assert modality.state["eef_rot"].original_key == "observation.state.eef"
    assert modality.action["eef_pos"].absolute is True and modality.action["eef_pos"].dtype == "float32"
    assert modality.video["ego"].original_key == "observation.images.ego"
    assert modality.annotation["human.action.task_description"].original_key == "task_index"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"state": {"arm": {"start": 4, "end": 2}}}, r"state.arm needs 0 <= start < end, got start=4 end=2"),
        ({"action": {"arm": {"start": "0", "end": 2}}}, r"action.arm.start must be an integer"),
        ({"state": {"arm": {"start": 0, "end": 2, "absolut": True}}}, r"unknown field\(s\) \['absolut'\]"),
        ({"state": {"arm": {"start": 0, "end": 2, "absolute": "yes"}}}, r"absolute must be true/false"),
        ({"states": {}}, r"unknown section\(s\) \['states'\]"),
        ({"video": ["front"]}, r"'video' must be an object"),
    ],
)
def test_malformed_entries_are_named(data, message):
    with pytest.raises(ModalityError, match=message):
        parse_modality(data, "x/modality.json")


def test_default_modality_from_demo_info(demo_dataset_v3, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(demo_dataset_v3, root)
    (root / "meta/modality.json").unlink()
    path = write_default_modality(root)
    written = json.loads(path.read_text())
    assert written["state"] == {"state": {"start": 0, "end": 7}}
    assert written["action"] == {"action": {"start": 0, "end": 7}}
    assert written["video"] == {
        "front": {"original_key": "observation.images.front"},
        "wrist": {"original_key": "observation.images.wrist"},
    }
    assert written["annotation"] == {
        "human.task_description": {"original_key": "annotation.human.task_description"}
    }
    modality = load_modality(root)  # the default validates against the dataset
    reader = open_lerobot_dataset(root)
    assert modality.split("state", reader.episode_data(0, modality.columns()))["state"].shape == (60, 7)
    with pytest.raises(FileExistsError):
        write_default_modality(root)
    assert not list((root / "meta").glob(".*tmp*"))


def test_default_modality_groups_from_named_sublists():
    info = {
        "features": {
            "observation.state": {
                "dtype": "float32",
                "shape": [9],
                "names": {"arm": list("abcdef"), "hand": list("xyz")},
            },
            "observation.state.base": {"dtype": "float32", "shape": [2], "names": ["vx", "vy"]},
            "action": {"dtype": "float32", "shape": [7], "names": ["j0", "j1", "j2", "j3", "j4", "j5", "g"]},
            "observation.images.top": {"dtype": "video", "shape": [48, 64, 3]},
            "task_index": {"dtype": "int64", "shape": [1]},
        }
    }
    out = default_modality(info)
    assert out["state"] == {
        "arm": {"start": 0, "end": 6},
        "hand": {"start": 6, "end": 9},
        "base": {"original_key": "observation.state.base", "start": 0, "end": 2},
    }
    assert out["action"] == {"action": {"start": 0, "end": 7}}
    assert out["video"] == {"top": {"original_key": "observation.images.top"}}
    assert out["annotation"] == {"human.task_description": {"original_key": "task_index"}}
    parse_modality(out).validate(info["features"])
