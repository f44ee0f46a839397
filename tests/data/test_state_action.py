"""StateActionProcessor (SPEC §2.3): encode/decode inverse pairs, padding, errors."""

import json

import numpy as np
import pytest

from gr00t.data import rotation as R
from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.state_action import StateActionProcessor

H = 4


def stats_of(x):
    """Plain numpy statistics over all leading axes (the test's own reference computation)."""
    return step_stats(x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x)


def step_stats(x):
    """Statistics over axis 0; for chunks [N, H, D] that is per horizon step -> each [H, D]."""
    return {
        "mean": x.mean(0),
        "std": x.std(0),
        "min": x.min(0),
        "max": x.max(0),
        "q01": np.quantile(x, 0.01, axis=0),
        "q99": np.quantile(x, 0.99, axis=0),
    }


def make_embodiment(arm_norm="min_max", grip_norm="min_max", eef_format="xyz_rot6d", state_norm=None):
    return EmbodimentConfig.from_dict(
        {
            "tag": "test_bot",
            "projector_index": 5,
            "video": {"keys": ["cam"]},
            "state": {
                "keys": ["arm", "eef", "gripper"],
                "sin_cos": ["arm"],
                "normalization": state_norm or {},
            },
            "action": {
                "horizon": H,
                "groups": [
                    {"key": "arm", "rep": "relative", "type": "joint", "normalization": arm_norm},
                    {"key": "eef", "rep": "relative", "type": "eef", "format": eef_format},
                    {"key": "gripper", "rep": "absolute", "normalization": grip_norm},
                ],
            },
            "language": {"keys": ["annotation.human.task_description"]},
        }
    )


def random_pose(rng, n, fmt):
    xyz = rng.normal(size=(n, 3))
    m = R.rotvec_to_matrix(rng.normal(size=(n, 3)))
    rot = R.matrix_to_rot6d(m) if fmt == "xyz_rot6d" else R.matrix_to_rotvec(m)
    return np.concatenate([xyz, rot], -1)


def make_data(rng, n, fmt="xyz_rot6d"):
    """n samples: state [n, 1, D] and absolute action chunks [n, H, D]."""
    arm_s = rng.uniform(-2, 2, size=(n, 1, 3))
    arm_a = arm_s + rng.normal(scale=0.3, size=(n, H, 3))
    eef_s = random_pose(rng, n, fmt)[:, None]
    eef_a = np.stack([R.compose_pose(eef_s[i, 0], random_pose(rng, H, fmt) * 0.2, fmt) for i in range(n)])
    grip_s = rng.uniform(0, 1, size=(n, 1, 1))
    grip_a = rng.uniform(0, 1, size=(n, H, 1))
    return {"arm": arm_s, "eef": eef_s, "gripper": grip_s}, {"arm": arm_a, "eef": eef_a, "gripper": grip_a}


def build(emb, state, action, fmt="xyz_rot6d", **kw):
    stats = {
        "state": {k: stats_of(v) for k, v in state.items()},
        "action": {k: stats_of(v) for k, v in action.items()},
    }
    rel = {
        "arm": step_stats(action["arm"] - state["arm"]),
        "eef": step_stats(
            np.stack(
                [
                    R.relative_pose(state["eef"][i, 0], action["eef"][i], fmt)
                    for i in range(len(action["eef"]))
                ]
            )
        ),
    }
    args = dict(
        max_state_dim=32, max_action_dim=24, max_action_horizon=6, apply_sincos=True, use_relative_action=True
    )
    args.update(kw)
    return StateActionProcessor(emb, stats, rel, **args)


@pytest.mark.parametrize("fmt", ["xyz_rot6d", "xyz_rotvec"])
@pytest.mark.parametrize("norm", ["min_max", "mean_std", "percentile"])
def test_encode_decode_round_trip(fmt, norm):
    rng = np.random.default_rng(0)
    state, action = make_data(rng, 64, fmt)
    proc = build(make_embodiment(arm_norm=norm, grip_norm=norm, eef_format=fmt), state, action, fmt)
    if norm == "percentile":  # only values inside [q01, q99] survive the clip: keep such samples
        rel = action["arm"] - state["arm"]
        keep = np.all(
            (rel >= proc._action_norm["arm"].low) & (rel <= proc._action_norm["arm"].high), axis=(1, 2)
        )
        keep &= np.all(
            (action["gripper"] >= proc._action_norm["gripper"].low)
            & (action["gripper"] <= proc._action_norm["gripper"].high),
            axis=(1, 2),
        )
        keep[np.flatnonzero(keep)[8:]] = False
        state = {k: v[keep] for k, v in state.items()}
        action = {k: v[keep] for k, v in action.items()}
        assert len(action["arm"]) >= 4
    for i in range(len(action["arm"])):  # unbatched
        s = {k: v[i] for k, v in state.items()}
        a = {k: v[i] for k, v in action.items()}
        enc, mask = proc.encode_action(a, s)
        dec = proc.decode_action(enc, s)
        np.testing.assert_allclose(dec["arm"], a["arm"], atol=2e-5)
        np.testing.assert_allclose(dec["gripper"], a["gripper"], atol=2e-5)
        np.testing.assert_allclose(
            R.pose_to_matrix(dec["eef"], fmt), R.pose_to_matrix(a["eef"], fmt), atol=1e-4
        )
    enc, _ = proc.encode_action(action, state)  # batched [B, H, D] with state [B, T, D]
    dec = proc.decode_action(enc, state)
    assert dec["arm"].dtype == np.float32 and dec["arm"].shape == action["arm"].shape
    np.testing.assert_allclose(dec["arm"], action["arm"], atol=2e-5)


