"""ZeroMQ policy server speaking the reference GR00T wire protocol (see `gr00t.policy.protocol`).

The socket is a ROUTER, which REQ clients cannot tell from the reference's REP socket. A ROUTER has no
send/receive state machine, so no malformed, multi-frame or oversized input can leave the server unable
to answer the next request. Every well-framed request gets exactly one reply; errors are replies of the
form ``{"error": str}``.

Two size limits protect the process: messages above ``max_message_bytes`` are read and answered with an
error; messages above the transport limit (``2 * max_message_bytes``, ZMQ_MAXMSGSIZE) make ZeroMQ drop the
sending peer's connection before the message is buffered, so that peer gets no reply (its client times
out) while every other client is still served. Frames are received without copying them, and decoding
is bounded (`gr00t.policy.protocol.unpack`).

The cost of a ``get_action`` is bounded by `gr00t.policy.limits.RequestLimits` (batch size, frames,
pixels, aspect ratio, denoising steps, RTC fields), checked on the decoded request before the policy
touches a pixel: a hostile request is answered with ``{"error": ...}`` in milliseconds.

Multipart messages: a REQ peer puts an empty delimiter frame between the routing envelope and the
body; the reply must carry the envelope back with that delimiter, whatever the body looked like, or
the peer never receives it. Every message with a routing identity gets exactly one reply.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from gr00t.policy.base import Policy
from gr00t.policy.limits import RequestLimits, RequestRejected
from gr00t.policy.protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MODALITY_CONFIG_TAG,
    PING_REPLY,
    UNAUTHORIZED,
    ProtocolError,
    encode_modality_config,
    pack,
    unpack,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_MAX_ENVELOPE_FRAMES = 8  # routing frames kept for the reply (a REQ peer's: identity + empty delimiter)


@dataclass
class Endpoint:
    """A named handler; `requires_input` handlers are called with the request's ``data`` as kwargs."""

    handler: Callable[..., Any]
    requires_input: bool = True


