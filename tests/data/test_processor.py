"""Gr00tProcessor: raw sample → model-ready sample for both backbones; inverse for actions; persistence."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gr00t.data.embodiment import load_embodiment
from gr00t.data.image_transforms import ImageTransformConfig
from gr00t.data.processor import Gr00tProcessor
from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.model.presets import load_preset

HORIZON = 16
SMALL_IMAGES = ImageTransformConfig(size=64)


def stats_of(x: np.ndarray) -> dict[str, list]:
    """Per-dim statistics of x [N, ..., D] over the first axis."""
    return {
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "q01": np.quantile(x, 0.01, axis=0).tolist(),
        "q99": np.quantile(x, 0.99, axis=0).tolist(),
    }


def demo_stats(seed: int = 0) -> tuple[dict, dict]:
    """Statistics of random trajectories shaped like the demo robot's (arm 6, gripper 1)."""
    rng = np.random.default_rng(seed)
    arm = rng.uniform(-1.5, 1.5, size=(500, 6))
    grip = rng.uniform(0, 1, size=(500, 1))
    stats = {
        "state": {"arm": stats_of(arm), "gripper": stats_of(grip)},
        "action": {"arm": stats_of(arm), "gripper": stats_of(grip)},
    }
    chunks = rng.uniform(-0.5, 0.5, size=(200, HORIZON, 6)) * np.linspace(0.7, 1.0, HORIZON)[None, :, None]
    return stats, {"arm": stats_of(chunks)}


