"""Gr00tPolicy on a saved tiny checkpoint: model equivalence, decoding, validation, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t.policy.base import Policy
from gr00t.policy.policy import Gr00tPolicy, ObservationError

LANG = "annotation.human.task_description"
H = 16


def make_obs(batch: int = 2, seed: int = 0) -> dict:
    """`batch` rows; make_obs(1) is the first row of make_obs(2)."""
    full = _obs_pair(seed)
    return {m: {k: v[:batch] for k, v in section.items()} for m, section in full.items()}


def _obs_pair(seed: int) -> dict:
    batch = 2
    rng = np.random.default_rng(seed)
    return {
        "video": {
            "front": rng.integers(0, 256, size=(batch, 1, 96, 128, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, size=(batch, 1, 96, 128, 3), dtype=np.uint8),
        },
        "state": {
            "arm": rng.uniform(-1, 1, size=(batch, 1, 6)).astype(np.float32),
            "gripper": rng.uniform(0, 1, size=(batch, 1, 1)).astype(np.float32),
        },
        "language": {LANG: [["pick up the red block"], ["Push the green block to the left!"]]},
    }


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return Gr00tPolicy.from_checkpoint(tiny_checkpoint, "new_embodiment", device="cpu")


def _stats(tiny_checkpoint):
    data = json.loads((tiny_checkpoint / "processor_config.json").read_text())["embodiments"][
        "new_embodiment"
    ]
    return data["stats"], data["relative_stats"]


def test_matches_direct_model_call_and_decodes_to_absolute(policy, tiny_checkpoint):
    """Same generator → same noise; decoding checked by hand: min-max inverse (+ state for relative arm)."""
    obs = make_obs(2)
    action = policy.get_action(obs, {"seed": 7})
    assert set(action) == {"arm", "gripper"}
    assert action["arm"].shape == (2, H, 6) and action["gripper"].shape == (2, H, 1)
    assert all(v.dtype == np.float32 for v in action.values())

    # the direct call: processor per sample (eval mode) + collator + model.get_action
    proc = policy.processor
    samples = [
        proc(
            {
                "video": {k: v[b] for k, v in obs["video"].items()},
                "state": {k: v[b] for k, v in obs["state"].items()},
                "language": obs["language"][LANG][b][0],
                "embodiment": "new_embodiment",
            }
        )
        for b in range(2)
    ]
    batch = policy.collator(samples)
    pred = policy.model.get_action(batch, generator=torch.Generator().manual_seed(7)).numpy()
    assert pred.shape == (2, H, policy.model.config.max_action_dim)

    stats, relative = _stats(tiny_checkpoint)

    def unminmax(x, lo, hi):
        return (np.clip(x, -1, 1) + 1) / 2 * (np.asarray(hi) - np.asarray(lo)) + np.asarray(lo)

    arm = (
        unminmax(pred[:, :, :6], relative["arm"]["min"], relative["arm"]["max"])
        + obs["state"]["arm"][:, -1][:, None]
    )
    grip = unminmax(pred[:, :, 6:7], stats["action"]["gripper"]["min"], stats["action"]["gripper"]["max"])
    np.testing.assert_allclose(action["arm"], arm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(action["gripper"], grip, rtol=1e-5, atol=1e-5)
    # relative decoding really used the observed state: shifting the state shifts the arm chunk
    shifted = make_obs(2)
    shifted["state"]["arm"] = shifted["state"]["arm"] + 0.25
    moved = policy.get_action(shifted, {"seed": 7})
    assert not np.allclose(moved["arm"], action["arm"])


def test_seed_reproducible_and_noise_varies(policy):
    obs = make_obs(1)
    a = policy.get_action(obs, {"seed": 3})["arm"]
    np.testing.assert_array_equal(a, policy.get_action(obs, {"seed": 3})["arm"])
    assert not np.allclose(a, policy.get_action(obs, {"seed": 4})["arm"])


def test_unbatched_observation(policy):
    obs = make_obs(1)
    unbatched = {
        "video": {k: v[0] for k, v in obs["video"].items()},
        "state": {k: v[0] for k, v in obs["state"].items()},
        "language": {LANG: obs["language"][LANG][0][0]},
    }
    single = policy.get_action(unbatched, {"seed": 1})
    assert single["arm"].shape == (H, 6) and single["gripper"].shape == (H, 1)
    np.testing.assert_allclose(single["arm"], policy.get_action(obs, {"seed": 1})["arm"][0], atol=1e-6)


def test_batch_rows_are_independent(policy):
    """Row 0 of a batch of two equals the same observation alone (same leading noise)."""
    both = policy.get_action(make_obs(2), {"seed": 11})
    alone = policy.get_action(make_obs(1), {"seed": 11})
    np.testing.assert_allclose(both["arm"][0], alone["arm"][0], atol=1e-4)


def test_flat_sim_layout(policy):
    obs = make_obs(2)
    flat = {f"video.{k}": v for k, v in obs["video"].items()}
    flat.update({f"state.{k}": v for k, v in obs["state"].items()})
    flat[LANG] = [s[0] for s in obs["language"][LANG]]
    out = policy.get_action(flat, {"seed": 2})
    assert set(out) == {"action.arm", "action.gripper"}
    np.testing.assert_allclose(out["action.arm"], policy.get_action(obs, {"seed": 2})["arm"], atol=1e-6)


def _broken(mutate):
    obs = make_obs(2)
    mutate(obs)
    return obs


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda o: o["video"].pop("wrist"), r"observation\['video'\] is missing key\(s\) \['wrist'\]"),
        (lambda o: o["state"].pop("gripper"), r"missing key\(s\) \['gripper'\]"),
        (lambda o: o.pop("language"), r"observation\['language'\] must be a mapping"),
        (lambda o: o["language"].clear(), r"missing key\(s\) \['annotation.human.task_description'\]"),
        (
            lambda o: o["video"].__setitem__("front", o["video"]["front"].astype(np.float32)),
            r"video\['front'\]: expected dtype uint8, got float32",
        ),
        (
            lambda o: o["video"].__setitem__("front", o["video"]["front"][..., :2]),
            r"video\['front'\]: expected shape \[B, T, H, W, 3\]",
        ),
        (
            lambda o: o["video"].__setitem__("front", np.concatenate([o["video"]["front"]] * 2, axis=1)),
            r"expected T=1 frames",
        ),
        (
            lambda o: o["video"].__setitem__("wrist", o["video"]["wrist"].tolist()),
            r"video\['wrist'\]: expected a numpy uint8 array, got list",
        ),
        (
            lambda o: o["state"].__setitem__("arm", o["state"]["arm"].astype(np.float64)),
            r"state\['arm'\]: expected dtype float32, got float64",
        ),
        (
            lambda o: o["state"].__setitem__("arm", o["state"]["arm"][..., :5]),
            r"state\['arm'\]: expected shape \[B, 1, 6\], got \(2, 1, 5\)",
        ),
        (
            lambda o: o["state"].__setitem__("arm", o["state"]["arm"][:, 0]),
            r"state\['arm'\]: expected shape \[B, 1, 6\]",
        ),
        (lambda o: o["state"].__setitem__("gripper", np.zeros((2, 3, 1), np.float32)), r"expected T=1 steps"),
        (
            lambda o: o["state"]["arm"].__setitem__((1, 0, 2), np.nan),
            r"state\['arm'\]: contains NaN or infinity",
        ),
        (lambda o: o["state"]["gripper"].__setitem__((0, 0, 0), np.inf), r"state\['gripper'\]: contains NaN"),
        (lambda o: o["state"].__setitem__("gripper", o["state"]["gripper"][:1]), r"batch sizes disagree"),
        (lambda o: o["language"].__setitem__(LANG, ["pick", "push"]), r"expected B lists of one instruction"),
        (lambda o: o["language"].__setitem__(LANG, [["a"]]), r"batch sizes disagree"),
    ],
)
def test_invalid_observations(policy, mutate, message):
    with pytest.raises(ObservationError, match=message):
        policy.get_action(_broken(mutate))


def test_invalid_top_level_and_options(policy):
    with pytest.raises(ObservationError, match="must be a mapping"):
        policy.get_action([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ObservationError, match="needs 'video', 'state' and 'language'"):
        policy.get_action({"foo": 1})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['temperature'\]"):
        policy.get_action(make_obs(1), {"temperature": 1.0})
    with pytest.raises(ValueError, match="'seed' must be an integer"):
        policy.get_action(make_obs(1), {"seed": "x"})
    with pytest.raises(ValueError, match="'denoising_steps' must be >= 1"):
        policy.get_action(make_obs(1), {"denoising_steps": 0})


def test_denoising_steps_option(policy):
    obs = make_obs(1)
    four = policy.get_action(obs, {"seed": 0})
    explicit = policy.get_action(obs, {"seed": 0, "denoising_steps": 4})
    one = policy.get_action(obs, {"seed": 0, "denoising_steps": 1})
    np.testing.assert_allclose(four["arm"], explicit["arm"], atol=1e-6)
    assert not np.allclose(four["arm"], one["arm"])


def test_rtc_fully_frozen_chunk_reproduces_previous(policy):
    """RTC passthrough: with every step frozen the new chunk ends exactly on the previous one
    (given in absolute units and encoded by the policy)."""
    obs = make_obs(1)
    prev = policy.get_action(obs, {"seed": 5})
    out = policy.get_action(
        obs, {"seed": 99, "rtc": {"prev_actions": prev, "frozen_steps": H, "overlap_steps": 0}}
    )
    np.testing.assert_allclose(out["arm"], prev["arm"], atol=1e-4)
    np.testing.assert_allclose(out["gripper"], prev["gripper"], atol=1e-4)
    free = policy.get_action(obs, {"seed": 99})
    assert not np.allclose(free["arm"], prev["arm"], atol=1e-3)
    with pytest.raises(ValueError, match="missing"):
        policy.get_action(obs, {"rtc": {"prev_actions": prev}})


def test_rtc_mode_option(policy):
    """`rtc.mode` picks guidance or prefix; a model trained without RTC defaults to guidance and
    refuses the prefix mode it never learned."""
    obs = make_obs(1)
    prev = policy.get_action(obs, {"seed": 5})
    rtc = {"prev_actions": prev, "frozen_steps": 3, "overlap_steps": 4}
    auto = policy.get_action(obs, {"seed": 1, "rtc": rtc})
    guided = policy.get_action(obs, {"seed": 1, "rtc": {**rtc, "mode": "guidance"}})
    np.testing.assert_array_equal(auto["arm"], guided["arm"])
    with pytest.raises(ValueError, match="rtc_training_max_delay > 0"):
        policy.get_action(obs, {"rtc": {**rtc, "mode": "prefix"}})
    with pytest.raises(ValueError, match="'rtc.mode' must be one of"):
        policy.get_action(obs, {"rtc": {**rtc, "mode": "soft"}})


def test_modality_config_is_plain_reference_shaped(policy):
    cfg = policy.get_modality_config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["video"] == {"delta_indices": [0], "modality_keys": ["front", "wrist"]}
    assert cfg["action"]["delta_indices"] == list(range(H))
    assert cfg["action"]["action_configs"][0] == {
        "rep": "RELATIVE",
        "type": "NON_EEF",
        "format": "DEFAULT",
        "state_key": "arm",
    }
    assert cfg["action"]["action_configs"][1]["rep"] == "ABSOLUTE"
    assert cfg["language"]["modality_keys"] == [LANG]
    assert policy.reset() == {}
    assert isinstance(policy, Policy)


def test_from_checkpoint_errors(tiny_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gr00tPolicy.from_checkpoint(tmp_path / "nope", "new_embodiment")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Gr00tPolicy.from_checkpoint(tmp_path, "new_embodiment")
    with pytest.raises(ValueError, match="was not trained into this checkpoint"):
        Gr00tPolicy.from_checkpoint(tiny_checkpoint, "libero_panda")
    with pytest.raises(ValueError, match="not a known embodiment config"):
        Gr00tPolicy.from_checkpoint(tiny_checkpoint, "no_such_robot")
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        Gr00tPolicy.from_checkpoint(tiny_checkpoint, "new_embodiment", cuda_graphs=True)


@pytest.mark.slow
def test_compiled_matches_eager(tiny_checkpoint):
    policy = Gr00tPolicy.from_checkpoint(tiny_checkpoint, "new_embodiment")
    obs = make_obs(2)
    eager = policy.get_action(obs, {"seed": 1})
    policy.model.compile_inference()
    compiled = policy.get_action(obs, {"seed": 1})
    assert policy.model.inference_compiled
    for key in eager:
        np.testing.assert_allclose(compiled[key], eager[key], atol=1e-4, rtol=1e-4)
    policy.model.eager_inference()
    np.testing.assert_allclose(policy.get_action(obs, {"seed": 1})["arm"], eager["arm"], atol=1e-6)


def test_actions_equal_the_pinned_reference(tiny_checkpoint):
    """Policy answers on fixed observations equal those of the code before the typed batch and the
    slim policy (data/policy_reference_actions.safetensors; see tests/model/test_reference_outputs.py)."""
    from tests.model.test_reference_outputs import assert_pinned, load_reference

    reference, meta = load_reference(Path(__file__).parent / "data" / "policy_reference_actions.safetensors")
    exact = (
        meta["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        and meta["torch"] == torch.__version__
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = Gr00tPolicy.from_checkpoint(tiny_checkpoint, "new_embodiment")
        obs = make_obs(2)
        got = {}
        for name, opts in {"seed7": {"seed": 7}, "steps2": {"seed": 7, "denoising_steps": 2}}.items():
            got.update({f"{name}/{k}": v for k, v in policy.get_action(obs, opts).items()})
        rtc = {"prev_actions": policy.get_action(obs, {"seed": 1}), "frozen_steps": 4, "overlap_steps": 5}
        got.update({f"rtc/{k}": v for k, v in policy.get_action(obs, {"seed": 2, "rtc": rtc}).items()})
    finally:
        torch.set_num_threads(threads)
    assert sorted(got) == sorted(reference)
    for key, value in got.items():
        assert_pinned(torch.from_numpy(value), reference[key], exact, key)
