"""The `Policy` protocol, shared with the light client package (defined in `gr00t_client.base`)."""

from gr00t_client.base import Policy

__all__ = ["Policy"]
