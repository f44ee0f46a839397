"""Backbone input building (SPEC-N16 §1.5): text layout, resize, normalisation, patch layouts,
batching — `gr00t/model/backbones/processing.py` and each backbone's `*_processing.py`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.model.backbones import InputBuilder, build_input_builder, input_builder_from_dict
from gr00t.model.backbones.eagle_processing import (
    EagleInputBuilder,
    EagleInputs,
    eagle_smart_resize,
    patchify_siglip2,
)
from gr00t.model.backbones.processing import normalize_instruction, normalize_pixels, resize_image
from gr00t.model.backbones.qwen3_vl_processing import patchify_qwen3_vl, smart_resize
from gr00t.model.presets import load_preset

SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def eagle(tok):
    return build_input_builder(load_preset("n16_tiny"), tok, resize_backend="pil")


@pytest.fixture(scope="module")
def qwen(tok):
    return build_input_builder(load_preset("qwen3_vl_tiny"), tok, min_pixels=4 * 32 * 32)


def _image(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_normalize_instruction():
    assert normalize_instruction("Pick up the RED apple, then stop!") == "pick up the red apple then stop"
    assert normalize_instruction("it's 2 o'clock: go.") == "its 2 oclock go"


@pytest.mark.parametrize(
    "hw, expected",
    [
        ((256, 256), (252, 252)),  # SPEC: 256×256 camera → 252×252 → 81 tokens
        ((96, 128), (84, 140)),
        ((224, 224), (224, 224)),
        ((10, 10), (56, 56)),  # below 4·28² pixels → scaled up
        ((4000, 4000), (1792, 1792)),  # above 4096·28² pixels → scaled down (64×64 blocks)
        # Eagle scales the *rounded* sides: 1512×2660 (area > max) / sqrt(1512·2660 / 3211264)
        # → 1351.1×2376.9 → floor to 28s → 1344×2352 (Qwen's rule, scaling 1500×2666, gives 2380).
        ((1500, 2666), (1344, 2352)),
        ((200, 9000), (196, 7000)),  # each side capped at 500·14 = 7000 before the area check
    ],
)
def test_smart_resize_eagle(hw, expected):
    out = eagle_smart_resize(*hw, factor=28, min_pixels=4 * 28 * 28, max_pixels=4096 * 28 * 28)
    assert out == expected


def test_smart_resize_qwen_rule():
    # Qwen2-VL / Qwen3-VL: scale the original sides: 1500×2666 / sqrt(1500·2666 / 3211264)
    # = 1344.1×2388.9 → 1344×2380.
    assert smart_resize(1500, 2666, 28, 4 * 28 * 28, 4096 * 28 * 28) == (1344, 2380)
    # Tiny side: rounds to 0, area below min → scaled up from the original size.
    assert smart_resize(10, 40, 32, 65536, 16777216) == (128, 512)


def test_smart_resize_rejects_extreme_aspect():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 500, factor=28, min_pixels=1, max_pixels=10**9)
    with pytest.raises(ValueError, match="aspect ratio"):
        eagle_smart_resize(1, 500)


def test_resize_keeps_constant_image_and_rejects_bad_dtype():
    img = np.full((96, 128, 3), 77, dtype=np.uint8)
    for backend in ("pil", "torch"):
        out = resize_image(img, (84, 140), backend)
        assert out.shape == (3, 84, 140) and torch.all(out == 77)
    with pytest.raises(ValueError, match="uint8"):
        resize_image(img.astype(np.float32), (84, 140))
    with pytest.raises(ValueError, match="backend"):
        resize_image(img, (84, 140), "cv2")


def _pil_bicubic(img: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    out = Image.fromarray(img).resize((hw[1], hw[0]), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1).float()


def test_eagle_pixels_are_pil_bicubic_resized(eagle):
    # The reference Eagle processor resizes PIL images with Image.resize's default (BICUBIC).
    img = _image(12, 96, 128)  # → 84×140: a down- and up-scale at once
    s = eagle("x", [img])
    expected = _pil_bicubic(img, (84, 140))
    expected = expected.reshape(3, 6, 14, 10, 14).permute(1, 3, 2, 4, 0).reshape(60, -1)
    torch.testing.assert_close(s.pixel_values[0], (expected - 127.5) / 127.5, rtol=0, atol=1e-6)
    bilinear = F.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None].float(), (84, 140), mode="bilinear", antialias=True
    )[0]
    assert (bilinear.round() - _pil_bicubic(img, (84, 140))).abs().max() > 10


def test_torch_backend_is_antialiased_bicubic():
    img = _image(13, 96, 128)
    out = resize_image(img, (56, 84), "torch")  # pure downscale: torch's uint8 kernel tracks PIL's
    assert (out - _pil_bicubic(img, (56, 84))).abs().max() <= 1


def _smooth_scene(h: int, w: int) -> np.ndarray:
    """A camera-like image: gradients, a sinusoid and a sharp-edged block (not white noise)."""
    ys, xs = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([255 * xs, 255 * ys, 128 + 100 * np.sin(9 * xs + 4 * ys)], -1)
    img[(np.abs(ys - 0.4) < 0.15) & (np.abs(xs - 0.6) < 0.2)] = [240, 30, 20]
    return np.clip(img, 0, 255).astype(np.uint8)


def test_eagle_resize_backend_default_and_validation(tok):
    assert build_input_builder(load_preset("n16_tiny"), tok).resize_backend == "torch"
    assert build_input_builder(load_preset("qwen3_vl_tiny"), tok).resize_backend == "torch"
    with pytest.raises(ValueError, match="resize_backend='cv2'"):
        build_input_builder(load_preset("n16_tiny"), tok, resize_backend="cv2")


def test_eagle_torch_resize_backend_is_the_default_and_close_to_pil(tok):
    fast = build_input_builder(load_preset("n16_tiny"), tok)
    exact = build_input_builder(load_preset("n16_tiny"), tok, resize_backend="pil")
    imgs = [_smooth_scene(256, 256), _smooth_scene(96, 128), _image(30, 243, 301), _smooth_scene(224, 224)]
    a, b = fast("x", imgs), exact("x", imgs)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.spatial_shapes, b.spatial_shapes)
    assert torch.equal(a.pixel_attention_mask, b.pixel_attention_mask)
    for i, img in enumerate(imgs):
        size = fast.target_size(*img.shape[:2])
        ref = patchify_siglip2(normalize_pixels(resize_image(img, size, "torch")), 14)
        assert torch.equal(a.pixel_values[i, : ref.shape[0]], ref)  # torch's antialiased bicubic, as is
    # against PIL (the reference): every value within 2 grey levels, almost all within 1
    levels = ((a.pixel_values - b.pixel_values) * 127.5).round().abs()
    assert levels.max() <= 2 and (levels > 1).float().mean() < 1e-3 and levels.mean() < 0.2
    assert torch.equal(a.pixel_values[3], b.pixel_values[3])  # 224×224 needs no resize: identical


def test_siglip2_patch_layout_is_row_col_channel():
    c, h, w, p = 3, 28, 42, 14
    chw = torch.arange(c * h * w, dtype=torch.float32).reshape(c, h, w)
    patches = patchify_siglip2(chw, p)
    assert patches.shape == (2 * 3, p * p * c)
    for pi, (gr, gc) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]):
        for r, q, ch in [(0, 0, 0), (0, 0, 2), (0, 1, 0), (3, 5, 1), (13, 13, 2)]:
            assert patches[pi, (r * p + q) * c + ch] == chw[ch, gr * p + r, gc * p + q]


def test_qwen3_vl_patch_layout():
    c, p, m, t = 3, 4, 2, 2
    h, w = 2 * m * p, 1 * m * p  # patch grid 4 x 2 → merge blocks 2 x 1
    chw = torch.randn(c, h, w)
    out = patchify_qwen3_vl(chw, p, m, t)
    assert out.shape == ((h // p) * (w // p), c * t * p * p)
    i = 0
    for bh in range(h // p // m):
        for bw in range(w // p // m):
            for mh in range(m):
                for mw in range(m):
                    gr, gc = bh * m + mh, bw * m + mw
                    patch = chw[:, gr * p : (gr + 1) * p, gc * p : (gc + 1) * p]  # [C, p, p]
                    expected = patch[:, None].expand(c, t, p, p).reshape(-1)
                    assert torch.equal(out[i], expected)
                    i += 1


def test_eagle_sample_text_and_pixels(eagle, tok):
    imgs = [_image(0, 56, 84), _image(1, 56, 84)]  # already multiples of 28 → no resampling
    s = eagle("Pick up the Apple!", imgs)
    block = "<img>" + "<IMG_CONTEXT>" * 6 + "</img>"  # (56/28)·(84/28) = 6
    expected = (
        SYSTEM + "<|im_start|>user\npick up the apple" + f"<image 1>{block}<image 2>{block}" + "<|im_end|>\n"
    )
    assert tok.decode(s.input_ids) == expected
    assert torch.equal(s.attention_mask, torch.ones_like(s.input_ids))
    assert s.spatial_shapes.tolist() == [[4, 6], [4, 6]]
    assert s.pixel_values.shape == (2, 24, 14 * 14 * 3)
    assert s.pixel_attention_mask.all()
    # pixel (row 14, col 28) of image 2 is patch (1, 2) → index 8, its first element (channels fastest)
    u8 = imgs[1][14, 28].astype(np.float32)
    torch.testing.assert_close(s.pixel_values[1, 8, :3], torch.from_numpy((u8 - 127.5) / 127.5))
    assert s.pixel_values.min() >= -1 and s.pixel_values.max() <= 1


def test_eagle_prompt_ignores_tokenizer_chat_template(eagle, tok):
    # The reference renders Eagle prompts with its processor's template, so a tokenizer whose own
    # template differs (e.g. Qwen3's, which adds no system turn) must not change the ids.
    other = build_tiny_tokenizer()
    other.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    img = _image(14, 56, 56)
    a = eagle("Pick it", [img])
    b = build_input_builder(load_preset("n16_tiny"), other)("Pick it", [img])
    assert torch.equal(a.input_ids, b.input_ids)
    assert tok.decode(a.input_ids).startswith(SYSTEM + "<|im_start|>user\npick it<image 1><img>")


def test_eagle_token_count_matches_patch_grid(eagle):
    s = eagle("x", [_image(2, 256, 256), _image(3, 96, 128)])
    n = int((s.input_ids == 1000).sum())
    grid = s.spatial_shapes
    assert n == int(((grid[:, 0] // 2) * (grid[:, 1] // 2)).sum()) == 81 + 15
    assert eagle.num_image_tokens(256, 256) == 81


def test_qwen3_vl_sample(qwen, tok):
    imgs = [_image(4, 64, 96)]
    s = qwen("Open the door.", imgs)
    assert s.image_grid_thw.tolist() == [[1, 4, 6]]
    n = (4 // 2) * (6 // 2)
    expected = (
        SYSTEM
        + "<|im_start|>user\nopen the door"
        + "<|vision_start|>"
        + "<|image_pad|>" * n
        + "<|vision_end|>"
        + "<|im_end|>\n"
    )
    assert tok.decode(s.input_ids) == expected
    assert torch.equal(s.mm_token_type_ids, (s.input_ids == 1008).long())
    assert s.pixel_values.shape == (24, 3 * 2 * 16 * 16)
    # first patch, channel 0, both temporal copies, first row = normalised pixels (0, 0..15)
    row = torch.from_numpy((imgs[0][0, :16, 0].astype(np.float32) - 127.5) / 127.5)
    torch.testing.assert_close(s.pixel_values[0, :16], row)
    torch.testing.assert_close(s.pixel_values[0, 256 : 256 + 16], row)


def test_collate_left_pads_and_concatenates_images(eagle, tok):
    a = eagle("go", [_image(5, 56, 56)])
    b = eagle("pick up the green block", [_image(6, 56, 84), _image(7, 84, 56)])
    batch = EagleInputs.collate([a, b], pad_token_id=tok.pad_token_id)
    la, lb = a.input_ids.shape[0], b.input_ids.shape[0]
    assert batch.input_ids.shape == (2, lb) and lb > la
    assert torch.equal(batch.input_ids[0, lb - la :], a.input_ids)
    assert (batch.input_ids[0, : lb - la] == tok.pad_token_id).all()
    assert batch.attention_mask[0].tolist() == [0] * (lb - la) + [1] * la
    assert batch.pixel_values.shape == (3, 24, 588)
    assert batch.pixel_attention_mask.sum(1).tolist() == [16, 24, 24]
    assert torch.equal(batch.pixel_values[0, :16], a.pixel_values[0])
    assert (batch.pixel_values[0, 16:] == 0).all()
    assert batch.spatial_shapes.tolist() == [[4, 4], [4, 6], [6, 4]]
    with pytest.raises(ValueError, match="keys"):
        EagleInputs.collate([a, EagleInputs(input_ids=a.input_ids, attention_mask=a.attention_mask)], 0)
    with pytest.raises(TypeError, match="expected EagleInputs, got dict"):
        EagleInputs.collate([a, {"input_ids": a.input_ids}], pad_token_id=0)


def test_qwen3_vl_collate(qwen, tok):
    a = qwen("go", [_image(8, 64, 64)])
    b = qwen("go left now", [_image(9, 64, 64), _image(10, 64, 96)])
    batch = qwen.collate([a, b])
    assert batch.pixel_values.shape[0] == a.pixel_values.shape[0] + b.pixel_values.shape[0]
    assert batch.image_grid_thw.tolist() == [[1, 4, 4], [1, 4, 4], [1, 4, 6]]
    assert batch.mm_token_type_ids.shape == batch.input_ids.shape
    assert torch.equal(batch.mm_token_type_ids.bool(), batch.input_ids == 1008)


def test_builder_is_picklable_and_rejects_bad_input(eagle):
    clone = pickle.loads(pickle.dumps(eagle))
    img = _image(11, 56, 56)
    a, b = eagle("wipe", [img]), clone("wipe", [img])
    ta, tb = a.tensors(), b.tensors()
    assert sorted(ta) == sorted(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)
    with pytest.raises(ValueError, match="uint8"):
        eagle("wipe", [img.astype(np.float32)])
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        eagle("wipe", [img[..., 0]])
    with pytest.raises(ValueError, match="image tokens"):
        EagleInputBuilder(eagle.tokenizer, formalize_language=False)("a <IMG_CONTEXT> b", [img])


def test_builder_checks_tokenizer_against_config(tok):
    with pytest.raises(ValueError, match="image_token_id"):
        build_input_builder(load_preset("n16"), tok)
    with pytest.raises(ValueError, match="backbone_type"):
        input_builder_from_dict(tok, {"backbone_type": "llava"})


def _reference_ids(builder: InputBuilder, text: str, counts: list[int]) -> torch.Tensor:
    """Render and tokenise the whole prompt, as the builder did before it cached token ids."""
    if builder.backbone_type == "eagle":
        pieces = [f"<image {k + 1}><img>" + "<IMG_CONTEXT>" * n + "</img>" for k, n in enumerate(counts)]
    else:
        pieces = ["<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>" for n in counts]
    rendered = builder.render_prompt(text + "".join(pieces))
    return torch.tensor(builder.tokenizer(rendered, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("layout", ["eagle", "qwen"])
def test_cached_prompt_ids_equal_uncached(layout, request):
    builder = request.getfixturevalue(layout)
    fresh = pickle.loads(pickle.dumps(builder))  # pickling drops the cache
    assert len(fresh._prompt_cache) == 0
    shapes = [[(56, 84)], [(56, 84), (84, 56)], [(96, 128), (96, 128), (56, 56)], []]
    for instruction in [
        "Pick up the RED apple, then stop!",
        "go",
        "image 2 <image 1> left",
        "Open the door.",
    ]:
        for sizes in shapes:
            imgs = [_image(i, h, w) for i, (h, w) in enumerate(sizes)]
            counts = [fresh.num_image_tokens(h, w) for h, w in sizes]
            want = _reference_ids(fresh, normalize_instruction(instruction), counts)
            first, second = fresh(instruction, imgs), fresh(instruction, imgs)  # miss, then hit
            assert torch.equal(first.input_ids, want) and torch.equal(second.input_ids, want)
            second.input_ids[0] = -1  # callers own their tensors; the cache is untouched
            assert torch.equal(fresh(instruction, imgs).input_ids, want)
    assert len(fresh._prompt_cache) == 4 * len(shapes)  # one entry per (instruction, layout)


def test_eagle_pixels_equal_reference_pipeline(eagle):
    imgs = [_image(20, 256, 256), _image(21, 96, 128), _image(22, 56, 84), _image(23, 243, 301)]
    s = eagle("x", imgs)
    p_max = s.pixel_values.shape[1]
    for i, img in enumerate(imgs):
        size = eagle.target_size(*img.shape[:2])
        ref = patchify_siglip2(normalize_pixels(resize_image(img, size, "pil")), 14)
        n = ref.shape[0]
        assert torch.equal(s.pixel_values[i, :n], ref)
        assert (s.pixel_values[i, n:] == 0).all() and n <= p_max
        assert s.pixel_attention_mask[i].tolist() == [True] * n + [False] * (p_max - n)


def test_registry_round_trips_builders_and_matches_the_config_choices(tok):
    from gr00t.model.backbones import BACKBONES, build_backbone
    from gr00t.model.config import BACKBONE_TYPES

    assert sorted(BACKBONES) == sorted(BACKBONE_TYPES)
    for preset, overrides in (
        ("n16_tiny", {"resize_backend": "pil"}),
        ("qwen3_vl_tiny", {"min_pixels": 4096}),
    ):
        config = load_preset(preset)
        builder = build_input_builder(config, tok, **overrides)
        assert builder.backbone_type == config.backbone_type
        assert isinstance(builder, BACKBONES[config.backbone_type].input_builder)
        again = input_builder_from_dict(tok, builder.to_dict())
        assert type(again) is type(builder) and again.to_dict() == builder.to_dict()
        assert build_backbone(config).inputs_class is builder.inputs_class
    assert list(builder.to_dict()) == [  # processor_config.json's "vlm" entry, as checkpoints hold it
        "backbone_type", "patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels",
        "image_token_id", "formalize_language", "resize_backend",
    ]  # fmt: skip


def test_processing_modules_import_no_modeling_code():
    import subprocess
    import sys

    code = (
        "import sys, gr00t.model.backbones, gr00t.data.processor; "
        "bad = [m for m in sys.modules if m.startswith(('transformers.models.siglip2.modeling', "
        "'transformers.models.qwen3_vl.modeling', 'gr00t.model.backbones.eagle', "
        "'gr00t.model.backbones.qwen3_vl')) and not m.endswith('_processing')]; "
        "assert not bad, bad; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
