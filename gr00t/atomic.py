"""Atomic, shareable file writes: the one place the package writes files that others read.

Every writer here stages into a temporary name next to the target (same folder, so the final
``os.replace`` is an atomic rename on one filesystem), flushes and fsyncs, then renames. A crash
leaves the old file or the new one, never half of one; a failed write removes its temporary.

Modes follow the process umask like ordinary files (0644 files / 0755 folders under the default
umask 022): temporaries are created with ``0o666``/``0o777`` and the kernel applies the umask
(``tempfile.mkstemp``/``mkdtemp`` would give 0600/0700). Files written by libraries that pick
their own mode (safetensors writes 0600) are brought back with :func:`share_tree`.

Temporary names are ``.<name>.tmp-<pid>-<random>``; :func:`temp_owner` reads the pid back so that
cleanup can tell a live writer's temporary from a dead one's.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_MARK = ".tmp-"
_TMP_RE = re.compile(r"\.tmp-(\d+)(?:-[0-9a-f]+)?(?:\.[^/]*)?$")
_umask_lock = threading.Lock()


# ---- modes ------------------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; else a locked set-and-restore)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of an ordinary new file under the current umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of an ordinary new folder under the current umask (0o755 under umask 022)."""
    return 0o777 & ~current_umask()


def share_tree(root: str | Path) -> None:
    """Give ``root`` and everything below it ordinary umask modes (0644, executables and folders 0755)."""
    root = Path(root)
    fmode, dmode = file_mode(), dir_mode()
    paths = [root] if not root.is_dir() else [root, *root.rglob("*")]
    for path in paths:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        if stat.S_ISDIR(st.st_mode):
            want = dmode
        else:
            want = dmode if st.st_mode & 0o111 else fmode
        if stat.S_IMODE(st.st_mode) != want:
            os.chmod(path, want)


# ---- temporaries ------------------------------------------------------------------------------------


def temp_path(target: str | Path) -> Path:
    """A fresh temporary name next to ``target``: ``.<name>.tmp-<pid>-<random>``."""
    target = Path(target)
    return target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def temp_owner(path: str | Path) -> int | None:
    """The pid encoded in a temporary name made here (or ``<name>.tmp-<pid>``), else None."""
    match = _TMP_RE.search(Path(path).name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def remove(path: str | Path) -> None:
    """Delete a file or folder if it exists (best effort)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---- fsync ------------------------------------------------------------------------------------------


def fsync_path(path: str | Path) -> None:
    """fsync a file or folder, best effort (not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and folder below ``root`` (folders last, so their entries are durable)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


# ---- files ------------------------------------------------------------------------------------------


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary next to ``path`` for writing; on success it is fsynced and renamed to ``path``.

    ``mode`` is ``"w"`` (text) or ``"wb"``. The parent folder is created when missing.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file mode {mode!r}: expected 'w' or 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path for a library that writes files by name (savefig, pyarrow, PyAV, ...).

    On success the file gets ordinary modes, is fsynced and renamed to ``path``; on failure it is
    removed. Create the file under the yielded name (it does not exist yet).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written for {path}")
        share_tree(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise
    fsync_path(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(
    path: str | Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False, newline: bool = False
) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (objects it cannot encode become ``str``)."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=str)
    return write_text(path, text + ("\n" if newline else ""))


# ---- folders ----------------------------------------------------------------------------------------


def make_temp_dir(target: str | Path) -> Path:
    """Create an empty staging folder next to ``target`` with ordinary modes (unlike ``mkdtemp``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    tmp.mkdir(mode=0o777)
    return tmp


def publish_dir(staging: str | Path, target: str | Path, *, replace: bool = False) -> Path:
    """Rename a finished staging folder to ``target`` after fixing modes and fsyncing it.

    With ``replace`` an existing ``target`` is first renamed aside and deleted afterwards, so there is
    no instant without a complete copy; otherwise an existing non-empty ``target`` is an error.
    """
    staging, target = Path(staging), Path(target)
    share_tree(staging)
    fsync_tree(staging)
    old = None
    if target.exists() and replace:
        old = temp_path(target)
        os.replace(target, old)
    os.replace(staging, target)
    fsync_path(target.parent)
    if old is not None:
        remove(old)
    return target


@contextmanager
def atomic_dir(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Stage a whole folder: write into the yielded folder; on success it becomes ``target``."""
    staging = make_temp_dir(target)
    try:
        yield staging
        publish_dir(staging, target, replace=replace)
    except BaseException:
        remove(staging)
        raise


__all__ = [
    "TMP_MARK",
    "atomic_dir",
    "atomic_file",
    "atomic_path",
    "current_umask",
    "dir_mode",
    "file_mode",
    "fsync_path",
    "fsync_tree",
    "make_temp_dir",
    "pid_alive",
    "publish_dir",
    "remove",
    "share_tree",
    "temp_owner",
    "temp_path",
    "write_bytes",
    "write_json",
    "write_text",
]
