"""The two decoding backends behind `gr00t.data.video`: torchcodec and PyAV.

Each opens one file and returns the frames nearest to sorted timestamps, continuing forward from
the frames it last returned; `gr00t.data.video` caches them per process and matches timestamps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Per process: FFmpeg decode threads of decoders opened from now on (`video.set_ffmpeg_threads`),
# and the frames the PyAV backend decoded (`video.pyav_decoded_frames`).
DECODER_STATE = {"ffmpeg_threads": 1, "pyav_decoded": 0}


class VideoDecodeError(RuntimeError):
    """A video could not be opened or the requested frames could not be decoded."""


class VideoOpenError(VideoDecodeError):
    """A video file is missing or could not be opened (bad container, unsupported codec)."""


class _TorchcodecVideo:
    name = "torchcodec"

    def __init__(self, path: Path):
        from torchcodec.decoders import VideoDecoder

        self.decoder = VideoDecoder(
            str(path),
            dimension_order="NHWC",
            seek_mode="exact",
            device="cpu",
            num_ffmpeg_threads=DECODER_STATE["ffmpeg_threads"],
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
        self.stream.thread_count = DECODER_STATE["ffmpeg_threads"]
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
            DECODER_STATE["pyav_decoded"] += 1
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


BACKEND_CLASSES = {"torchcodec": _TorchcodecVideo, "pyav": _PyAVVideo}
