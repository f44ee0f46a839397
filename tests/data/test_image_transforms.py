"""SPEC §2.4 image transforms (gr00t/data/image_transforms.py)."""

import numpy as np
import pytest
import torch

from gr00t.data.image_transforms import (
    AugmentDraw,
    ImageTransform,
    ImageTransformConfig,
    _area_uint8,
    _shift_hue,
    resize,
    shortest_edge_size,
)


def scene(h, w, t=3, seed=0):
    """Smooth, structured frames [t, h, w, 3] that change over time."""
    ys, xs = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(t):
        img = np.stack([255 * xs, 255 * ys, 128 + 100 * np.sin(8 * xs + 5 * ys + k)], -1)
        cy, cx = rng.uniform(0.2, 0.8, 2)
        img[(np.abs(ys - cy) < 0.1) & (np.abs(xs - cx) < 0.1)] = [250, 20, 20]
        frames.append(img)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def test_output_shape_keeps_aspect_ratio():
    tf = ImageTransform(train=False)
    out = tf({"front": scene(96, 128), "wrist": scene(128, 96)})
    assert out["front"].dtype == np.uint8
    assert out["front"].shape == (3, 256, 341, 3)  # shortest edge 256, 4:3 kept (no square padding)
    assert out["wrist"].shape == (3, 341, 256, 3)
    assert shortest_edge_size(480, 640, 256) == (256, 341)


