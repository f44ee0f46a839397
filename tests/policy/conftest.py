"""Fixtures for the deployment tests: a small policy object and a server running in a thread."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from gr00t.policy.client import PolicyClient
from gr00t.policy.server import PolicyServer


class DoublingPolicy:
    """Returns twice the `arm` state; rejects observations without it (stands in for the model only in
    tests whose subject is the transport)."""

    def __init__(self) -> None:
        self.resets = 0

    def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None):
        if not isinstance(observation, dict) or "state" not in observation:
            raise ValueError("observation lacks 'state'")
        arm = observation["state"].get("arm")
        if not isinstance(arm, np.ndarray) or arm.dtype != np.float32:
            raise ValueError("state['arm'] must be a float32 array")
        return {"arm": arm * 2}, {"options": options or {}}

    def reset(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        self.resets += 1
        return {}

    def get_modality_config(self) -> dict[str, Any]:
        return {
            "state": {"delta_indices": [0], "modality_keys": ["arm"]},
            "action": {
                "delta_indices": list(range(4)),
                "modality_keys": ["arm"],
                "action_configs": [
                    {"rep": "RELATIVE", "type": "NON_EEF", "format": "DEFAULT", "state_key": "arm"}
                ],
            },
        }


@pytest.fixture
def threaded_server(request):
    """(server, port) of a PolicyServer on a free loopback port, served by a background thread."""
    kwargs = getattr(request, "param", {})
    server = PolicyServer(DoublingPolicy(), host="127.0.0.1", port=0, **kwargs)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server, server.port
    server.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.fixture
def client_factory():
    made: list[PolicyClient] = []

    def make(port: int, **kwargs: Any) -> PolicyClient:
        kwargs.setdefault("timeout_ms", 3000)
        client = PolicyClient(host="127.0.0.1", port=port, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """Small demo dataset (2 episodes x 40 frames) with statistics; read-only."""
    from tests.policy.tiny_checkpoint import write_small_demo

    return write_small_demo(tmp_path_factory.mktemp("policy_demo") / "dataset")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A saved n16_tiny model + processor (fresh weights, relative arm actions, synthetic statistics);
    read-only."""
    from tests.policy.tiny_checkpoint import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("policy_ckpt") / "checkpoint-0")