def test_relative_normalisation_uses_per_step_stats():
    rng = np.random.default_rng(1)
    state, action = make_data(rng, 32)
    proc = build(make_embodiment(), state, action)
    enc, _ = proc.encode_action({k: v[0] for k, v in action.items()}, {k: v[0] for k, v in state.items()})
    rel = action["arm"] - state["arm"]
    lo, hi = rel.min(0), rel.max(0)  # [H, D]
    expected = np.clip(2 * (rel[0] - lo) / (hi - lo) - 1, -1, 1)
    np.testing.assert_allclose(enc[:H, :3], expected, atol=1e-6)
    # absolute gripper uses the plain stats
    g = action["gripper"]
    np.testing.assert_allclose(enc[:H, 12:13], 2 * (g[0] - g.min()) / (g.max() - g.min()) - 1, atol=1e-6)


def test_absolute_mode_ignores_relative_stats():
    rng = np.random.default_rng(2)
    state, action = make_data(rng, 16)
    proc = build(make_embodiment(), state, action, use_relative_action=False)
    a = {k: v[3] for k, v in action.items()}
    enc, _ = proc.encode_action(a)  # no state needed
    lo, hi = action["arm"].reshape(-1, 3).min(0), action["arm"].reshape(-1, 3).max(0)
    np.testing.assert_allclose(enc[:H, :3], 2 * (a["arm"] - lo) / (hi - lo) - 1, atol=1e-6)
    np.testing.assert_allclose(proc.decode_action(enc)["arm"], a["arm"], atol=2e-5)


def test_state_encoding_sincos_and_minmax():
    rng = np.random.default_rng(3)
    state, action = make_data(rng, 16)
    proc = build(make_embodiment(state_norm={"gripper": "mean_std"}), state, action)
    s = {k: v[0] for k, v in state.items()}
    enc, width = proc.encode_state(s)
    assert enc.shape == (1, 32) and enc.dtype == np.float32 and width == 6 + 9 + 1
    np.testing.assert_allclose(enc[0, :3], np.sin(s["arm"][0]), atol=1e-6)
    np.testing.assert_allclose(enc[0, 3:6], np.cos(s["arm"][0]), atol=1e-6)
    e = state["eef"].reshape(-1, 9)
    np.testing.assert_allclose(
        enc[0, 6:15], np.clip(2 * (s["eef"][0] - e.min(0)) / (e.max(0) - e.min(0)) - 1, -1, 1), atol=1e-6
    )
    g = state["gripper"].reshape(-1)
    np.testing.assert_allclose(enc[0, 15], (s["gripper"][0, 0] - g.mean()) / g.std(), atol=1e-5)
    assert np.all(enc[0, width:] == 0)
    # sin/cos off: the arm is min-max normalised and the width shrinks
    proc2 = build(make_embodiment(), state, action, apply_sincos=False)
    enc2, width2 = proc2.encode_state(s)
    assert width2 == 3 + 9 + 1
    a = state["arm"].reshape(-1, 3)
    np.testing.assert_allclose(
        enc2[0, :3], 2 * (s["arm"][0] - a.min(0)) / (a.max(0) - a.min(0)) - 1, atol=1e-6
    )


def test_minmax_constant_dim_and_clipping():
    emb = EmbodimentConfig.from_dict(
        {
            "tag": "c",
            "projector_index": 0,
            "video": {"keys": ["v"]},
            "language": {"keys": ["l"]},
            "state": {"keys": ["s"]},
            "action": {"horizon": 2, "groups": [{"key": "s"}]},
        }
    )
    st = {"min": [0.0, 5.0], "max": [2.0, 5.0], "mean": [1, 5], "std": [1, 0], "q01": [0, 5], "q99": [2, 5]}
    proc = StateActionProcessor(
        emb,
        {"state": {"s": st}, "action": {"s": st}},
        max_state_dim=4,
        max_action_dim=4,
        max_action_horizon=2,
    )
    enc, _ = proc.encode_state({"s": np.array([[1.0, 5.0], [3.0, 5.0], [-1.0, 7.0]])})
    np.testing.assert_array_equal(enc[:, :2], [[0, 0], [1, 0], [-1, 0]])
    act, _ = proc.encode_action({"s": np.array([[1.0, 5.0], [0.5, 5.0]])})
    dec = proc.decode_action(act)
    np.testing.assert_allclose(dec["s"], [[1.0, 5.0], [0.5, 5.0]])
    # decoding clips out-of-range predictions
    np.testing.assert_allclose(proc.decode_action(np.full((2, 4), 3.0))["s"], [[2.0, 5.0], [2.0, 5.0]])


