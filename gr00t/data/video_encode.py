"""Writing mp4 files with PyAV (h264 or AV1), atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from gr00t import atomic

# AV1 encoders in order of preference (LeRobot records with libsvtav1).
AV1_ENCODERS = ("libsvtav1", "libaom-av1")
H264_ENCODERS = ("libx264", "libopenh264")


def encoder_available(name: str) -> bool:
    """Whether PyAV's FFmpeg build can encode with codec `name`."""
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several error types for unknown codecs
        return False
    return True


def resolve_encoder(codec: str) -> str:
    """Map `"h264"`/`"av1"` to an available encoder name; concrete names pass through (checked)."""
    candidates = {"h264": H264_ENCODERS, "av1": AV1_ENCODERS}.get(codec, (codec,))
    for name in candidates:
        if encoder_available(name):
            return name
    raise ValueError(
        f"video codec {codec!r}: none of the encoders {list(candidates)} is available in PyAV's FFmpeg build"
    )


def _encoder_options(encoder: str, crf: int, gop: int) -> dict[str, str]:
    options = {"g": str(gop), "crf": str(crf)}
    if encoder == "libsvtav1":
        options["preset"] = "12"
    elif encoder == "libaom-av1":
        options["cpu-used"] = "8"
    elif encoder == "libopenh264":
        options = {"g": str(gop)}
    return options


def encode_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int,
    codec: str = "h264",
    crf: int = 23,
    gop: int = 2,
    pix_fmt: str = "yuv420p",
) -> int:
    """Encode uint8 RGB frames [H, W, 3] into an mp4 at `path`; returns the number of frames.

    Frame i gets the presentation time i / fps. The file is written to a temporary name and
    renamed into place, so a failed encode never leaves a half-written video behind.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = resolve_encoder(codec)
    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
    count = 0
    with atomic.atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(
                    f"{path}: frame {count} must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}"
                )
            if stream is None:
                stream = container.add_stream(encoder, rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = pix_fmt
                stream.options = _encoder_options(encoder, crf, gop)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = count
            video_frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(video_frame))
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to encode")
        container.mux(stream.encode(None))
    return count
