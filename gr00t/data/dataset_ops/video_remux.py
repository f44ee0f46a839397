"""Concatenate episode segments of mp4 files into one mp4 without re-encoding (PyAV stream copy).

A piece is the frames of one episode in a source file, `[from_ts, from_ts + length / fps)`. Its
packets are copied from the keyframe at or before its first frame up to the last packet (in
decoding order) that shows one of its frames, so every frame it needs as a reference comes along.
Frames copied only as references stay in the output file outside the episode's time range; LeRobot
and gr00t readers address frames by `from_timestamp + timestamp`, so they never show. Pieces are
placed back to back on the source's time grid and the episode's new `from_timestamp`/
`to_timestamp` are returned.

Stream copy needs one set of codec parameters per file: the caller only groups pieces whose
`stream_signature` agrees. If a piece cannot be cut at a keyframe, or (with `verify`) its first or
last frame does not decode to the same pixels as in its source, the whole file is re-encoded from
decoded frames instead, and the reason is returned.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from gr00t.data import video as video_lib
from gr00t.data.video_encode import encode_video, resolve_encoder

# PyAV decodes for checks and re-encoding: it needs no torch import, so the CLI starts fast.
BACKEND = "pyav"
REENCODE_BATCH = 64
ENCODER_FAMILY = {"h264": "h264", "av1": "av1"}


class StreamCopyError(RuntimeError):
    """A piece cannot be copied without re-encoding (the reason is the message)."""


@dataclass(frozen=True)
class Piece:
    """Frames `timestamps` (seconds from the episode start) of one episode, shown at `from_ts + t`."""

    path: Path
    from_ts: float
    to_ts: float | None
    timestamps: np.ndarray

    @property
    def length(self) -> int:
        return len(self.timestamps)


@dataclass(frozen=True)
class Placed:
    from_ts: float
    to_ts: float


@dataclass(frozen=True)
class ConcatResult:
    placed: list[Placed]
    reencoded: str | None  # why the file was re-encoded, None for a stream copy


def stream_signature(path: Path) -> tuple:
    """(codec, width, height, pixel format, codec extradata hash): equal signatures can share a file."""
    st = Path(path).stat()
    return _signature(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4096)
def _signature(path: str, mtime_ns: int, size: int) -> tuple:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise video_lib.VideoOpenError(f"{path}: no video stream")
        ctx = container.streams.video[0].codec_context
        extradata = bytes(ctx.extradata or b"")
        return (
            ctx.codec.canonical_name,
            ctx.width,
            ctx.height,
            ctx.format.name if ctx.format else None,
            hashlib.sha1(extradata).hexdigest(),
        )


def _piece_packets(container, stream, piece: Piece, fps: float) -> list:
    """Packets to copy for `piece`, in decoding order, starting with a keyframe."""
    tb = stream.time_base
    half = 0.5 / fps
    first = piece.from_ts + float(piece.timestamps[0])
    last = piece.from_ts + float(piece.timestamps[-1])
    lo, hi = int(round((first - half) / tb)), int(round((last + half) / tb))
    container.seek(max(int(round(first / tb)), 0), stream=stream, backward=True, any_frame=False)
    packets = []
    for packet in container.demux(stream):
        if packet.dts is None or packet.pts is None:
            if packet.size:
                raise StreamCopyError(f"{piece.path}: packet without timestamps")
            continue
        if packet.dts >= hi:
            break
        packets.append(packet)
    live = [i for i, p in enumerate(packets) if lo <= p.pts < hi]
    if len(live) != piece.length:
        raise StreamCopyError(
            f"{piece.path}: {len(live)} frames between t={first:.4f}s and t={last:.4f}s, expected {piece.length}"
        )
    if not packets[0].is_keyframe or packets[0].pts > min(packets[i].pts for i in live):
        raise StreamCopyError(f"{piece.path}: no keyframe at or before t={first:.4f}s to start a copy at")
    return packets[: live[-1] + 1]


def _copy(out_path: Path, pieces: list[Piece], fps: float) -> list[Placed]:
    import av

    sources: dict[Path, object] = {}
    placed = []
    try:
        with av.open(str(out_path), mode="w", format="mp4") as out:
            out_stream = None
            grid: Fraction | None = None  # the output's time base (the first piece's)
            next_pts = 0
            last_dts: int | None = None
            for piece in pieces:
                if piece.path not in sources:
                    sources[piece.path] = av.open(str(piece.path))
                container = sources[piece.path]
                stream = container.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(stream, opaque=True)
                    out_stream.time_base = grid = stream.time_base
                elif stream.time_base != grid:
                    raise StreamCopyError(f"{piece.path}: time base {stream.time_base} differs from {grid}")
                packets = _piece_packets(container, stream, piece, fps)
                step = max(int(round(1 / (fps * grid))), 1)
                shift = next_pts - min(p.pts for p in packets)
                while last_dts is not None and packets[0].dts + shift <= last_dts:
                    shift += step
                for packet in packets:
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = out_stream
                    out.mux(packet)
                    last_dts = packet.dts
                next_pts = max(p.pts for p in packets) + step
                from_ts = piece.from_ts + float(shift * grid)
                to_ts = (
                    piece.to_ts + float(shift * grid)
                    if piece.to_ts is not None
                    else from_ts + piece.length / fps
                )
                placed.append(Placed(from_ts, to_ts))
    finally:
        for container in sources.values():
            container.close()
    if out_stream is not None and out_stream.time_base != grid:
        raise StreamCopyError(f"the mp4 muxer changed the time base from {grid} to {out_stream.time_base}")
    return placed


def _same_frames(out_path: Path, pieces: list[Piece], placed: list[Placed]) -> str | None:
    """None when each piece's first and last frames decode identically in the copy; else why not."""
    for piece, where in zip(pieces, placed):
        ends = [float(piece.timestamps[0]), float(piece.timestamps[-1])]
        want = video_lib.decode_frames(piece.path, [piece.from_ts + t for t in ends], backend=BACKEND)
        got = video_lib.decode_frames(out_path, [where.from_ts + t for t in ends], backend=BACKEND)
        if not np.array_equal(want, got):
            return f"frames of the piece from {piece.path} at t={piece.from_ts:.4f}s differ after the copy"
    return None


