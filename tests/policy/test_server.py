"""PolicyServer + PolicyClient over real ZeroMQ on loopback (server in a thread)."""

from __future__ import annotations

import io
import threading

import msgpack
import numpy as np
import pytest
import zmq

from gr00t.policy.base import Policy
from gr00t.policy.protocol import MODALITY_CONFIG_TAG, NDARRAY_TAG, PING_REPLY, ServerError, pack, unpack
from gr00t.policy.server import PolicyServer
from tests.policy.conftest import DoublingPolicy


def _obs(batch: int = 2) -> dict:
    return {"state": {"arm": np.arange(batch * 6, dtype=np.float32).reshape(batch, 1, 6)}}


def test_ping_and_get_action_roundtrip(threaded_server, client_factory):
    _, port = threaded_server
    client = client_factory(port)
    assert client.ping()
    assert client.call_endpoint("ping", requires_input=False) == PING_REPLY
    obs = _obs()
    action, info = client.get_action_and_info(obs, {"seed": 3})
    np.testing.assert_array_equal(action["arm"], obs["state"]["arm"] * 2)
    assert action["arm"].dtype == np.float32
    assert info == {"options": {"seed": 3}}
    assert client.reset() == {}
    # as a Policy, the client answers with the action dict alone (like Gr00tPolicy)
    assert isinstance(client, Policy)
    plain = client.get_action(obs, {"seed": 3})
    assert sorted(plain) == ["arm"] and np.array_equal(plain["arm"], action["arm"])


def test_modality_config_travels_tagged_and_decodes_plain(threaded_server, client_factory):
    _, port = threaded_server
    client = client_factory(port)
    cfg = client.get_modality_config()
    assert cfg["action"]["modality_keys"] == ["arm"]
    assert cfg["action"]["action_configs"][0]["rep"] == "RELATIVE"
    assert cfg["state"]["sin_cos_embedding_keys"] is None
    # on the wire each config is wrapped like the reference's ModalityConfig dataclass
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.send(msgpack.packb({"endpoint": "get_modality_config"}))
    raw = msgpack.unpackb(sock.recv(), raw=False)
    sock.close(linger=0)
    assert raw["state"][MODALITY_CONFIG_TAG] is True
    assert raw["state"]["as_json"]["modality_keys"] == ["arm"]


def test_reference_style_client_works_unchanged(threaded_server):
    """Encode exactly as the reference client does: plain msgpack + np.save; reply is [action, info]."""
    _, port = threaded_server

    def enc(obj):
        if isinstance(obj, np.ndarray):
            buf = io.BytesIO()
            np.save(buf, obj, allow_pickle=False)
            return {NDARRAY_TAG: True, "as_npy": buf.getvalue()}
        return obj

    def dec(obj):
        if NDARRAY_TAG in obj:
            return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
        return obj

    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(f"tcp://127.0.0.1:{port}")
    obs = _obs(1)
    sock.send(
        msgpack.packb({"endpoint": "get_action", "data": {"observation": obs, "options": None}}, default=enc)
    )
    reply = msgpack.unpackb(sock.recv(), object_hook=dec)
    action, info = tuple(reply)
    np.testing.assert_array_equal(action["arm"], obs["state"]["arm"] * 2)
    # a request without an endpoint means get_action, as in the reference
    sock.send(msgpack.packb({"data": {"observation": obs}}, default=enc))
    assert len(msgpack.unpackb(sock.recv(), object_hook=dec)) == 2
    sock.close(linger=0)


def test_errors_are_replies_and_server_keeps_serving(threaded_server, client_factory):
    _, port = threaded_server
    client = client_factory(port)
    with pytest.raises(ServerError, match="Unknown endpoint: 'nope'"):
        client.call_endpoint("nope", {})
    with pytest.raises(ServerError, match="observation lacks 'state'"):
        client.get_action({"video": {}})
    with pytest.raises(ServerError, match="float32"):
        client.get_action({"state": {"arm": np.zeros((1, 1, 6), np.float64)}})
    with pytest.raises(ServerError, match="unexpected keyword"):
        client.call_endpoint("get_action", {"observation": {}, "bogus": 1})
    with pytest.raises(ServerError, match="'data' must be a map"):
        client.call_endpoint("get_action", [1, 2])
    with pytest.raises(ServerError, match="request must be a map"):
        client.send_raw(pack([1, 2, 3]))
    with pytest.raises(ServerError, match="undecodable"):
        client.send_raw(b"\xc1\xc1")
    with pytest.raises(ServerError, match="options must be a map"):
        client.get_action(_obs(), options=[1])  # type: ignore[arg-type]
    assert client.ping()