def test_identity_when_nothing_to_do():
    frames = scene(40, 60)
    tf = ImageTransform(ImageTransformConfig(size=40, crop_fraction=1.0), train=True)
    out = tf({"v": frames}, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(out["v"], frames)


def test_area_resize_is_block_mean():
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 8, 12))
    got = resize(torch.tensor(x), 4, 6).numpy()
    expected = x.reshape(2, 3, 4, 2, 6, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_eval_is_deterministic_and_centred():
    frames = scene(96, 128)
    tf = ImageTransform(ImageTransformConfig(rotation_degrees=10, brightness=0.5, hue=0.1), train=False)
    a = tf({"v": frames}, rng=1)["v"]
    b = tf({"v": frames}, rng=2)["v"]
    np.testing.assert_array_equal(a, b)
    # centre crop == a train draw at the middle of the free range with no augmentation
    c = ImageTransform(train=True).apply(frames, AugmentDraw(crop_y=0.5, crop_x=0.5))
    np.testing.assert_array_equal(a, c)
    corner = ImageTransform(train=True).apply(frames, AugmentDraw(crop_y=0.0, crop_x=0.0))
    assert np.abs(corner.astype(int) - a.astype(int)).mean() > 1.0


def test_train_same_draw_for_all_frames_and_views():
    cfg = ImageTransformConfig(rotation_degrees=15, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
    tf = ImageTransform(cfg, train=True)
    one = scene(96, 128, t=1)
    frames = np.repeat(one, 4, axis=0)  # identical frames
    out = tf({"a": frames, "b": frames.copy()}, rng=np.random.default_rng(7))
    for k in range(4):
        np.testing.assert_array_equal(out["a"][k], out["a"][0])
    np.testing.assert_array_equal(out["a"], out["b"])
    # a view of the same scene at twice the resolution gets the same relative crop and jitter
    big = np.repeat(np.repeat(one, 2, axis=1), 2, axis=2)
    out2 = tf({"small": one, "big": big}, rng=np.random.default_rng(7))
    same = np.abs(out2["small"].astype(int) - out2["big"].astype(int)).mean()
    other = tf({"small": one}, rng=np.random.default_rng(8))["small"]
    different = np.abs(out2["small"].astype(int) - other.astype(int)).mean()
    assert same < 3.0 < different


def test_train_draws_depend_on_seed():
    frames = scene(96, 128)
    tf = ImageTransform(ImageTransformConfig(brightness=0.4, rotation_degrees=5), train=True)
    a = tf({"v": frames}, rng=np.random.default_rng(3))["v"]
    b = tf({"v": frames}, rng=np.random.default_rng(3))["v"]
    c = tf({"v": frames}, rng=np.random.default_rng(4))["v"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d1, d2 = tf.draw(0), tf.draw(1)
    assert 0.6 <= d1.brightness <= 1.4 and -5 <= d1.angle <= 5 and d1 != d2


def test_rotation_by_90_matches_rot90():
    frames = scene(32, 32, t=1)
    tf = ImageTransform(ImageTransformConfig(size=32, crop_fraction=1.0), train=True)
    out = tf.apply(frames, AugmentDraw(angle=90.0))
    np.testing.assert_array_equal(out, np.rot90(frames, k=1, axes=(1, 2)))  # counter-clockwise


def test_brightness_and_hue():
    frames = scene(64, 64, t=1)
    tf = ImageTransform(ImageTransformConfig(size=64, crop_fraction=1.0), train=True)
    bright = tf.apply(frames, AugmentDraw(brightness=1.3)).astype(int)
    expected = np.clip(np.round(frames * 1.3), 0, 255)
    assert np.abs(bright - expected).max() <= 1
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0.5]]).T.reshape(1, 3, 1, 3)
    shifted = _shift_hue(rgb, 1 / 3).reshape(3, 3).T
    np.testing.assert_allclose(shifted.numpy(), [[0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], atol=1e-6)


def test_bad_input():
    tf = ImageTransform(train=False)
    with pytest.raises(ValueError, match="view 'front'.*uint8"):
        tf({"front": np.zeros((2, 8, 8, 3), dtype=np.float32)})
    with pytest.raises(ValueError, match="crop_fraction"):
        ImageTransformConfig(crop_fraction=1.5)


@pytest.mark.parametrize(
    "hw, size, bound",
    [((256, 256), 256, 1), ((240, 320), 128, 1), ((64, 64), 64, 1), ((96, 128), 256, 2), ((100, 90), 96, 2)],
)
def test_uint8_path_is_within_tolerance_of_float_path(hw, size, bound):
    # bound 1: one rounded resampling (crop + enlarge, or a shrinking first resize); 2: two enlargements
    frames = scene(*hw, t=2, seed=5)
    tf = ImageTransform(ImageTransformConfig(size=size), train=True)
    for d in (AugmentDraw(), AugmentDraw(crop_y=0.0, crop_x=1.0), tf.draw(3)):
        fast, exact = tf.apply(frames, d), tf.apply(frames, d, exact=True)
        assert fast.shape == exact.shape and fast.dtype == np.uint8
        diff = np.abs(fast.astype(int) - exact.astype(int))
        assert diff.max() <= bound and (diff > 1).mean() < 1e-3 and diff.mean() < 0.3
    # rotation or colour jitter: always the float path
    jitter = ImageTransform(ImageTransformConfig(size=size, rotation_degrees=5, brightness=0.2), train=True)
    d = jitter.draw(1)
    np.testing.assert_array_equal(jitter.apply(frames, d), jitter.apply(frames, d, exact=True))


@pytest.mark.parametrize(
    "hw, out",
    [
        ((480, 640), (256, 341)),  # a common robot camera to the short side 256
        ((720, 1280), (256, 455)),
        ((257, 256), (256, 255)),  # bins of 1 and 2
        ((2000, 90), (100, 90)),  # 21-row bins: sums beyond 16 bits
        ((999, 1001), (7, 3)),
        ((64, 64), (64, 32)),
    ],
)
def test_area_shrink_on_uint8_equals_the_float_resize_rounded(hw, out):
    rng = np.random.default_rng(sum(hw))
    noise = rng.integers(0, 256, size=(2, *hw, 3), dtype=np.uint8)
    # a gradient: many bin means land exactly on .5, where the rounding must agree too
    ramp = (
        (np.arange(hw[0])[:, None, None] + 3 * np.arange(hw[1])[None, :, None] + np.arange(3)) % 256
    ).astype(np.uint8)[None]
    for frames in (noise, ramp):
        reference = resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), *out)
        reference = reference.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(_area_uint8(frames, *out), reference)
