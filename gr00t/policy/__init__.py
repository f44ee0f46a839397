"""Deployment: the policy (raw observation -> absolute actions), its ZeroMQ server and a light client.

`Policy` (the protocol both `Gr00tPolicy` and `PolicyClient` implement), `PolicyClient` and the wire
protocol import only pyzmq, msgpack and numpy; `Gr00tPolicy` and `PolicyServer` are imported lazily
so that `import gr00t.policy.client` works on a robot computer without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Gr00tPolicy", "Policy", "PolicyClient", "PolicyServer"]

_LAZY = {
    "Policy": "gr00t.policy.base",
    "Gr00tPolicy": "gr00t.policy.policy",
    "PolicyServer": "gr00t.policy.server",
    "PolicyClient": "gr00t.policy.client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gr00t.policy' has no attribute {name!r}")