def test_padding_and_action_mask():
    rng = np.random.default_rng(4)
    state, action = make_data(rng, 8)
    proc = build(make_embodiment(), state, action, max_action_horizon=6, max_action_dim=20)
    enc, mask = proc.encode_action({k: v[0] for k, v in action.items()}, {k: v[0] for k, v in state.items()})
    assert enc.shape == mask.shape == (6, 20)
    assert proc.action_width == 13
    np.testing.assert_array_equal(mask[:H, :13], 1)
    assert mask.sum() == H * 13
    assert np.all(enc[H:] == 0) and np.all(enc[:, 13:] == 0)
    np.testing.assert_array_equal(proc.action_mask(), mask)
    # decode accepts the padded array, batched
    dec = proc.decode_action(np.stack([enc, enc]), {k: np.stack([v[0], v[0]]) for k, v in state.items()})
    assert dec["eef"].shape == (2, H, 9)


def test_errors_name_the_key():
    rng = np.random.default_rng(5)
    state, action = make_data(rng, 8)
    with pytest.raises(ValueError, match="state key 'eef'.*max_state_dim=10"):
        build(make_embodiment(), state, action, max_state_dim=10)
    with pytest.raises(ValueError, match="action key 'eef'.*max_action_dim=8"):
        build(make_embodiment(), state, action, max_action_dim=8)
    with pytest.raises(ValueError, match="max_action_horizon is 3"):
        build(make_embodiment(), state, action, max_action_horizon=3)
    stats = {
        "state": {k: stats_of(v) for k, v in state.items()},
        "action": {k: stats_of(v) for k, v in action.items() if k != "gripper"},
    }
    kw = dict(max_state_dim=32, max_action_dim=24, max_action_horizon=6)
    with pytest.raises(ValueError, match="missing statistics for action key 'gripper'"):
        StateActionProcessor(make_embodiment(), stats, {}, **kw)
    stats["action"]["gripper"] = stats_of(action["gripper"])
    with pytest.raises(ValueError, match="missing relative statistics for action key 'arm'"):
        StateActionProcessor(make_embodiment(), stats, {}, use_relative_action=True, **kw)
    rel = {"arm": step_stats(np.zeros((5, H + 1, 3))), "eef": step_stats(np.zeros((5, H, 9)))}
    with pytest.raises(ValueError, match="action key 'arm' have horizon 5.*horizon 4"):
        StateActionProcessor(make_embodiment(), stats, rel, use_relative_action=True, **kw)
    proc = build(make_embodiment(), state, action)
    with pytest.raises(ValueError, match="state key 'gripper' missing"):
        proc.encode_state({"arm": state["arm"][0], "eef": state["eef"][0]})
    with pytest.raises(ValueError, match="action key 'arm': expected shape"):
        proc.encode_action(
            {"arm": np.zeros((H, 2)), "eef": action["eef"][0], "gripper": action["gripper"][0]},
            {k: v[0] for k, v in state.items()},
        )
    with pytest.raises(ValueError, match="raw state dict is required"):
        proc.decode_action(np.zeros((6, 24)))


def test_dict_round_trip_is_json_and_equivalent():
    rng = np.random.default_rng(6)
    state, action = make_data(rng, 16)
    proc = build(make_embodiment(), state, action)
    again = StateActionProcessor.from_dict(json.loads(json.dumps(proc.to_dict())))
    s = {k: v[1] for k, v in state.items()}
    a = {k: v[1] for k, v in action.items()}
    np.testing.assert_array_equal(proc.encode_state(s)[0], again.encode_state(s)[0])
    np.testing.assert_array_equal(proc.encode_action(a, s)[0], again.encode_action(a, s)[0])


def test_shipped_demo_embodiment_builds():
    emb = load_embodiment("new_embodiment")

    def st(d):
        return {
            "min": -np.ones(d),
            "max": np.ones(d),
            "mean": np.zeros(d),
            "std": np.ones(d),
            "q01": -np.ones(d),
            "q99": np.ones(d),
        }

    rel = {"arm": {k: np.tile(v, (16, 1)) for k, v in st(6).items()}}
    proc = StateActionProcessor(
        emb,
        {"state": {"arm": st(6), "gripper": st(1)}, "action": {"arm": st(6), "gripper": st(1)}},
        rel,
        max_state_dim=32,
        max_action_dim=32,
        max_action_horizon=16,
        apply_sincos=True,
        use_relative_action=True,
    )
    assert proc.state_width == 13 and proc.action_width == 7
