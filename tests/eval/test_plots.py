"""Eval plots people can read: joint names from info.json, per-dimension MSE, a header, a grid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gr00t.data.dataset import Gr00tDataset
from gr00t.data.modality import parse_modality
from gr00t.eval.joint_names import action_dim_names, dataset_dim_names, feature_names
from gr00t.eval.plots import episode_figure, grid_shape, plot_episode


@pytest.mark.parametrize(
    ("names", "shape", "expected"),
    [
        (["a", "b", "c"], [3], ["a", "b", "c"]),
        ({"motors": ["a", "b", "c"]}, [3], ["a", "b", "c"]),  # LeRobot v2 style
        ({"arm": ["a", "b"], "hand": ["c"]}, [3], ["a", "b", "c"]),
        ([["a", "b", "c"]], [1, 3], ["a", "b", "c"]),
        (None, [3], None),
        (["a", "b"], [3], None),  # wrong count
        ({"motors": ["a", "b", 3]}, [3], None),  # not strings
        (["a", "", "c"], [3], None),  # an empty name
    ],
)
def test_feature_names(names, shape, expected):
    assert feature_names({"dtype": "float32", "shape": shape, "names": names}) == expected


def test_action_dim_names_follow_modality_slices():
    modality = parse_modality(
        {
            "state": {"arm": {"start": 0, "end": 3}},
            "action": {
                "arm": {"start": 0, "end": 2},
                "gripper": {"start": 2, "end": 3},
                "base": {"start": 0, "end": 2, "original_key": "action.base"},
            },
        },
        "modality.json",
    )
    features = {
        "action": {"dtype": "float32", "shape": [3], "names": {"motors": ["shoulder", "elbow", "grip"]}},
        "action.base": {"dtype": "float32", "shape": [2], "names": None},
    }
    assert action_dim_names(features, modality) == {
        "arm": ["shoulder", "elbow"],
        "gripper": ["grip"],
        "base": ["base[0]", "base[1]"],
    }


def _with_action_names(src: Path, dst: Path, names) -> Path:
    shutil.copytree(src, dst)
    info_path = dst / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["action"]["names"] = names
    info_path.write_text(json.dumps(info, indent=2))
    return dst


def test_dataset_names_list_dict_and_absent(demo_dataset_v3, tmp_path):
    listed = dataset_dim_names(Gr00tDataset(demo_dataset_v3, "new_embodiment"))
    assert listed == {"arm": [f"arm_joint_{i}" for i in range(6)], "gripper": ["gripper"]}
    motors = [f"j{i}" for i in range(7)]
    as_dict = _with_action_names(demo_dataset_v3, tmp_path / "dict", {"motors": motors})
    assert dataset_dim_names(Gr00tDataset(as_dict, "new_embodiment")) == {
        "arm": motors[:6],
        "gripper": ["j6"],
    }
    absent = _with_action_names(demo_dataset_v3, tmp_path / "none", None)
    assert dataset_dim_names(Gr00tDataset(absent, "new_embodiment")) == {
        "arm": [f"arm[{i}]" for i in range(6)],
        "gripper": ["gripper[0]"],
    }


def _episode(dims: dict[str, int], steps: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    gt = {k: rng.normal(size=(steps, d)).astype(np.float32) for k, d in dims.items()}
    pred = {k: v + rng.normal(scale=0.1 * (1 + np.arange(v.shape[1])), size=v.shape) for k, v in gt.items()}
    return pred, gt


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_panels_named_with_their_mse_and_nothing_overlaps():
    pred, gt = _episode({"arm": 6, "gripper": 1})
    names = {"arm": [f"arm_joint_{i}" for i in range(6)], "gripper": ["gripper"]}
    header = ["runs/demo/checkpoint-2  |  demo_data episode 3", "task: 'pick up the red block'", "48 steps"]
    fig = episode_figure(pred, gt, [0, 16, 32], dim_names=names, header=header)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for sub in fig.subfigs for ax in sub.axes]
    assert len(axes) == 7
    titles = [ax.get_title(loc="left") for ax in axes]
    for i, title in enumerate(titles[:6]):
        mse = float(np.mean((pred["arm"][:, i].astype(np.float64) - gt["arm"][:, i]) ** 2))
        assert title == f"arm_joint_{i}   MSE {mse:.3g}"
    assert titles[6].startswith("gripper   MSE ")
    (top, _grid) = fig.subfigs
    (text,) = top.texts
    assert text.get_text() == "\n".join(header)
    (legend,) = top.legends
    assert [t.get_text() for t in legend.get_texts()] == ["recorded", "predicted", "policy queried"]
    boxes = [text.get_window_extent(renderer), legend.get_window_extent(renderer)]
    boxes += [ax.get_tightbbox(renderer) for ax in axes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not _overlap(a, b), (a, b)


def test_duplicate_names_get_their_key():
    pred, gt = _episode({"left": 2, "right": 2})
    fig = episode_figure(pred, gt, [0], dim_names={"left": ["x", "y"], "right": ["x", "z"]})
    labels = [ax.get_title(loc="left").split("   ")[0] for sub in fig.subfigs for ax in sub.axes]
    assert labels == ["left.x", "y", "right.x", "z"]


def test_large_action_space_is_a_grid(tmp_path):
    assert grid_shape(1) == (1, 1) and grid_shape(3) == (3, 1) and grid_shape(7) == (4, 2)
    assert grid_shape(29) == (8, 4)
    pred, gt = _episode({"left_leg": 6, "right_leg": 6, "waist": 3, "left_arm": 7, "right_arm": 7})
    path = plot_episode(pred, gt, [0, 16, 32], tmp_path / "g1.png", header=["g1 episode 0"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = Image.open(path).size
    assert width >= 1000 and height <= 1800 and height < 1.3 * width  # not a 3,800 px column
    assert not [p for p in tmp_path.iterdir() if p.name != "g1.png"]  # no temporary left


def test_mismatched_shapes_are_refused(tmp_path):
    pred, gt = _episode({"arm": 2})
    with pytest.raises(ValueError, match="key 'arm'"):
        plot_episode({"arm": pred["arm"][:3]}, gt, [0], tmp_path / "x.png")
    with pytest.raises(ValueError, match="lack key 'arm'"):
        plot_episode({}, gt, [0], tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
