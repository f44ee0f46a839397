"""Deployment: the policy (raw observation -> absolute actions), its ZeroMQ server and a light client.

`Policy` (the protocol both `Gr00tPolicy` and `PolicyClient` implement), `PolicyClient` and the wire
protocol live in the light client package `gr00t_client` (clients/python, also shipped inside the
gr00t wheel) and need only pyzmq, msgpack and numpy; `gr00t.policy.{base,client,protocol}`
re-export them. `Gr00tPolicy` and `PolicyServer` are imported lazily, so importing the client
parts never loads torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Gr00tPolicy", "Policy", "PolicyClient", "PolicyServer"]

_LAZY = {
    "Policy": "gr00t_client.base",
    "Gr00tPolicy": "gr00t.policy.policy",
    "PolicyServer": "gr00t.policy.server",
    "PolicyClient": "gr00t_client.client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gr00t.policy' has no attribute {name!r}")
