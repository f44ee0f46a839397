"""Processes that do not outlive their launcher (Linux parent-death signal).

``torchrun`` starts each trainer in its own session, so a SIGKILL of the launcher's process group
(``launch/torchrun/run.sh``, a killed job step) used to leave the trainers running: orphans that
went on writing checkpoints into a run directory a restarted job was using. With
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` the kernel kills a process as soon as its parent dies. The
chain is: ``run.sh`` → torchrun (through ``python -m gr00t.train.lifetime``) → trainers
(`die_with_parent` when started by torchrun) → DataLoader workers (from their ``worker_init_fn``).

SIGKILL, not SIGTERM: SIGTERM means "preempted: checkpoint and exit", and an orphan must not write.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; False where unsupported.

    The request follows the parent *thread* that started us, survives ``exec`` and is not inherited
    by children. If the parent is already gone (we were re-parented to init), exit right away.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return False
    except (OSError, AttributeError) as exc:
        logger.warning("cannot set a parent-death signal: %s", exc)
        return False
    if parent == 1 or os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
    return True


def launched_by_torchrun() -> bool:
    """Whether this process is a worker started by a torchrun (torch elastic) agent."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "LOCAL_RANK" in os.environ


def tie_trainer_to_launcher() -> bool:
    """In a trainer started by torchrun: die with the agent (True when the request is in place)."""
    return launched_by_torchrun() and die_with_parent()


def main(argv: list[str] | None = None) -> None:
    """``python -m gr00t.train.lifetime <program> [args...]``: exec ``program`` tied to our parent."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m gr00t.train.lifetime <program> [args ...]")
    die_with_parent()
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
