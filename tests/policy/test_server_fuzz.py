"""Fuzz the server with hostile input on loopback; afterwards it must still answer ping."""

from __future__ import annotations

import io
import pickle
import random
import socket
import time

import msgpack
import numpy as np
import pytest

from gr00t.policy.protocol import NDARRAY_TAG, PING_REPLY, ServerError, pack

N_MESSAGES = 300
TIME_BUDGET_S = 20.0


def _random_obj(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return [_random_obj(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 6:
        return {
            rng.choice(
                ["endpoint", "data", "api_token", "observation", "options", "state", "x"]
            ): _random_obj(rng, depth + 1)
            for _ in range(rng.randrange(4))
        }
    if kind == 7:  # a tagged array with garbage or pickled bytes
        payload = rng.choice(
            [
                pickle.dumps([1, 2]),
                b"\x93NUMPY\x01\x00\xff\xff" + b"x" * 20,
                bytes(rng.randrange(256) for _ in range(30)),
            ]
        )
        return {NDARRAY_TAG: True, "as_npy": payload}
    return {
        "endpoint": rng.choice(["ping", "get_action", "reset", "get_modality_config", "nope", 7, None]),
        "data": _random_obj(rng, depth + 1),
    }


def _hostile_payload(rng: random.Random, i: int) -> bytes:
    mode = i % 7
    if mode == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    if mode == 1:
        return pack(_random_obj(rng))
    if mode == 2:  # pickle instead of msgpack
        return pickle.dumps({"endpoint": "get_action", "data": {"observation": object.__class__}})
    if mode == 3:  # object-dtype array pickled inside .npy
        buf = io.BytesIO()
        np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        return msgpack.packb(
            {
                "endpoint": "get_action",
                "data": {"observation": {"state": {"arm": {NDARRAY_TAG: True, "as_npy": buf.getvalue()}}}},
            }
        )
    if mode == 4:  # wrong types at every level
        return pack(
            {
                "endpoint": "get_action",
                "data": {"observation": rng.choice([[], "s", 3, {"state": 1}, {"state": {"arm": "x"}}])},
            }
        )
    if mode == 5:  # bad tokens
        return pack({"endpoint": "ping", "api_token": rng.choice(["", "wrong", 5, None, b"\xff", "s3cre"])})
    return msgpack.packb(_random_obj(rng))[: rng.randrange(1, 20)]  # truncated


@pytest.mark.parametrize(
    "threaded_server", [{"api_token": "s3cret", "max_message_bytes": 100_000}], indirect=True
)
def test_fuzz_then_ping(threaded_server, client_factory):
    _, port = threaded_server
    rng = random.Random(1234)
    client = client_factory(port, api_token=None, timeout_ms=2000)
    start = time.monotonic()
    outcomes = {"error": 0, "ok": 0}
    for i in range(N_MESSAGES):
        if time.monotonic() - start > TIME_BUDGET_S:
            break
        try:
            client.send_raw(_hostile_payload(rng, i))
            outcomes["ok"] += 1
        except ServerError:
            outcomes["error"] += 1
    # the token guards everything, so nothing hostile may have succeeded
    assert outcomes["ok"] == 0 and outcomes["error"] >= 50, outcomes

    # huge payloads: one just above the soft limit (error reply), one above the transport cap (dropped)
    with pytest.raises(ServerError, match="exceeds"):
        client.send_raw(b"\x00" * 150_000)
    with pytest.raises(TimeoutError):
        client.send_raw(b"\x00" * 250_000)

    # raw TCP garbage that is not even ZMTP
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            raw.sendall(bytes(rng.randrange(256) for _ in range(512)))

    good = client_factory(port, api_token="s3cret")
    assert good.call_endpoint("ping", requires_input=False) == PING_REPLY
    action = good.get_action({"state": {"arm": np.ones((1, 1, 3), np.float32)}})
    np.testing.assert_array_equal(action["arm"], np.full((1, 1, 3), 2, np.float32))


def test_fuzz_without_token_only_valid_requests_succeed(threaded_server, client_factory):
    _, port = threaded_server
    rng = random.Random(99)
    client = client_factory(port, timeout_ms=2000)
    for i in range(150):
        payload = _hostile_payload(rng, i)
        try:
            reply = client.send_raw(payload)
        except ServerError:
            continue
        # only ping/reset/modality-config style requests can succeed; never a pickled one
        assert not payload.startswith(b"\x80"), "a pickle payload was accepted"
        assert reply is None or isinstance(reply, (dict, list))
    assert client.ping()