@pytest.mark.parametrize("threaded_server", [{"api_token": "s3cret"}], indirect=True)
def test_api_token(threaded_server, client_factory):
    _, port = threaded_server
    with pytest.raises(ServerError, match="Unauthorized"):
        client_factory(port).call_endpoint("ping", requires_input=False)
    with pytest.raises(ServerError, match="Unauthorized"):
        client_factory(port, api_token="wrong").get_action(_obs())
    good = client_factory(port, api_token="s3cret")
    assert good.ping()
    action = good.get_action(_obs())
    assert action["arm"].shape == (2, 1, 6)


@pytest.mark.parametrize("threaded_server", [{"max_message_bytes": 20_000}], indirect=True)
def test_oversized_messages(threaded_server, client_factory):
    _, port = threaded_server
    client = client_factory(port, timeout_ms=1500)
    # above the limit but below the transport cap: an error reply
    with pytest.raises(ServerError, match="exceeds the server limit of 20000"):
        client.get_action({"state": {"arm": np.zeros((1, 1, 6000), np.float32)}})
    assert client.ping()
    # above the transport cap (2x): ZeroMQ drops the peer; that request times out, the server lives on
    with pytest.raises(TimeoutError):
        client.get_action({"state": {"arm": np.zeros((1, 1, 20_000), np.float32)}})
    assert client.ping()
    assert client_factory(port).ping()


def test_multiframe_request_from_dealer_gets_error(threaded_server, client_factory):
    _, port = threaded_server
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.send_multipart([b"", pack({"endpoint": "ping"}), b"extra"])
    frames = sock.recv_multipart()
    assert unpack(frames[-1])["error"].startswith("expected a single-frame")
    sock.send_multipart([b"", pack({"endpoint": "ping"})])
    assert unpack(sock.recv_multipart()[-1]) == PING_REPLY
    sock.close(linger=0)
    assert client_factory(port).ping()


def test_kill_stops_server():
    server = PolicyServer(DoublingPolicy(), port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    from gr00t.policy.client import PolicyClient

    with PolicyClient(port=server.port, timeout_ms=500) as client:
        assert client.kill_server() is None
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert not client.ping()


def test_bind_failure_is_clear():
    server = PolicyServer(DoublingPolicy(), port=0)
    try:
        with pytest.raises(OSError, match=f"cannot bind policy server to tcp://127.0.0.1:{server.port}"):
            PolicyServer(DoublingPolicy(), port=server.port)
    finally:
        server.close()


@pytest.mark.parametrize("frames", [2, 7, 8, 9, 40])
def test_req_client_with_many_body_frames_gets_a_reply(threaded_server, frames):
    """A REQ peer's reply must keep its empty delimiter frame, however many body frames it sent."""
    _, port = threaded_server
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        sock.send_multipart([pack({"endpoint": "ping"})] + [b"x"] * (frames - 1))
        reply = unpack(sock.recv())  # raises zmq.Again if no reply comes
        assert reply == {"error": f"expected a single-frame request body, got {frames} frames"}
        sock.send(pack({"endpoint": "ping"}))  # the REQ socket is usable again
        assert unpack(sock.recv()) == PING_REPLY
    finally:
        sock.close(linger=0)


def test_empty_and_identity_only_messages_from_a_router_peer(threaded_server):
    """A ROUTER-to-ROUTER peer can send an envelope without a body: it gets an error, not silence."""
    _, port = threaded_server
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        sock.send(b"")  # delimiter only: zero body frames
        assert unpack(sock.recv_multipart()[-1])["error"].endswith("got 0 frames")
    finally:
        sock.close(linger=0)
