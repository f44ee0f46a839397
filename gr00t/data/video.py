"""Frame-exact video decoding: only the frames a sample needs, torchcodec (CPU) or PyAV.

Timestamps are matched to the nearest decoded frame and rejected when that frame is more than
`tolerance_s` away, so a sample never silently receives the wrong frame. Decoders are kept open
in a per-process LRU cache keyed by (pid, thread, backend, path, slot): after a DataLoader fork
every worker opens its own decoders instead of sharing FFmpeg state with its parent, and callers
that read one file at several places at once (the decode-aware loader's lanes) give each place
its own ``slot`` so every decoder keeps moving forward.

A request at or after the frames a decoder last returned continues decoding from there (torchcodec
does this itself inside a GOP; the PyAV backend keeps its demuxer running), so reading a video window
after window costs one keyframe seek, not one per window. `keyframe_indices` reads a file's keyframe
positions from the container index without decoding. `set_ffmpeg_threads` sets the FFmpeg decode
threads of decoders opened afterwards in this process (1 by default: DataLoader workers scale by
processes, not threads).
"""

from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from gr00t.data.video_backends import (  # noqa: F401  (re-exported)
    BACKEND_CLASSES,
    DECODER_STATE,
    VideoDecodeError,
    VideoOpenError,
)

BACKENDS = ("torchcodec", "pyav")
DEFAULT_TOLERANCE_S = 1e-4
DEFAULT_CACHE_SIZE = 16


