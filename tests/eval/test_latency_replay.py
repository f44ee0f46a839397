"""`gr00t-eval latency_steps=j`: the asynchronous replay, its RTC requests and the boundary jump."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gr00t.data.dataset import Gr00tDataset
from gr00t.eval.latency_replay import query_plan, replay_with_latency
from gr00t.eval.open_loop import evaluate_episode, run_open_loop
from tests.eval.test_open_loop import FnPolicy, recorded_actions

H = 16


@pytest.fixture(scope="module")
def shared_dataset(demo_dataset_v3) -> Gr00tDataset:
    return Gr00tDataset(demo_dataset_v3, "new_embodiment")


def test_query_plan():
    assert query_plan(60, H, H, 0, None) == [0, 16, 32]
    assert query_plan(60, H, H, 4, None) == [0, 12, 24, 36]
    assert query_plan(60, H, 8, 3, 30) == [0, 5, 10, 15, 20]
    with pytest.raises(ValueError, match="latency_steps=16: expected 0..15"):
        query_plan(60, H, H, 16, None)
    with pytest.raises(ValueError, match="action_horizon=17"):
        query_plan(60, H, 17, 0, None)


class OffsetReplay(FnPolicy):
    """Answers query i (at step s) with the recorded actions of steps s … s+15 plus 0.1·i."""

    def __init__(self, root, episode, plan):
        self.rec, self.plan, self.calls = recorded_actions(root, episode), plan, []

    def get_action(self, obs, options=None):
        i = len(self.calls)
        self.calls.append(options)
        s = self.plan[i]
        return {k: (v[s : s + H] + 0.1 * i)[None] for k, v in self.rec.items()}


def test_async_replay_freezes_the_executed_prefix_and_measures_jumps(demo_dataset_v3, shared_dataset):
    j, plan = 4, [0, 12, 24, 36]
    policy = OffsetReplay(demo_dataset_v3, 2, plan)
    out = replay_with_latency(policy, shared_dataset, 2, latency_steps=j, seed=7, rtc_mode="prefix")
    rec = recorded_actions(demo_dataset_v3, 2)
    assert out["query_steps"] == plan
    # executed: chunk 0 runs steps 0..15, chunk i >= 1 its indices j..15, i.e. steps s_i+4 .. s_i+15
    offset = np.concatenate([np.zeros(16), np.full(12, 0.1), np.full(12, 0.2), np.full(12, 0.3)])
    for key in ("arm", "gripper"):
        np.testing.assert_allclose(out["ground_truth"][key], rec[key][:52], atol=1e-6)
        np.testing.assert_allclose(out["predicted"][key], rec[key][:52] + offset[:, None], atol=1e-6)
    # the requests: seeds, the frozen prefix = the 4 executed actions of steps s_i .. s_i+3, then the
    # rest of the running chunk's plan
    assert policy.calls[0] == {"seed": 7}
    for i in (1, 2, 3):
        rtc = policy.calls[i]["rtc"]
        assert policy.calls[i]["seed"] == 7 + i and rtc["mode"] == "prefix"
        assert rtc["frozen_steps"] == 4 and rtc["overlap_steps"] == 0
        s = plan[i]
        for key in ("arm", "gripper"):
            np.testing.assert_allclose(rtc["prev_actions"][key][0], out["predicted"][key][s : s + 4])
    # boundary i: the first new action (step s_i+4, offset 0.1·i) against the last executed one
    for key in ("arm", "gripper"):
        want = [
            np.abs(rec[key][s + 4] + 0.1 * i - rec[key][s + 3] - 0.1 * (i - 1))
            for i, s in enumerate(plan)
            if i
        ]
        np.testing.assert_allclose(out["boundary_jump"][key], np.stack(want), atol=1e-6)
        gt = [np.abs(rec[key][s + 4] - rec[key][s + 3]) for s in plan[1:]]
        np.testing.assert_allclose(out["ground_truth_step"][key], np.stack(gt), atol=1e-6)
        # inside chunks the offsets cancel: the policy's own step is the recorded step there
        inside = [np.abs(np.diff(rec[key][a:b], axis=0)) for a, b in ((0, 16), (16, 28), (28, 40), (40, 52))]
        np.testing.assert_allclose(out["inner_step"][key], np.concatenate(inside), atol=1e-5)


def test_latency_zero_is_the_synchronous_replay_with_jumps(demo_dataset_v3, shared_dataset):
    policy = OffsetReplay(demo_dataset_v3, 1, [0, 16, 32])
    report = run_open_loop(policy, shared_dataset, episodes=[1], latency_steps=0)
    assert all("rtc" not in c for c in policy.calls)
    plain = evaluate_episode(OffsetReplay(demo_dataset_v3, 1, [0, 16, 32]), shared_dataset, 1)
    assert report.episodes[0].query_steps == plain.query_steps == [0, 16, 32]
    np.testing.assert_array_equal(report.episodes[0].predicted["arm"], plain.predicted["arm"])
    jump = report.metrics["boundary_jump"]
    assert jump["boundaries"] == 2 and jump["mean"] > jump["ground_truth_step"]  # the 0.1 offsets
    assert jump["inner_step"] < jump["mean"]
    assert set(jump["per_key"]) == {"arm", "gripper"}
    assert json.loads(json.dumps(report.to_dict()))["latency_steps"] == 0
