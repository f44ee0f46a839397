"""Statistics and modality configs of reference (NVIDIA GR00T N1.6) checkpoint folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.reference_metadata import (
    ReferenceMetadataError,
    has_reference_metadata,
    load_reference_metadata,
    reference_action_configs,
    reference_embodiment_dict,
    reference_stats_for,
)
from gr00t.data.state_action import StateActionProcessor
from gr00t.data.stats import StatsError

RNG = np.random.default_rng(7)


def group_stats(width: int, horizon: int | None = None) -> dict[str, list]:
    """Statistics of one group as the reference writes them (lists; [H][D] for relative ones)."""
    shape = (width,) if horizon is None else (horizon, width)
    lo = RNG.uniform(-2.0, -0.5, shape)
    hi = RNG.uniform(0.5, 2.0, shape)
    return {
        "mean": RNG.uniform(-0.1, 0.1, shape).tolist(),
        "std": RNG.uniform(0.2, 1.0, shape).tolist(),
        "min": lo.tolist(),
        "max": hi.tolist(),
        "q01": (lo * 0.9).tolist(),
        "q99": (hi * 0.9).tolist(),
    }


def new_embodiment_modality(arm_rep: str = "RELATIVE", horizon: int = 16) -> dict:
    return {
        "video": {"delta_indices": [0], "modality_keys": ["front", "wrist"]},
        "state": {
            "delta_indices": [0],
            "modality_keys": ["arm", "gripper"],
            "sin_cos_embedding_keys": ["arm"],
            "mean_std_embedding_keys": None,
            "action_configs": None,
        },
        "action": {
            "delta_indices": list(range(horizon)),
            "modality_keys": ["arm", "gripper"],
            "sin_cos_embedding_keys": None,
            "mean_std_embedding_keys": ["gripper"],
            "action_configs": [
                {"rep": arm_rep, "type": "NON_EEF", "format": "DEFAULT", "state_key": "arm"},
                {"rep": "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT", "state_key": None},
            ],
        },
        "language": {"delta_indices": [0], "modality_keys": ["annotation.human.task_description"]},
    }


def write_reference(
    folder: Path, *, arm_rep: str = "RELATIVE", rel_horizon: int = 16, tags=("new_embodiment", "gr1")
) -> dict:
    """statistics.json / processor_config.json / embodiment_id.json as the reference processor saves them."""
    folder.mkdir(parents=True, exist_ok=True)
    stats = {}
    if "new_embodiment" in tags:
        stats["new_embodiment"] = {
            "state": {"arm": group_stats(6), "gripper": group_stats(1)},
            "action": {"arm": group_stats(6), "gripper": group_stats(1)},
            "relative_action": {"arm": group_stats(6, rel_horizon)},
        }
    if "gr1" in tags:
        stats["gr1"] = {"state": {"waist": group_stats(3)}, "action": {"waist": group_stats(3)}}
    processor = {
        "processor_class": "Gr00tN1d6Processor",
        "processor_kwargs": {
            "modality_configs": {"new_embodiment": new_embodiment_modality(arm_rep, rel_horizon)},
            "max_state_dim": 128,
            "max_action_dim": 128,
            "max_action_horizon": 50,
            "use_percentiles": False,
            "clip_outliers": True,
            "apply_sincos_state_encoding": True,
            "use_relative_action": True,
        },
    }
    (folder / "statistics.json").write_text(json.dumps(stats))
    (folder / "processor_config.json").write_text(json.dumps(processor))
    (folder / "embodiment_id.json").write_text(json.dumps({"new_embodiment": 10, "gr1": 20}))
    return stats


def test_stats_for_matching_embodiment_are_the_release_values(tmp_path):
    written = write_reference(tmp_path)
    assert has_reference_metadata(tmp_path)
    result = reference_stats_for(tmp_path, "new_embodiment")
    assert result is not None
    grouped, relative = result
    assert set(grouped) == {"state", "action"}
    assert set(grouped["state"]) == {"arm", "gripper"} and set(grouped["action"]) == {"arm", "gripper"}
    for section in ("state", "action"):
        for key, stats in grouped[section].items():
            for name, values in written["new_embodiment"][section][key].items():
                np.testing.assert_array_equal(stats[name], np.asarray(values))
                assert stats[name].dtype == np.float64 and stats[name].ndim == 1
    assert set(relative) == {"arm"} and relative["arm"]["min"].shape == (16, 6)
    np.testing.assert_array_equal(
        relative["arm"]["max"], np.asarray(written["new_embodiment"]["relative_action"]["arm"]["max"])
    )


def test_release_stats_drive_the_state_action_processor(tmp_path):
    written = write_reference(tmp_path)["new_embodiment"]
    grouped, relative = reference_stats_for(tmp_path, "new_embodiment")
    proc = StateActionProcessor(
        "new_embodiment",
        grouped,
        relative,
        max_state_dim=32,
        max_action_dim=32,
        max_action_horizon=16,
        use_relative_action=True,
    )
    lo, hi = written["state"]["gripper"]["min"][0], written["state"]["gripper"]["max"][0]
    state = {"arm": np.full((1, 6), 0.3), "gripper": np.full((1, 1), lo + 0.25 * (hi - lo))}
    encoded, width = proc.encode_state(state)
    assert width == 7
    assert encoded[0, 6] == pytest.approx(-0.5)  # gripper after the 6 arm dims, min-max to [-1, 1]
    # relative arm actions use the release's per-step relative statistics
    rel = written["relative_action"]["arm"]
    target = np.array([[rel["min"][t][0] + 0.75 * (rel["max"][t][0] - rel["min"][t][0]) for t in range(16)]])
    arm = np.full((16, 6), 0.3)
    arm[:, 0] = 0.3 + target[0]
    actions, mask = proc.encode_action({"arm": arm, "gripper": np.zeros((16, 1))}, state)
    np.testing.assert_allclose(actions[:16, 0], 0.5, atol=1e-5)
    assert mask[:16, :7].all() and not mask[:, 7:].any()


def test_absent_tag_gives_none_and_metadata_lists_every_tag(tmp_path):
    write_reference(tmp_path, tags=("gr1",))
    assert reference_stats_for(tmp_path, "new_embodiment") is None
    meta = load_reference_metadata(tmp_path)
    assert set(meta.embodiments) == {"gr1"}
    assert meta.embodiments["gr1"].projector_index == 20
    assert (
        meta.processor_kwargs["use_relative_action"] is True
        and "modality_configs" not in meta.processor_kwargs
    )


def test_semantic_mismatch_lists_every_difference(tmp_path):
    write_reference(tmp_path, arm_rep="ABSOLUTE", rel_horizon=50)
    with pytest.raises(ReferenceMetadataError) as err:
        reference_stats_for(tmp_path, "new_embodiment")
    text = str(err.value)
    assert "statistics.json" in text and "'new_embodiment'" in text
    assert "'arm' is relative here but absolute in the release" in text
    assert "horizon 50" in text and "16" in text
    assert isinstance(err.value, StatsError)


def test_missing_group_is_named(tmp_path):
    write_reference(tmp_path)
    data = json.loads((tmp_path / "statistics.json").read_text())
    del data["new_embodiment"]["action"]["gripper"]
    (tmp_path / "statistics.json").write_text(json.dumps(data))
    with pytest.raises(ReferenceMetadataError, match=r"action groups \['gripper'\] have no statistics"):
        reference_stats_for(tmp_path, "new_embodiment")


def test_relative_stats_not_needed_without_relative_actions(tmp_path):
    write_reference(tmp_path, rel_horizon=50)
    grouped, relative = reference_stats_for(tmp_path, "new_embodiment", use_relative_action=False)
    assert relative == {} and set(grouped["action"]) == {"arm", "gripper"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["new_embodiment"]["state"]["arm"].pop("std"),
            r"new_embodiment\.state\.arm: missing statistics \['std'\]",
        ),
        (
            lambda d: d["new_embodiment"]["state"]["arm"].update(min=[[0.0] * 6]),
            r"state\.arm\.min: shape \[1, 6\], expected \[D\]",
        ),
        (
            lambda d: d["new_embodiment"]["relative_action"]["arm"].update(mean=[0.0] * 6),
            r"relative_action\.arm\.mean: shape \[6\], expected \[H, D\]",
        ),
        (
            lambda d: d["new_embodiment"]["state"]["arm"].update(max=[1.0] * 5),
            r"state\.arm: statistics disagree in shape",
        ),
        (
            lambda d: d["new_embodiment"]["state"]["arm"].update(mean=["x"] * 6),
            r"state\.arm\.mean: not a numeric array",
        ),
    ],
)
def test_malformed_statistics_name_file_and_key(tmp_path, mutate, message):
    write_reference(tmp_path)
    data = json.loads((tmp_path / "statistics.json").read_text())
    mutate(data)
    (tmp_path / "statistics.json").write_text(json.dumps(data))
    with pytest.raises(ReferenceMetadataError, match=message) as err:
        load_reference_metadata(tmp_path)
    assert str(tmp_path / "statistics.json") in str(err.value)


def test_reference_modality_config_becomes_an_embodiment(tmp_path):
    write_reference(tmp_path)
    meta = load_reference_metadata(tmp_path)
    actions = reference_action_configs(meta, "new_embodiment")
    assert (
        actions["arm"].rep == "relative"
        and actions["arm"].state_key == "arm"
        and actions["gripper"].rep == "absolute"
    )
    emb = EmbodimentConfig.from_dict(reference_embodiment_dict(meta, "new_embodiment"), source="reference")
    shipped = load_embodiment("new_embodiment")
    assert emb.tag == "new_embodiment" and emb.projector_index == 10
    assert emb.video.keys == shipped.video.keys and emb.state.keys == shipped.state.keys
    assert emb.state.sin_cos == ("arm",)
    assert emb.action.keys == shipped.action.keys and emb.action_horizon == 16
    assert emb.action.group("arm").is_relative and emb.action.group("arm").reference_key == "arm"
    assert emb.action.group("gripper").normalization == "mean_std"
    assert emb.action.group("arm").normalization == "min_max"
    assert emb.language.keys == ("annotation.human.task_description",)
    # and the release statistics fit the embodiment built from the release's own modality config
    assert reference_stats_for(meta, emb) is not None


def test_percentiles_and_enum_values_are_understood(tmp_path):
    write_reference(tmp_path)
    proc = json.loads((tmp_path / "processor_config.json").read_text())
    proc["processor_kwargs"]["use_percentiles"] = True
    cfg = proc["processor_kwargs"]["modality_configs"]["new_embodiment"]["action"]["action_configs"][0]
    cfg.update(rep="relative", type="eef", format="xyz+rot6d")  # enum values instead of names
    (tmp_path / "processor_config.json").write_text(json.dumps(proc))
    meta = load_reference_metadata(tmp_path)
    arm = reference_action_configs(meta, "new_embodiment")["arm"]
    assert (arm.rep, arm.type, arm.format) == ("relative", "eef", "xyz_rot6d")
    d = reference_embodiment_dict(meta, "new_embodiment")
    assert d["state"]["normalization"] == {"arm": "percentile", "gripper": "percentile"}
    cfg.update(rep="SIDEWAYS")
    (tmp_path / "processor_config.json").write_text(json.dumps(proc))
    with pytest.raises(ReferenceMetadataError, match=r"action_configs\[0\]\.rep='SIDEWAYS'"):
        reference_action_configs(load_reference_metadata(tmp_path), "new_embodiment")


def test_legacy_experiment_cfg_metadata_statistics(tmp_path):
    stats = {
        "state": {"arm": group_stats(6), "gripper": group_stats(1)},
        "action": {"arm": group_stats(6), "gripper": group_stats(1)},
    }
    path = tmp_path / "experiment_cfg" / "metadata.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {"new_embodiment": {"statistics": stats, "modalities": {}, "embodiment_tag": "new_embodiment"}}
        )
    )
    assert has_reference_metadata(tmp_path)
    grouped, relative = reference_stats_for(tmp_path, "new_embodiment", use_relative_action=False)
    np.testing.assert_array_equal(grouped["action"]["arm"]["q99"], np.asarray(stats["action"]["arm"]["q99"]))
    with pytest.raises(
        ReferenceMetadataError, match="relative action group 'arm' has no relative_action statistics"
    ):
        reference_stats_for(tmp_path, "new_embodiment")


def test_own_processor_config_is_not_reference_metadata(tmp_path):
    (tmp_path / "processor_config.json").write_text(json.dumps({"format_version": 1, "embodiments": {}}))
    assert not has_reference_metadata(tmp_path)
    with pytest.raises(ReferenceMetadataError, match="no reference statistics"):
        load_reference_metadata(tmp_path)