def _reencode(out_path: Path, pieces: list[Piece], fps: float, codec: str, gop: int) -> list[Placed]:
    placed, start = [], 0.0

    def frames():
        for piece in pieces:  # a bounded number of frames in memory at a time
            for start in range(0, piece.length, REENCODE_BATCH):
                ts = piece.from_ts + piece.timestamps[start : start + REENCODE_BATCH]
                yield from video_lib.decode_frames(piece.path, ts, backend=BACKEND)

    for piece in pieces:
        span = piece.length / fps
        placed.append(Placed(start + float(piece.timestamps[0]), start + span))
        start += span
    if int(fps) != fps:
        raise StreamCopyError(f"cannot re-encode {out_path} at a fractional fps {fps}")
    encode_video(out_path, frames(), int(fps), codec=codec, gop=gop)
    return placed


def concat_pieces(
    out_path: Path, pieces: list[Piece], fps: float, verify: bool = True, reencode: bool = False
) -> ConcatResult:
    """Write `pieces` back to back into `out_path`; stream copy unless impossible or `reencode`."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    reason = "re-encoding was asked for (reencode=true)" if reencode else None
    if reason is None:
        try:
            placed = _copy(out_path, pieces, fps)
            reason = _same_frames(out_path, pieces, placed) if verify else None
            video_lib.clear_decoder_cache()  # no decoder may outlive this file's contents
            if reason is None:
                return ConcatResult(placed, None)
        except StreamCopyError as err:
            reason = str(err)
        out_path.unlink(missing_ok=True)
    codec = ENCODER_FAMILY.get(stream_signature(pieces[0].path)[0], "h264")
    gop = max(1, keyframe_interval(pieces[0].path) or 2)
    resolve_encoder(codec)  # a clear error when no encoder for the family exists
    return ConcatResult(_reencode(out_path, pieces, fps, codec, gop), reason)


def keyframe_interval(path: Path, max_packets: int = 600) -> int | None:
    """Largest distance in frames between keyframes among the first packets (the GOP); None if unknown."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        marks = []
        for i, packet in enumerate(p for p in container.demux(stream) if p.size):
            if packet.is_keyframe:
                marks.append(i)
            if i + 1 >= max_packets:
                break
        if not marks:
            return None
        total = i + 1
    gaps = np.diff(marks + [total])
    return int(gaps.max()) if len(gaps) else None