def raw_sample(
    seed: int = 0, frames: int = 1, with_action: bool = True, language: str = "Pick up the RED block!"
) -> dict:
    rng = np.random.default_rng(seed)
    arm_state = rng.uniform(-1, 1, size=(1, 6)).astype(np.float32)
    sample = {
        "video": {
            "front": rng.integers(0, 256, size=(frames, 96, 128, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, size=(frames, 96, 128, 3), dtype=np.uint8),
        },
        "state": {"arm": arm_state, "gripper": rng.uniform(0, 1, size=(1, 1)).astype(np.float32)},
        "language": language,
        "embodiment": "new_embodiment",
        "episode_index": 3,
        "step": 7,
    }
    if with_action:
        sample["action"] = {
            "arm": (arm_state + rng.uniform(-0.3, 0.3, size=(HORIZON, 6))).astype(
                np.float32
            ),  # inside relative stats
            "gripper": rng.uniform(0, 1, size=(HORIZON, 1)).astype(np.float32),
        }
    return sample


def flatten_sample(sample: dict) -> dict:
    """A processed sample with its backbone inputs spelled out as ``backbone.<field>`` entries."""
    out = {k: v for k, v in sample.items() if k != "backbone"}
    out.update({f"backbone.{k}": v for k, v in sample["backbone"].tensors().items()})
    return out


def make_processor(backbone: str = "eagle", training: bool = True, **cfg) -> tuple[Gr00tProcessor, object]:
    preset = "n16_tiny" if backbone == "eagle" else "qwen3_vl_tiny"
    config = load_preset(preset, **cfg)
    stats, rel = demo_stats()
    vlm_overrides = {} if backbone == "eagle" else {"min_pixels": 32 * 32 * 4}
    proc = Gr00tProcessor.from_config(
        config,
        [("new_embodiment", stats, rel)],
        build_tiny_tokenizer(),
        SMALL_IMAGES,
        training,
        vlm_overrides=vlm_overrides,
    )
    return proc, config


@pytest.mark.parametrize("backbone", ["eagle", "qwen3_vl"])
def test_output_shapes_and_dtypes(backbone: str) -> None:
    proc, config = make_processor(backbone, apply_sincos_state_encoding=True, use_relative_action=True)
    out = proc(raw_sample(frames=2), rng=0)
    ids = out["backbone"].input_ids
    assert ids.dtype == torch.long and ids.ndim == 1 and out["backbone"].attention_mask.shape == ids.shape
    n_images = 2 * 2  # 2 time steps × 2 views
    image_tokens = int((ids == proc.vlm.image_token_id).sum())
    # images after the transform: shortest edge 64 → 64×85 → backbone resize to its factor
    if backbone == "eagle":
        assert (
            out["backbone"].pixel_values.shape[0] == n_images
            and out["backbone"].pixel_values.shape[2] == 3 * 14 * 14
        )
        assert out["backbone"].spatial_shapes.tolist() == [[4, 6]] * n_images  # 56×84 / 14
        assert image_tokens == n_images * (2 * 3)
        assert out["backbone"].pixel_attention_mask.all()
    else:
        grids = out["backbone"].image_grid_thw
        assert grids.shape == (n_images, 3) and (grids[:, 0] == 1).all()
        assert out["backbone"].pixel_values.shape == (int(grids.prod(-1).sum()), 3 * 2 * 16 * 16)
        assert image_tokens == int(grids.prod(-1).sum()) // 4
        assert torch.equal(out["backbone"].mm_token_type_ids, (ids == proc.vlm.image_token_id).long())
    assert out["state"].dtype == torch.float32 and out["state"].shape == (1, config.max_state_dim)
    # arm sin/cos (12) + gripper min-max (1) are real, the rest is zero padding
    assert torch.all(out["state"][:, 13:] == 0) and torch.any(out["state"][:, :13] != 0)
    assert out["action"].shape == (HORIZON, config.max_action_dim) and out["action"].dtype == torch.float32
    assert out["action_mask"].sum() == HORIZON * 7 and torch.all(out["action"][:, 7:] == 0)
    assert out["embodiment_id"] == 10


def test_instruction_formalised_and_time_major_images() -> None:
    proc, _ = make_processor(training=False)
    out = proc(raw_sample(language="Pick up the RED block!"))
    text = proc.tokenizer.decode(out["backbone"].input_ids)
    assert "pick up the red block" in text and "RED" not in text and "!" not in text
    assert text.index("pick up") < text.index("<img>")
    # time-major then view: with T=2, image 2 (t1, front) must equal the t1 front frame
    s = raw_sample(frames=2)
    s["video"]["front"][1] = s["video"]["wrist"][0]
    out = proc(s)
    pv = out["backbone"].pixel_values  # order: t0 front, t0 wrist, t1 front, t1 wrist
    assert torch.equal(pv[2], pv[1]) and not torch.equal(pv[0], pv[1])


def test_one_random_draw_for_all_frames_and_views() -> None:
    proc, _ = make_processor(training=True)
    s = raw_sample(frames=2)
    same = s["video"]["front"][0]
    s["video"]["front"][1] = same
    s["video"]["wrist"][:] = same
    pv = proc(s, rng=5)["backbone"].pixel_values
    assert all(torch.equal(pv[0], pv[i]) for i in range(1, 4))
    # the draw differs between samples (seeds) in train mode, and not at all in eval mode
    assert not torch.equal(proc(s, rng=6)["backbone"].pixel_values[0], pv[0])
    proc.eval()
    assert torch.equal(proc(s, rng=5)["backbone"].pixel_values, proc(s, rng=6)["backbone"].pixel_values)


def test_decode_action_inverts_encode() -> None:
    proc, _ = make_processor(use_relative_action=True, apply_sincos_state_encoding=True)
    s = raw_sample()
    out = proc(s)
    decoded = proc.decode_action(out["action"][None], {k: v[None] for k, v in s["state"].items()})
    for key in ("arm", "gripper"):
        assert decoded[key].shape == (1, HORIZON, s["action"][key].shape[-1])
        np.testing.assert_allclose(decoded[key][0], s["action"][key], atol=1e-5)


def test_inference_sample_has_no_action() -> None:
    proc, _ = make_processor(training=False)
    out = proc(raw_sample(with_action=False))
    assert "action" not in out and "action_mask" not in out and out["state"].shape[-1] == 32


def test_save_load_and_pickle_roundtrip(tmp_path) -> None:
    proc, _ = make_processor(training=False, use_relative_action=True)
    proc.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["processor_config.json", "tokenizer"]
    loaded = Gr00tProcessor.from_pretrained(tmp_path / "ckpt")
    clone = pickle.loads(pickle.dumps(proc))
    s = raw_sample(seed=4)
    ref = flatten_sample(proc(s))
    for other in (loaded, clone):
        got = flatten_sample(other(s))
        assert sorted(got) == sorted(ref)
        for k, v in ref.items():
            assert torch.equal(torch.as_tensor(got[k]), torch.as_tensor(v)), k
    assert loaded.to_dict() == proc.to_dict() and not loaded.training
    assert loaded.embodiment_id_map() == {"new_embodiment": 10}


def test_resize_backend_is_saved_and_configs_without_it_get_the_default(tmp_path) -> None:
    import json

    proc, _ = make_processor(training=False)
    assert proc.vlm.resize_backend == "torch"
    proc.vlm.resize_backend = "pil"
    proc.save_pretrained(tmp_path / "new")
    assert Gr00tProcessor.from_pretrained(tmp_path / "new").vlm.resize_backend == "pil"
    path = tmp_path / "new" / "processor_config.json"
    data = json.loads(path.read_text())
    del data["vlm"]["resize_backend"]  # written before the field existed
    path.write_text(json.dumps(data))
    assert Gr00tProcessor.from_pretrained(tmp_path / "new").vlm.resize_backend == "torch"


def test_errors_name_the_problem(tmp_path) -> None:
    proc, _ = make_processor()
    s = raw_sample()
    s["embodiment"] = "gr1"
    with pytest.raises(KeyError, match="'gr1' is unknown"):
        proc(s)
    s = raw_sample()
    del s["video"]["wrist"]
    with pytest.raises(KeyError, match=r"\['wrist'\]"):
        proc(s)
    with pytest.raises(FileNotFoundError, match="processor_config.json"):
        Gr00tProcessor.from_pretrained(tmp_path)
    stats, rel = demo_stats()
    with pytest.raises(ValueError, match="max_state_dim"):
        Gr00tProcessor.from_config(
            load_preset("n16_tiny", max_state_dim=4),
            [(load_embodiment("new_embodiment"), stats, rel)],
            build_tiny_tokenizer(),
        )
