"""Frame-exact decoding with both backends and both codecs; the per-process decoder cache."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from gr00t.data import video
from gr00t.data.demo import _write_code, read_frame_code
from gr00t.data.video_encode import encode_video, encoder_available, resolve_encoder

FPS = 10
N = 30
BACKENDS = ["torchcodec", "pyav"]
ENCODERS = ["libx264", "libsvtav1", "libaom-av1"]


def _frames(n=N, h=48, w=80):
    ys, xs = np.mgrid[0:h, 0:w]
    base = np.stack([60 + 120 * xs / w, 60 + 120 * ys / h, np.full_like(xs, 128)], -1).astype(np.uint8)
    out = []
    for i in range(n):
        img = base.copy()
        _write_code(img, i, 0)
        _write_code(img, 7, 1)
        out.append(img)
    return out


@pytest.fixture(scope="module", params=ENCODERS)
def coded_video(request, tmp_path_factory):
    if not encoder_available(request.param):
        pytest.skip(f"PyAV's FFmpeg cannot encode {request.param}")
    path = tmp_path_factory.mktemp("video") / f"{request.param}.mp4"
    assert encode_video(path, _frames(), FPS, codec=request.param) == N
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_frames_at_timestamps(coded_video, backend):
    wanted = [29, 0, 13, 13, 14, 1]
    ts = np.asarray(wanted, dtype=np.float32) / np.float32(FPS)  # float32, like parquet timestamps
    frames = video.decode_frames(coded_video, ts, backend=backend)
    assert frames.dtype == np.uint8 and frames.shape == (6, 48, 80, 3)  # non-square kept
    assert [read_frame_code(f) for f in frames] == [(7, i) for i in wanted]
    original = _frames()
    assert np.abs(frames[2, 20:].astype(int) - original[13][20:].astype(int)).mean() < 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_is_contiguous(coded_video, backend):
    frames = video.decode_segment(coded_video, 11 / FPS, 9, backend=backend)
    assert [read_frame_code(f)[1] for f in frames] == list(range(11, 20))
    last = video.decode_segment(coded_video, (N - 3) / FPS, 3, backend=backend)
    assert [read_frame_code(f)[1] for f in last] == [N - 3, N - 2, N - 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tolerance(coded_video, backend):
    between = 10.5 / FPS
    with pytest.raises(
        video.VideoDecodeError, match=r"\(episode 3, cam\): no frame within 0.0001s of t=1.050000s"
    ):
        video.decode_frames(coded_video, [between], backend=backend, context="episode 3, cam")
    frames = video.decode_frames(coded_video, [10.4 / FPS], backend=backend, tolerance_s=0.5 / FPS)
    assert read_frame_code(frames[0])[1] == 10
    with pytest.raises(video.VideoDecodeError, match="t=3.500000s"):
        video.decode_frames(coded_video, [3.5], backend=backend)  # past the end
    with pytest.raises(video.VideoDecodeError, match="holds only 2"):
        video.decode_segment(coded_video, (N - 2) / FPS, 5, backend=backend)


def test_backends_agree_and_auto_picks_torchcodec(coded_video):
    ts = np.arange(0, N, 4) / FPS
    a = video.decode_frames(coded_video, ts, backend="torchcodec")
    b = video.decode_frames(coded_video, ts, backend="pyav")
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3  # colour conversion may differ by rounding
    assert video.resolve_backend("auto") == "torchcodec"
    assert video.video_info(coded_video)["backend"] == "torchcodec"
    assert video.video_info(coded_video, backend="pyav")["fps"] == pytest.approx(FPS)


def test_unknown_backend_and_codec():
    with pytest.raises(ValueError, match="'opencv'"):
        video.resolve_backend("opencv")
    with pytest.raises(ValueError, match="h265x"):
        resolve_encoder("h265x")
    assert resolve_encoder("av1") in ("libsvtav1", "libaom-av1")


def test_decoder_cache_is_lru_and_reused(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"v{i}.mp4")
        encode_video(paths[-1], _frames(4), FPS)
    video.clear_decoder_cache()
    video.set_decoder_cache_size(2)
    try:
        for p in paths:
            video.decode_frames(p, [0.0], backend="pyav")
        assert video.cached_decoder_count() == 2
        held = dict(video._CACHE.entries)
        video.decode_frames(paths[1], [0.1], backend="pyav")
        assert all(video._CACHE.entries[k] is v for k, v in held.items())  # reused, not reopened
        keys = [k[3] for k in video._CACHE.entries]
        assert keys == [str(paths[2]), str(paths[1])]  # paths[0] evicted, paths[1] most recent
    finally:
        video.set_decoder_cache_size(video.DEFAULT_CACHE_SIZE)
        video.clear_decoder_cache()


def _child_decode(path, queue):
    before = video.cached_decoder_count()
    frames = video.decode_frames(path, [0.5], backend="pyav")
    queue.put((before, video.cached_decoder_count(), read_frame_code(frames[0])))


@pytest.mark.timeout(60)
def test_forked_worker_opens_its_own_decoder(tmp_path):
    path = tmp_path / "v.mp4"
    encode_video(path, _frames(10), FPS)
    video.clear_decoder_cache()
    video.decode_frames(path, [0.2], backend="pyav")
    assert video.cached_decoder_count() == 1
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_decode, args=(path, queue))
    proc.start()
    before, after, code = queue.get(timeout=50)
    proc.join(10)
    assert (before, after, code) == (0, 1, (7, 5))
    assert read_frame_code(video.decode_frames(path, [0.3], backend="pyav")[0]) == (7, 3)  # parent still fine
    video.clear_decoder_cache()


@pytest.fixture(scope="module")
def long_gop_video(tmp_path_factory):
    """600 frames with libx264 keyframes every 250 (its default GOP): keyframes 0, 250, 500."""
    path = tmp_path_factory.mktemp("gop") / "g250.mp4"
    frames = _frames(1, 32, 64) * 600
    assert encode_video(path, frames, FPS, codec="libx264", gop=250) == 600
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyframes_come_from_the_container_index(long_gop_video, backend):
    video.clear_decoder_cache()
    before = video.pyav_decoded_frames()
    assert video.keyframe_indices(long_gop_video, backend).tolist() == [0, 250, 500]
    assert video.keyframe_grid(long_gop_video, 0, backend) == (250, 0)
    assert video.keyframe_grid(long_gop_video, 300, backend) == (250, 200)  # an episode from frame 300
    assert video.keyframe_grid(long_gop_video, 520, backend) == (250, 230)
    assert video.pyav_decoded_frames() == before  # nothing decoded


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_single_keyframe_spans_the_whole_file(tmp_path, backend):
    path = tmp_path / "one.mp4"
    encode_video(path, _frames(40, 32, 64), FPS, codec="libx264", gop=250)
    assert video.keyframe_indices(path, backend).tolist() == [0]
    assert video.keyframe_grid(path, 10, backend) == (40, 30)
