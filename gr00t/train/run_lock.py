"""One trainer per run directory: rank 0 holds an exclusive lock on ``<run_dir>/RUN_LOCK`` for the run.

The lock is a ``flock`` on the file, so the kernel releases it when the holder dies, however it
dies. While held, the file names the holder (JSON: host, pid, start time, command); a clean release
empties it. A second run on the same folder fails at once with `RunDirLocked`, whose one-line
message names the holder.

Stale holders: the lock of a dead process is free (the kernel dropped it); if the file still names
that process, the new run takes over with a warning naming it. On filesystems without ``flock``
the holder file alone decides: a live pid on this host still holds the run; a dead one, or one on
another host, is taken over with a warning.

A process may acquire the same run directory again (nested calls, e.g. the build step and then the
trainer); the lock is released when the outermost holder releases it, or when the process exits.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import functools
import inspect
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from gr00t import atomic

logger = logging.getLogger(__name__)

LOCK_NAME = "RUN_LOCK"
F = TypeVar("F", bound=Callable[..., Any])
_HELD: dict[Path, RunLock] = {}


class RunDirLocked(RuntimeError):
    """Another live run holds the run directory."""


def _holder_info() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()),
        "started_unix": round(time.time(), 3),
        "command": " ".join(sys.argv)[:500],
    }


def describe_holder(info: dict[str, Any] | None) -> str:
    """``host H, pid P, started T`` for a holder record (or a note that it is unknown)."""
    if not info:
        return "holder unknown (it may be starting)"
    return f"host {info.get('host', '?')}, pid {info.get('pid', '?')}, started {info.get('started', '?')}"


def _read_info(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    if not raw.strip():
        return None
    try:
        info = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"host": "?", "pid": "?", "started": f"unreadable holder record {raw[:80]!r}"}
    return info if isinstance(info, dict) else None


def _holder_alive(info: dict[str, Any]) -> bool:
    """Whether the recorded holder still runs (only decidable on this host)."""
    pid = info.get("pid")
    return info.get("host") == socket.gethostname() and isinstance(pid, int) and atomic.pid_alive(pid)


class RunLock:
    """The held lock of one run directory (see the module docstring); release with `release()`."""

    def __init__(self, run_dir: Path, fd: int, previous: dict[str, Any] | None) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_NAME
        self.previous = previous  # the stale holder record that was taken over, if any
        self._fd: int | None = fd
        self._depth = 1

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Release one acquisition; the lock goes when the outermost one is released."""
        self._depth -= 1
        if self._depth > 0 or self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD.pop(self.run_dir, None)
        try:
            os.ftruncate(fd, 0)  # a clean end leaves no holder record behind
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_run_lock(run_dir: str | Path) -> RunLock:
    """Lock ``run_dir`` (created when missing) for this process, or raise `RunDirLocked`.

    Call on rank 0 only, before any expensive set-up, so that a second run fails in a second.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    held = _HELD.get(run_dir)
    if held is not None and held.held:
        held._depth += 1
        return held
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        previous = _lock_or_raise(fd, path)
        record = json.dumps(_holder_info(), indent=1).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    if previous:
        logger.warning(
            "run directory %s: taking over the lock left by a process that is gone (%s)",
            run_dir,
            describe_holder(previous),
        )
    lock = RunLock(run_dir, fd, previous)
    _HELD[run_dir] = lock
    return lock


def _lock_or_raise(fd: int, path: Path) -> dict[str, Any] | None:
    """Take the flock (or decide by the holder record); returns a stale record being taken over."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return _read_info(fd)  # we hold the lock: any record left in the file is a dead holder's
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return _lock_by_record(fd, path, exc)
    info = None
    for _ in range(20):  # the holder writes its record right after locking
        info = _read_info(fd)
        if info:
            break
        time.sleep(0.05)
    raise RunDirLocked(_locked_message(path, info))


def _lock_by_record(fd: int, path: Path, exc: OSError) -> dict[str, Any] | None:
    info = _read_info(fd)
    logger.warning("%s: this filesystem does not support flock (%s); using the holder record only", path, exc)
    if info and _holder_alive(info):
        raise RunDirLocked(_locked_message(path, info)) from None
    return info


def _locked_message(path: Path, info: dict[str, Any] | None) -> str:
    return (
        f"run directory {path.parent} is locked by another run ({describe_holder(info)}; lock file {path}); "
        "wait for it to end or choose another run_dir"
    )


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its launch (``RANK`` from torchrun; a lone process is rank 0)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


@contextmanager
def holding_run_dir(run_dir: str | Path) -> Iterator[RunLock | None]:
    """Hold the run directory's lock inside the block on rank 0 (other ranks hold nothing)."""
    lock = acquire_run_lock(run_dir) if is_rank_zero() else None
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def locks_run_dir(
    argument: str = "run_dir", get: Callable[[Any], Any] = lambda value: value
) -> Callable[[F], F]:
    """Decorate a function so that rank 0 holds the lock of its run directory while it runs.

    The run directory is ``get(<the call's argument named argument>)``, e.g.
    ``@locks_run_dir("cfg", lambda cfg: cfg.run_dir)``.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run_dir = get(signature.bind(*args, **kwargs).arguments[argument])
            with holding_run_dir(Path(str(run_dir))):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD.values()):
        lock._depth = 1
        lock.release()


__all__ = [
    "LOCK_NAME",
    "RunDirLocked",
    "RunLock",
    "acquire_run_lock",
    "describe_holder",
    "holding_run_dir",
    "is_rank_zero",
    "locks_run_dir",
]