def torchcodec_available() -> bool:
    """Whether torchcodec and its FFmpeg libraries load in this process."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # noqa: BLE001 - a missing FFmpeg shows up as OSError/RuntimeError
        return False
    return True


def resolve_backend(backend: str) -> str:
    """`"auto"` → torchcodec when it loads, else PyAV; explicit names are checked."""
    if backend == "auto":
        return "torchcodec" if torchcodec_available() else "pyav"
    if backend not in BACKENDS:
        raise ValueError(f"video backend {backend!r}: expected one of {BACKENDS} or 'auto'")
    return backend


def _where(path: Path, context: str) -> str:
    return f"{path}" + (f" ({context})" if context else "")


# ----------------------------------------------------------------------------- cache
class _DecoderCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.entries: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.pid = os.getpid()

    def get(self, backend: str, path: Path, context: str, slot: int = 0):
        with self.lock:
            if self.pid != os.getpid():
                # Forked child: the parent's FFmpeg contexts are not ours to use (or close).
                self.entries = OrderedDict()
                self.pid = os.getpid()
            key = (os.getpid(), threading.get_ident(), backend, str(path), slot)
            video = self.entries.get(key)
            if video is not None:
                self.entries.move_to_end(key)
                return video
        video = _open(backend, path, context)
        with self.lock:
            self.entries[key] = video
            while len(self.entries) > self.capacity:
                old_key, old = self.entries.popitem(last=False)
                if old_key[1] == threading.get_ident():
                    old.close()  # another thread's decoder may be in use: let GC close it
        return video

    def drop(self, backend: str, path: Path, slot: int = 0) -> None:
        with self.lock:
            key = (os.getpid(), threading.get_ident(), backend, str(path), slot)
            video = self.entries.pop(key, None)
        if video is not None:
            video.close()

    def clear(self) -> None:
        with self.lock:
            entries, self.entries = self.entries, OrderedDict()
            mine = self.pid == os.getpid()
        if mine:
            for video in entries.values():
                video.close()


_CACHE = _DecoderCache(DEFAULT_CACHE_SIZE)
# A PyAV container is freed by the garbage collector (it references its streams and they it). Collect
# before forking: a forked child (DataLoader worker) that frees an inherited container with FFmpeg
# slice threads waits forever for threads that do not exist in it.
os.register_at_fork(before=gc.collect)


def clear_decoder_cache() -> None:
    """Close every decoder this process holds open."""
    _CACHE.clear()


def set_decoder_cache_size(capacity: int) -> None:
    """How many decoders each process (and thread) may keep open."""
    if capacity < 1:
        raise ValueError(f"decoder cache size must be >= 1, got {capacity}")
    _CACHE.capacity = capacity


def set_ffmpeg_threads(threads: int) -> None:
    """FFmpeg decode threads of every decoder this process opens from now on (default 1)."""
    if int(threads) < 1:
        raise ValueError(f"FFmpeg thread count must be >= 1, got {threads}")
    DECODER_STATE["ffmpeg_threads"] = int(threads)


def pyav_decoded_frames() -> int:
    """Frames the PyAV backend has decoded in this process so far (what seeking really costs)."""
    return DECODER_STATE["pyav_decoded"]


def cached_decoder_count() -> int:
    """Number of decoders currently open in this process (for tests and diagnostics)."""
    return len(_CACHE.entries) if _CACHE.pid == os.getpid() else 0


def _open(backend: str, path: Path, context: str):
    if not path.is_file():
        raise VideoOpenError(f"video file not found: {_where(path, context)}")
    try:
        return BACKEND_CLASSES[backend](path)
    except Exception as err:  # noqa: BLE001 - FFmpeg errors come in many types
        raise VideoOpenError(
            f"cannot open video {_where(path, context)} with {backend} (truncated or not a video?): "
            f"{type(err).__name__}: {err}"
        ) from err


def _with_backend(path, backend: str, context: str, fn, slot: int = 0):
    """Run fn(video) with a cached decoder; 'auto' falls back to PyAV when torchcodec cannot open the file."""
    path = Path(path)
    names = [resolve_backend(backend)]
    if backend == "auto" and names[0] == "torchcodec":
        names.append("pyav")
    open_errors = []
    for name in names:
        try:
            video = _CACHE.get(name, path, context, slot)
        except VideoOpenError as err:
            open_errors.append(err)
            continue
        try:
            return fn(video)
        except VideoDecodeError as err:
            if str(path) in str(err):
                raise
            raise VideoDecodeError(f"{_where(path, context)} ({name}): {err}") from err
        except Exception as err:  # noqa: BLE001
            _CACHE.drop(name, path, slot)
            raise VideoDecodeError(
                f"decoding {_where(path, context)} with {name} failed (truncated or corrupt video?): "
                f"{type(err).__name__}: {err}"
            ) from err
    if len(open_errors) == 1:
        raise open_errors[0]
    raise VideoOpenError("; ".join(str(e) for e in open_errors)) from open_errors[-1]


# ----------------------------------------------------------------------------- public API
def decode_frames(
    path: str | Path,
    timestamps,
    backend: str = "auto",
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    context: str = "",
    slot: int = 0,
) -> np.ndarray:
    """Decode the frames shown at `timestamps` (seconds, in the file's time) → uint8 [T, H, W, 3].

    Each timestamp is matched to the nearest frame; a frame further than `tolerance_s` away
    raises `VideoDecodeError` naming the file and `context` (e.g. "episode 3, observation.images.front").
    The frames are decoded in one pass in time order; ``slot`` picks which of the process's decoders
    of this file reads them (each keeps its position for the next request).
    """
    path = Path(path)
    ts = np.atleast_1d(np.asarray(timestamps, dtype=np.float64))
    if ts.size == 0:
        raise ValueError(f"decode_frames({path}): no timestamps requested")
    if not np.all(np.isfinite(ts)):
        raise ValueError(f"decode_frames({_where(path, context)}): non-finite timestamps {ts.tolist()}")

    def run(video):
        frames, pts = video.nearest(ts)
        _check_pts(path, context, ts, pts, tolerance_s)
        return frames

    return _with_backend(path, backend, context, run, slot)


def decode_segment(
    path: str | Path,
    start_timestamp: float,
    num_frames: int,
    backend: str = "auto",
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    context: str = "",
) -> np.ndarray:
    """Decode `num_frames` consecutive frames starting at the frame shown at `start_timestamp`.

    One seek and a sequential decode: the efficient way to read a contiguous window.
    Returns uint8 [num_frames, H, W, 3]; raises `VideoDecodeError` if the stream ends early.
    """
    path = Path(path)
    if num_frames < 1:
        raise ValueError(f"decode_segment({path}): num_frames must be >= 1, got {num_frames}")

    def run(video):
        frames, pts = video.segment(float(start_timestamp), num_frames)
        if len(frames) < num_frames:
            raise VideoDecodeError(
                f"{_where(path, context)}: asked for {num_frames} frames from t={start_timestamp:.4f}s, "
                f"the stream holds only {len(frames)} (video shorter than its metadata, or truncated)"
            )
        frames, pts = frames[:num_frames], pts[:num_frames]
        _check_pts(path, context, np.asarray([float(start_timestamp)]), pts[:1], tolerance_s)
        return frames

    return _with_backend(path, backend, context, run)


def keyframe_indices(path: str | Path, backend: str = "auto") -> np.ndarray:
    """Frame numbers (presentation order, from 0) of the file's keyframes, read from the container
    index (torchcodec's scan at open, or PyAV's packets) without decoding any frame."""
    return _with_backend(Path(path), backend, "", lambda video: video.keyframes()[0])


def keyframe_grid(path: str | Path, start_frame: int = 0, backend: str = "auto") -> tuple[int, int]:
    """`(spacing, first)`: how far apart the file's keyframes are, seen from a clip that starts at
    frame ``start_frame`` of the file (a LeRobot episode).

    ``spacing`` is the largest gap between consecutive keyframes (the frame count when the file has
    one keyframe): decoding a frame never costs more than that many frames. ``first`` is the clip
    frame, in ``[0, spacing)``, on the grid of the first keyframe plus multiples of ``spacing``: with
    a fixed GOP, clip frames ``first + k·spacing`` are keyframes. Nothing is decoded.
    """
    keys, count = _with_backend(Path(path), backend, "", lambda video: video.keyframes())
    spacing = int(np.diff(keys).max()) if len(keys) >= 2 else max(int(count), 1)
    anchor = int(keys[0]) if len(keys) else 0
    return spacing, (anchor - int(start_frame)) % spacing


def video_info(path: str | Path, backend: str = "auto") -> dict:
    """`{"fps", "num_frames" (torchcodec only, else None), "backend"}` of a video file."""

    def run(video):
        return {"fps": video.fps, "num_frames": getattr(video, "num_frames", None), "backend": video.name}

    return _with_backend(Path(path), backend, "", run)


def _check_pts(path: Path, context: str, wanted: np.ndarray, got: np.ndarray, tolerance_s: float) -> None:
    err = np.abs(got - wanted)
    bad = np.flatnonzero(~(err <= tolerance_s))
    if bad.size:
        k = int(bad[0])
        raise VideoDecodeError(
            f"{_where(path, context)}: no frame within {tolerance_s}s of t={wanted[k]:.6f}s "
            f"(nearest frame at {got[k]:.6f}s; {bad.size} of {wanted.size} timestamps off). "
            "The video is shorter than its metadata or its timestamps disagree with the parquet data."
        )
