"""Process-group helpers that are no-ops in a single process (no launcher, or a one-process group)."""

from __future__ import annotations

import os
from typing import Any

import torch.distributed as dist


def launcher_world_size() -> int:
    """Number of processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def dist_ready() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist_ready():
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (picklable objects; identity in a single process)."""
    if not dist_ready():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
