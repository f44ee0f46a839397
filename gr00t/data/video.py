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

BACKENDS = ("torchcodec", "pyav")
DEFAULT_TOLERANCE_S = 1e-4
DEFAULT_CACHE_SIZE = 16
_FFMPEG_THREADS = 1  # decode threads per decoder opened by this process (set_ffmpeg_threads)
_PYAV_DECODED = [0]  # frames the PyAV backend decoded in this process (pyav_decoded_frames)


class VideoDecodeError(RuntimeError):
    """A video could not be opened or the requested frames could not be decoded."""


class VideoOpenError(VideoDecodeError):
    """A video file is missing or could not be opened (bad container, unsupported codec)."""


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


# ----------------------------------------------------------------------------- backends
class _TorchcodecVideo:
    name = "torchcodec"

    def __init__(self, path: Path):
        from torchcodec.decoders import VideoDecoder

        self.decoder = VideoDecoder(
            str(path),
            dimension_order="NHWC",
            seek_mode="exact",
            device="cpu",
            num_ffmpeg_threads=_FFMPEG_THREADS,
        )
        meta = self.decoder.metadata
        self.fps = float(meta.average_fps)
        self.begin = float(meta.begin_stream_seconds or 0.0)
        self.end = float(meta.end_stream_seconds)
        self.num_frames = int(meta.num_frames)

    def nearest(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # A frame is "played at" s when pts <= s < next pts: shifting by half a frame gives
        # the nearest frame, robust to float32 timestamps landing just below a frame's pts.
        half = 0.5 / self.fps
        query = np.clip(timestamps + half, self.begin, np.nextafter(self.end, -np.inf))
        batch = self.decoder.get_frames_played_at(seconds=query.tolist())
        return batch.data.numpy(), batch.pts_seconds.numpy().astype(np.float64)

    def segment(self, start_s: float, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        # "Played in [a, b)" includes a frame still on screen at a: start a quarter frame late
        # so the frame before the nearest one is excluded.
        start = min(max(start_s + 0.25 / self.fps, self.begin), np.nextafter(self.end, -np.inf))
        stop = min(max(start_s + (num_frames - 0.5) / self.fps, start), self.end)
        batch = self.decoder.get_frames_played_in_range(start, stop)
        return batch.data.numpy(), batch.pts_seconds.numpy().astype(np.float64)

    def keyframes(self) -> tuple[np.ndarray, int]:
        # From the packet index the exact seek mode scanned at open; nothing is decoded.
        return np.asarray(self.decoder._get_key_frame_indices(), dtype=np.int64), self.num_frames

    def close(self) -> None:
        self.decoder = None


class _PyAVVideo:
    name = "pyav"
    # Requests further apart than this re-seek instead of decoding everything in between.
    reseek_gap_s = 1.0

    def __init__(self, path: Path):
        import av

        self.container = av.open(str(path))
        if not self.container.streams.video:
            self.container.close()
            raise VideoDecodeError("file has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_count = _FFMPEG_THREADS
        self.time_base = float(self.stream.time_base)
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self._live = None  # the running decode (a suspended generator) and the last frame it gave
        self._last: tuple[float, object] | None = None

    def _seek(self, t: float) -> None:
        self.container.seek(
            max(int(t / self.time_base), 0), stream=self.stream, backward=True, any_frame=False
        )

    def _decode(self, t: float):
        # t is half a frame before the wanted frame; the seek aims just short of the next frame, so a
        # wanted keyframe is decoded from itself rather than from the keyframe before it.
        self._seek(t + 0.99 / self.fps)
        for frame in self.container.decode(self.stream):
            _PYAV_DECODED[0] += 1
            if frame.pts is not None:
                yield frame.pts * self.time_base, frame

    def _frames_from(self, t: float):
        """(pts, frame) from the frame shown at `t` on (`t` is half a frame before the wanted time).
        Continues the running decode, its last frame first, when that frame is still the nearest to the
        wanted time or before it, and less than `reseek_gap_s` behind; otherwise seeks."""
        last, live = self._last, self._live
        if (
            live is not None
            and last is not None
            and last[0] <= t + 1.0 / self.fps <= last[0] + self.reseek_gap_s
        ):
            yield last
        else:
            live = self._live = self._decode(t)
            self._last = None
        for item in live:
            self._last = item
            yield item
        self._live = self._last = None  # stream ended

    def nearest(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(timestamps, kind="stable")
        sorted_ts = timestamps[order]
        out: list = [None] * len(timestamps)
        pts = np.full(len(timestamps), np.nan)
        i = 0

        def assign(ft, frame):
            nonlocal i
            image = frame.to_ndarray(format="rgb24")
            out[order[i]], pts[order[i]] = image, ft
            i += 1
            # Consecutive identical requests share the frame.
            while i < len(order) and sorted_ts[i] == sorted_ts[i - 1]:
                out[order[i]], pts[order[i]] = image, ft
                i += 1

        while i < len(order):
            prev = None
            reseek = False
            start_i = i
            for ft, frame in self._frames_from(float(sorted_ts[i]) - 0.5 / self.fps):
                # Requests at or before the midpoint of prev and this frame are nearest to prev.
                while i < len(order) and (
                    (prev is not None and sorted_ts[i] <= 0.5 * (prev[0] + ft))
                    or (prev is None and sorted_ts[i] <= ft)
                ):
                    assign(*(prev if prev is not None else (ft, frame)))
                if i == len(order):
                    break
                if i > start_i and sorted_ts[i] - ft > self.reseek_gap_s:
                    reseek = True
                    break
                prev = (ft, frame)
            if reseek:
                continue
            if i < len(order):
                if prev is None:
                    raise VideoDecodeError(f"no frame decodable at or after t={sorted_ts[i]:.4f}s")
                while i < len(order):  # stream ended: the last frame is the nearest
                    assign(*prev)
        return np.stack(out), pts

    def segment(self, start_s: float, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        half = 0.5 / self.fps
        frames, pts = [], []
        for ft, frame in self._frames_from(start_s - half):
            if ft < start_s - half:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(ft)
            if len(frames) == num_frames:
                break
        if not frames:
            return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0)
        return np.stack(frames), np.asarray(pts, dtype=np.float64)

    def keyframes(self) -> tuple[np.ndarray, int]:
        """Presentation-order numbers of the keyframes and the frame count, from the packets alone."""
        import av

        with av.open(str(self.container.name)) as container:
            packets = [(p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0])]
        packets = sorted((pts, key) for pts, key in packets if pts is not None)
        return np.asarray([i for i, (_, key) in enumerate(packets) if key], dtype=np.int64), len(packets)

    def close(self) -> None:
        self._live = self._last = None
        self.container.close()


_BACKEND_CLASSES = {"torchcodec": _TorchcodecVideo, "pyav": _PyAVVideo}


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
    global _FFMPEG_THREADS
    if int(threads) < 1:
        raise ValueError(f"FFmpeg thread count must be >= 1, got {threads}")
    _FFMPEG_THREADS = int(threads)


def pyav_decoded_frames() -> int:
    """Frames the PyAV backend has decoded in this process so far (what seeking really costs)."""
    return _PYAV_DECODED[0]


def cached_decoder_count() -> int:
    """Number of decoders currently open in this process (for tests and diagnostics)."""
    return len(_CACHE.entries) if _CACHE.pid == os.getpid() else 0


def _open(backend: str, path: Path, context: str):
    if not path.is_file():
        raise VideoOpenError(f"video file not found: {_where(path, context)}")
    try:
        return _BACKEND_CLASSES[backend](path)
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
