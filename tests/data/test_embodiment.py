"""Embodiment configs (configs/embodiment/*.yaml, gr00t/data/embodiment.py)."""

import dataclasses

import pytest
import yaml

from gr00t.data.embodiment import (
    EmbodimentConfig,
    EmbodimentConfigError,
    available_embodiments,
    load_embodiment,
    registry,
    tag_to_projector_index,
)

# SPEC §2.2
EXPECTED = {
    "oxe_google": ("oxe_google", 0, 8),
    "oxe_widowx": ("oxe_widowx", 1, 8),
    "libero_panda": ("libero_panda", 2, 16),
    "g1": ("unitree_g1", 8, 30),
    "new_embodiment": ("new_embodiment", 10, 16),
    # not in SPEC: the demo robot with the sub-task channel of `gr00t-demo-data subtasks=true`
    "new_embodiment_subtask": ("new_embodiment_subtask", 11, 16),
    "robocasa_panda_omron": ("robocasa_panda_omron", 13, 16),
    "oxe_droid": ("oxe_droid", 16, 32),
    "gr1": ("gr1", 20, 16),
    "behavior_r1_pro": ("behavior_r1_pro", 24, 32),
}


def test_shipped_set():
    assert set(available_embodiments()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_yaml_loads(name):
    cfg = load_embodiment(name)
    tag, index, horizon = EXPECTED[name]
    assert (cfg.tag, cfg.projector_index, cfg.action_horizon) == (tag, index, horizon)
    assert cfg.action.delta_indices == tuple(range(horizon))
    assert cfg.video.delta_indices == (0,) and cfg.state.delta_indices == (0,)
    assert cfg.video.keys and cfg.state.keys and cfg.language.keys
    for g in cfg.action.groups:
        if g.is_relative:
            assert g.reference_key in cfg.state.keys
    # round trip through the plain form
    again = EmbodimentConfig.from_dict(cfg.to_dict(), source=cfg.source)
    assert again == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.tag = "x"  # type: ignore[misc]


def test_new_embodiment_matches_demo_dataset():
    cfg = load_embodiment("new_embodiment")
    assert cfg.video.keys == ("front", "wrist")
    assert cfg.state.keys == ("arm", "gripper")
    arm, gripper = cfg.action.groups
    assert (arm.key, arm.rep, arm.type, arm.reference_key) == ("arm", "relative", "joint", "arm")
    assert (gripper.key, gripper.rep, gripper.type) == ("gripper", "absolute", "joint")
    assert cfg.language.keys == ("annotation.human.task_description",)
    assert cfg.action_horizon == 16


def test_registry_and_tag_lookup():
    reg = registry()
    assert {k: v for k, v in reg.items()} == {k: (t, i) for k, (t, i, _) in EXPECTED.items()}
    tags = tag_to_projector_index()
    assert tags["unitree_g1"] == 8 and tags["new_embodiment"] == 10
    assert len(set(tags.values())) == len(tags)
    assert load_embodiment("unitree_g1").name == "g1"  # a tag resolves too


def test_unknown_embodiment_lists_available_and_suggests():
    with pytest.raises(EmbodimentConfigError) as info:
        load_embodiment("new_embodment")
    msg = str(info.value)
    assert "Did you mean 'new_embodiment'" in msg
    for name in EXPECTED:
        assert name in msg


def write(tmp_path, data, name="robot.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def base():
    return {
        "tag": "my_robot",
        "projector_index": 31,
        "video": {"keys": ["cam"], "delta_indices": [0]},
        "state": {"keys": ["eef", "gripper"], "delta_indices": [0]},
        "action": {
            "horizon": 4,
            "groups": [
                {
                    "key": "eef",
                    "rep": "relative",
                    "type": "eef",
                    "format": "xyz_rot6d",
                    "state_key": "eef",
                    "state_format": "xyz_quat_wxyz",
                },
                {"key": "gripper"},
            ],
        },
        "language": {"keys": ["annotation.human.task_description"]},
    }


def test_user_yaml_by_path(tmp_path):
    cfg = load_embodiment(write(tmp_path, base()))
    assert cfg.name == "robot" and cfg.tag == "my_robot"
    eef = cfg.action.group("eef")
    assert (eef.format, eef.reference_format) == ("xyz_rot6d", "xyz_quat_wxyz")
    assert cfg.action.group("gripper").rep == "absolute"  # defaults
    assert cfg.language.delta_indices == (0,)


@pytest.mark.parametrize(
    "edit, key, fragment",
    [
        (lambda d: d.pop("tag"), "tag", "missing"),
        (lambda d: d.update(projector_index=32), "projector_index", "[0, 32)"),
        (lambda d: d.update(projektor_index=1), "projektor_index", "Did you mean 'projector_index'"),
        (lambda d: d["action"]["groups"][1].update(rep="rel"), "action.groups[1].rep", "relative"),
        (lambda d: d["action"]["groups"][0].update(format="euler"), "action.groups[0].format", "xyz_rotvec"),
        (
            lambda d: d["action"]["groups"][1].update(format="xyz_rot6d"),
            "action.groups[1].format",
            "only eef",
        ),
        (lambda d: d["action"]["groups"][0].update(state_key="nope"), "action.groups[0].state_key", "nope"),
        (lambda d: d["action"].update(horizon=0), "action.horizon", "positive"),
        (lambda d: d["action"].update(delta_indices=[0, 1, 2]), "action.horizon", "disagrees"),
        (lambda d: d["video"].update(delta_indices=[1, 0]), "video.delta_indices", "increasing"),
        (lambda d: d["state"].update(normalization={"eef": "zscore"}), "state.normalization.eef", "mean_std"),
        (lambda d: d["state"].update(sin_cos=["elbow"]), "state.sin_cos[0]", "not a state key"),
        (lambda d: d["state"].update(keys=["eef", "eef"]), "state.keys", "duplicate"),
    ],
)
def test_validation_names_file_and_key(tmp_path, edit, key, fragment):
    data = base()
    edit(data)
    path = write(tmp_path, data)
    with pytest.raises(EmbodimentConfigError) as info:
        load_embodiment(path)
    msg = str(info.value)
    assert str(path) in msg and repr(key) in msg and fragment in msg


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tag: [unclosed\n")
    with pytest.raises(EmbodimentConfigError, match="not valid YAML"):
        load_embodiment(bad)
    with pytest.raises(FileNotFoundError):
        load_embodiment(tmp_path / "absent.yaml")


def test_accepts_omegaconf_node():
    from omegaconf import OmegaConf

    node = OmegaConf.create(load_embodiment("gr1").to_dict())
    assert load_embodiment(node) == EmbodimentConfig.from_dict(load_embodiment("gr1").to_dict())