class PolicyServer:
    """Serve a policy over ZeroMQ until a ``kill`` request or `stop()`.

    Binds to 127.0.0.1 by default; pass ``host="0.0.0.0"`` (ideally with an ``api_token``) to accept
    other machines. ``port=0`` binds a free port (read it from `port` after construction).
    """

    def __init__(
        self,
        policy: Policy,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        api_token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        limits: RequestLimits | None = None,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes={max_message_bytes}: expected > 0")
        self.policy = policy
        self.limits = limits or RequestLimits()
        self.api_token = api_token or None
        self.max_message_bytes = int(max_message_bytes)
        self._stop = threading.Event()
        self._endpoints: dict[str, Endpoint] = {}
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
        address = host if "://" in host else f"tcp://{host}"
        try:
            if port == 0:
                self.port = self._socket.bind_to_random_port(address)
            else:
                self._socket.bind(f"{address}:{port}")
                self.port = port
        except zmq.ZMQError as exc:
            self._socket.close()
            self._context.term()
            raise OSError(f"cannot bind policy server to {address}:{port}: {exc}") from exc
        self.host = host
        self.register_endpoint("ping", lambda: dict(PING_REPLY), requires_input=False)
        self.register_endpoint("kill", self._kill, requires_input=False)
        self.register_endpoint("get_action", self._get_action)
        self.register_endpoint("reset", self._reset)
        self.register_endpoint("get_modality_config", self._get_modality_config, requires_input=False)

    # ---- endpoints --------------------------------------------------------------------------------

    def register_endpoint(self, name: str, handler: Callable[..., Any], requires_input: bool = True) -> None:
        """Add or replace an endpoint."""
        self._endpoints[name] = Endpoint(handler, requires_input)

    def _kill(self) -> None:
        self._stop.set()

    def _get_action(self, observation: Any = None, options: Any = None) -> list[Any]:
        if observation is None:
            raise ValueError("get_action: data must be {'observation': {...}, 'options': ...}")
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"get_action: options must be a map or nil, got {type(options).__name__}")
        self.limits.check_get_action(observation, options)  # before any image work
        result = self.policy.get_action(observation, options)
        if isinstance(result, tuple) and len(result) == 2:
            action, info = result
        else:
            action, info = result, {}
        return [action, info]

    def _reset(self, options: Any = None) -> Any:
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"reset: options must be a map or nil, got {type(options).__name__}")
        return self.policy.reset(options)

    def _get_modality_config(self) -> dict[str, Any]:
        configs = self.policy.get_modality_config()
        out = {}
        for modality, cfg in configs.items():
            is_plain_config = (
                isinstance(cfg, dict) and MODALITY_CONFIG_TAG not in cfg and "modality_keys" in cfg
            )
            out[modality] = encode_modality_config(cfg) if is_plain_config else cfg
        return out

    # ---- request handling -------------------------------------------------------------------------

    def handle(self, payload: bytes | memoryview) -> bytes:
        """Reply bytes for one request body. Never raises."""
        try:
            return pack(self._dispatch(payload))
        except Exception as exc:  # every failure becomes an error reply; the loop must keep serving
            plain = isinstance(exc, (ProtocolError, RequestRejected))
            message = str(exc) if plain else f"{type(exc).__name__}: {exc}"
            logger.warning("request failed: %s", message)
            return pack({"error": message})

    def _dispatch(self, payload: bytes | memoryview) -> Any:
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if size > self.max_message_bytes:
            raise ProtocolError(
                f"message of {size} bytes exceeds the server limit of {self.max_message_bytes} bytes"
            )
        request = unpack(payload)
        if not isinstance(request, dict):
            raise ProtocolError(f"request must be a map with an 'endpoint' key, got {type(request).__name__}")
        if self.api_token is not None:
            token = request.get("api_token")
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode("utf-8", "surrogatepass"), self.api_token.encode("utf-8")
            ):
                return {"error": UNAUTHORIZED}
        name = request.get("endpoint", "get_action")
        if not isinstance(name, str) or name not in self._endpoints:
            raise ProtocolError(f"Unknown endpoint: {name!r} (known: {sorted(self._endpoints)})")
        endpoint = self._endpoints[name]
        if not endpoint.requires_input:
            return endpoint.handler()
        data = request.get("data") or {}
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ProtocolError(f"{name}: 'data' must be a map with string keys, got {type(data).__name__}")
        return endpoint.handler(**data)

    def _receive(self) -> tuple[list[bytes], int, zmq.Frame | None] | None:
        """(routing envelope, number of body frames, the body frame when there is exactly one).

        Frames are not copied, and only the first `_MAX_ENVELOPE_FRAMES` are kept. The envelope is
        the identity plus everything up to and including the first empty delimiter frame (a REQ
        peer's), or the identity alone (a DEALER peer without a delimiter). None: nobody to answer.
        """
        kept: list[zmq.Frame] = []
        extra = 0
        while True:
            frame = self._socket.recv(copy=False)
            if len(kept) < _MAX_ENVELOPE_FRAMES:
                kept.append(frame)
            else:
                extra += 1  # dropped: a body of several frames is answered with an error anyway
            if not frame.more:
                break
        if not kept:
            return None
        split = next((i + 1 for i in range(1, len(kept)) if len(kept[i]) == 0), 1)
        body = kept[split:]
        count = len(body) + extra
        return [f.bytes for f in kept[:split]], count, body[0] if count == 1 else None

    def serve_once(self, timeout_ms: int = 100) -> bool:
        """Handle at most one request; False if none arrived within `timeout_ms`."""
        if not self._socket.poll(timeout_ms, zmq.POLLIN):
            return False
        received = self._receive()
        if received is None:
            return True
        envelope, count, body = received
        if count != 1 or body is None:
            reply = pack({"error": f"expected a single-frame request body, got {count} frames"})
        else:
            reply = self.handle(body.buffer)
        del body
        try:
            self._socket.send_multipart([*envelope, reply])
        except zmq.ZMQError as exc:  # the peer went away; nothing to answer
            logger.warning("could not send reply: %s", exc)
        return True

    def run(self) -> None:
        """Serve until ``kill`` or `stop()`; closes the socket on return."""
        logger.info("policy server listening on %s:%s", self.host, self.port)
        try:
            while not self._stop.is_set():
                self.serve_once()
        finally:
            self.close()

    def stop(self) -> None:
        """Ask `run()` to return after the current request (thread-safe)."""
        self._stop.set()

    def close(self) -> None:
        """Release the socket (idempotent)."""
        if not self._socket.closed:
            self._socket.close(linger=0)
            self._context.term()
