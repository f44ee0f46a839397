"""Write a dataset folder so that it appears whole or not at all.

Everything is written into a temporary sibling folder (`.<name>.tmp-<pid>-<hex>`, same file system, made
by `gr00t.atomic` with ordinary umask modes) that is
renamed into place at the end. Replacing an existing folder (`append`, `overwrite=true`) swaps the two
folders with one `renameat2(RENAME_EXCHANGE)` call where the kernel supports it, so readers see the
old dataset or the new one, never a missing or half-written folder. A sibling lock file serialises
two jobs aiming at the same output.

Staging folders and fsync come from the package's atomic-write helper (`gr00t.atomic`); the folder
exchange is this module's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from gr00t import atomic

RENAME_EXCHANGE = 2
AT_FDCWD = -100
LOCK_TIMEOUT_S = 10.0


class PublishError(RuntimeError):
    """The output folder cannot be created or replaced."""


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when the C library or file system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = func(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return rc == 0


def swap_in(new: Path, target: Path) -> None:
    """Put folder `new` at `target`; an existing `target` is replaced and deleted."""
    if not target.exists():
        os.rename(new, target)
        return
    if _renameat2_exchange(new, target):
        shutil.rmtree(new)  # `new` now names the old folder
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


@contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """Hold `<parent>/.<name>.lock` so two jobs never write the same dataset folder at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise PublishError(
            f"{target}: another gr00t-dataset job is writing it (lock {lock.lock_file} held for "
            f"{LOCK_TIMEOUT_S:.0f}s); wait for it to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()


def recover(target: Path) -> list[str]:
    """Clean up after a job that was killed (SIGKILL, power loss) while writing `target`.

    Call with the output lock held. Staging folders are deleted; an `.old-*` folder left between
    the two renames of the fallback swap is put back when `target` is missing. Returns what was done.
    """
    done = []
    for path in sorted(target.parent.glob(f".{target.name}.old-*")):
        if not target.exists():
            os.rename(path, target)
            done.append(f"restored {target} from {path.name}")
        else:
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name}")
    for path in sorted(target.parent.glob(f".{target.name}.tmp-*")):
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path.name}")
    return done


@contextmanager
def staged_output(target: Path, replace: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; publish it at `target` if the block succeeds.

    With `replace=False` an existing non-empty `target` is an error. On any exception (or
    KeyboardInterrupt) the temporary folder is deleted and `target` is left untouched.
    """
    target = Path(target).absolute()
    with output_lock(target):
        recover(target)
        if target.exists() and not target.is_dir():
            raise PublishError(f"{target} exists and is not a folder")
        if not replace and target.exists() and any(target.iterdir()):
            raise PublishError(f"{target} exists and is not empty (pass overwrite=true to replace it)")
        tmp = atomic.make_temp_dir(target)
        try:
            yield tmp
            atomic.fsync_tree(tmp)
            if target.exists() and not any(target.iterdir()):
                target.rmdir()
            swap_in(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def place_file(src: Path, dst: Path, link: bool) -> None:
    """Put a byte-identical copy of `src` at `dst`: a hard link when `link`, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system or no hard links: fall back to a copy
    shutil.copyfile(src, dst)
