"""Light client for a GR00T policy server; needs only pyzmq, msgpack and numpy.

Speaks the reference protocol (see `gr00t_client.protocol`), so it also talks to NVIDIA's reference
server, and the reference's own `PolicyClient` talks to `gr00t-serve`. It is a `Policy` like the
local `gr00t.policy.Gr00tPolicy`: `get_action` returns the action dict; the server's info dict (the
reference client's second return value) comes with `get_action_and_info`.

    client = PolicyClient(host="127.0.0.1", port=5555)
    action = client.get_action(observation)
    action, info = client.get_action_and_info(observation)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq

from gr00t_client.base import Policy
from gr00t_client.protocol import DEFAULT_PORT, ServerError, make_request, pack, unpack


class PolicyClient(Policy):
    """REQ client. A request that gets no reply within `timeout_ms` raises TimeoutError (the socket is
    then rebuilt, so the client stays usable)."""

    def __init__(
        self,
        host: str = "localhost",
        port: int = DEFAULT_PORT,
        timeout_ms: int = 15000,
        api_token: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        self.api_token = api_token
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = None
        self._connect()

    def _connect(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
        self._socket = self._context.socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        self._socket.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        self._socket.connect(f"tcp://{self.host}:{self.port}")

    def call_endpoint(self, endpoint: str, data: Any = None, requires_input: bool = True) -> Any:
        """Send one request and return the decoded reply; ``{"error": ...}`` raises ServerError."""
        return self.send_raw(
            pack(make_request(endpoint, data, api_token=self.api_token, with_data=requires_input))
        )

    def send_raw(self, payload: bytes) -> Any:
        """Send already-encoded bytes (used by tests and tools) and decode the reply."""
        assert self._socket is not None
        try:
            self._socket.send(payload)
            reply = self._socket.recv()
        except zmq.Again as exc:
            self._connect()  # a REQ socket that missed its reply cannot send again
            raise TimeoutError(
                f"no reply from policy server tcp://{self.host}:{self.port} within {self.timeout_ms} ms"
            ) from exc
        response = unpack(reply)
        if isinstance(response, dict) and "error" in response:
            raise ServerError(f"Server error: {response['error']}")
        return response

    def ping(self) -> bool:
        """True if the server answers."""
        try:
            self.call_endpoint("ping", requires_input=False)
            return True
        except (TimeoutError, zmq.ZMQError):
            return False

    def get_action(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """The action dict for an observation ``{"video": ..., "state": ..., "language": ...}``."""
        return self.get_action_and_info(observation, options)[0]

    def get_action_and_info(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(action, info)``: the server's whole ``[action, info]`` reply."""
        response = self.call_endpoint("get_action", {"observation": observation, "options": options})
        if not isinstance(response, list) or len(response) != 2:
            raise ServerError(f"get_action: expected a [action, info] reply, got {type(response).__name__}")
        return response[0], response[1]

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Reset the policy's episode state; returns the server's info dict."""
        return self.call_endpoint("reset", {"options": options})

    def get_modality_config(self) -> dict[str, dict[str, Any]]:
        """``{modality: {delta_indices, modality_keys, ...}}`` as plain dicts."""
        return self.call_endpoint("get_modality_config", requires_input=False)

    def kill_server(self) -> None:
        """Ask the server to stop after replying."""
        self.call_endpoint("kill", requires_input=False)

    def close(self) -> None:
        """Release the socket and context (idempotent)."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
            self._context.term()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
