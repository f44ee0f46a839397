"""Request cost bounds (gr00t/policy/limits.py), alone and in front of a real server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gr00t.policy.limits import RequestLimits, RequestRejected
from gr00t.policy.protocol import ServerError

LANG = "annotation.human.task_description"


def _obs(batch: int = 1, t: int = 1, h: int = 96, w: int = 128) -> dict:
    return {
        "video": {"front": np.zeros((batch, t, h, w, 3), np.uint8)},
        "state": {"arm": np.zeros((batch, 1, 6), np.float32)},
        "language": {LANG: [["pick"]] * batch},
    }


def test_ordinary_requests_pass():
    limits = RequestLimits()
    limits.check_get_action(_obs(4, 1, 480, 640), {"denoising_steps": 64, "seed": 3})
    limits.check_get_action(_obs(1, 2, 720, 1280), None)
    flat = {
        "video.front": np.zeros((2, 1, 224, 224, 3), np.uint8),
        "state.arm": np.zeros((2, 1, 6), np.float32),
    }
    limits.check_get_action({**flat, LANG: ["a", "b"]}, {"rtc": {"frozen_steps": 4, "overlap_steps": 8}})
    limits.check_get_action("not even a mapping", 5)  # shapes only; the policy reports the types


@pytest.mark.parametrize(
    "observation, options, message",
    [
        (
            _obs(1, 1, 1, 65536),
            None,
            r"video\['front'\]: frames of 1x65536, aspect ratio 65536 > max_aspect_ratio=8",
        ),
        (
            {"video.front": np.zeros((1, 1, 65536, 1, 3), np.uint8)},
            None,
            r"video.front: .*aspect ratio 65536",
        ),
        (_obs(1, 1, 0, 64), None, "aspect ratio an empty side"),
        (_obs(1, 1, 3000, 3000), None, "9000000 pixels > max_image_pixels=4194304"),
        (_obs(65, 1, 8, 8), None, "batch size 65 .* > max_batch_size=64"),
        (_obs(1, 17, 8, 8), None, "17 frames .* > max_frames=16"),
        (_obs(16, 16, 256, 512), None, "pixels in all frames > max_request_pixels"),
        (
            {"video": {"front": np.zeros((1, 1, 8, 8, 4096), np.uint8)}},
            None,
            "4096 channels .* > max_channels=4",
        ),
        ({"state": {"arm": np.zeros((1, 2_000_000), np.float32)}}, None, "2000000 values.*max_array_values"),
        ({"language": {LANG: [["x" * 5000]]}}, None, "5000 characters > max_instruction_chars=4096"),
        ({"language": {LANG: [["a"]] * 100}}, None, "a list of 100 entries > max_batch_size"),
        ({f"k{i}": 0 for i in range(300)}, None, "300 keys > max_keys=256"),
        (_obs(), {"denoising_steps": 10**9}, "options.denoising_steps: 1000000000 > max_denoising_steps=64"),
        (_obs(), {"rtc": {"frozen_steps": -1, "overlap_steps": 2}}, "options.rtc.frozen_steps: -1"),
        (
            _obs(),
            {"rtc": {"frozen_steps": 1, "overlap_steps": 10**12}},
            "overlap_steps: 1000000000000 > max_rtc_steps",
        ),
        (_obs(), {"rtc": {"prev_actions": np.zeros((1, 5000, 7), np.float32)}}, "5000 steps .*max_rtc_steps"),
        (
            _obs(),
            {"rtc": {"prev_actions": {"arm": np.zeros((1, 4000, 300), np.float32)}}},
            r"prev_actions\['arm'\].*max_array_values",
        ),
    ],
)
def test_costly_requests_are_rejected_in_a_millisecond(observation, options, message):
    started = time.perf_counter()
    with pytest.raises(RequestRejected, match=message) as info:
        RequestLimits().check_get_action(observation, options)
    assert time.perf_counter() - started < 0.05
    assert str(info.value).startswith("request exceeds the server's limits: ")


def test_limits_are_configurable_and_validated():
    loose = RequestLimits(max_aspect_ratio=70000, max_denoising_steps=200)
    loose.check_get_action(_obs(1, 1, 1, 65536), {"denoising_steps": 200})
    assert (
        RequestLimits.from_mapping({"max_batch_size": 2, "port": 5555, "max_frames": None}).max_batch_size
        == 2
    )
    with pytest.raises(RequestRejected, match="max_batch_size=2"):
        RequestLimits(max_batch_size=2).check_get_action(_obs(3), None)
    with pytest.raises(ValueError, match="max_frames=0"):
        RequestLimits(max_frames=0)


@pytest.mark.parametrize("threaded_server", [{"limits": RequestLimits(max_batch_size=4)}], indirect=True)
def test_server_rejects_before_the_policy_runs(threaded_server, client_factory):
    server, port = threaded_server
    calls = []
    original = server.policy.get_action
    server.policy.get_action = lambda *a, **k: calls.append(1) or original(*a, **k)
    client = client_factory(port)
    with pytest.raises(
        ServerError, match=r"request exceeds the server's limits: video\['front'\]: frames of 1x65536"
    ):
        client.get_action({**_obs(1, 1, 1, 65536), "state": {"arm": np.ones((1, 1, 6), np.float32)}})
    with pytest.raises(ServerError, match="batch size 5"):
        client.get_action({"state": {"arm": np.ones((5, 1, 6), np.float32)}})
    with pytest.raises(ServerError, match="max_denoising_steps"):
        client.get_action({"state": {"arm": np.ones((1, 1, 6), np.float32)}}, {"denoising_steps": 65})
    assert calls == []
    action = client.get_action({"state": {"arm": np.ones((4, 1, 6), np.float32)}})
    assert calls == [1] and action["arm"].shape == (4, 1, 6)


def test_every_limit_is_a_gr00t_serve_key():
    import dataclasses

    from gr00t.cli.serve import ServeArgs

    serve = {f.name: f.default for f in dataclasses.fields(ServeArgs)}
    for f in dataclasses.fields(RequestLimits):
        assert serve.get(f.name) == f.default, f.name
