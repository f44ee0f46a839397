"""Policy latency: one `get_action` split into data / encode / denoise / total (milliseconds).

    python bench/inference.py                 # CPU: n16_tiny; CUDA: n16_release
    python bench/inference.py --modes eager,compile,cuda_graphs --iters 30

Setup (SPEC-N16 §4's published figures use the same): one 256×256 camera, batch 1, 4 denoising
steps. On CUDA the full-size `n16_release` network (bf16, random weights: no download is possible,
and latency does not depend on weight values) with horizon 50; on CPU the `n16_tiny` network.
The tiny offline tokenizer stands in for Qwen's, so the release run uses token ids < 1024 (the
sequence is one camera's 81 image tokens plus a short instruction, as in the reference).

Stages, each a public call: `data` = `parse_observation` + `Gr00tPolicy.prepare` (processor: image
transforms, tokenisation, state normalisation; collation; host→device copy); `encode` =
`Gr00tN16Model.encode` (vision tower + LLM, then the head's context: vlln, cross-attention keys/values,
state tokens); `denoise` = `Gr00tN16Model.denoise` (the Euler loop of the DiT); `total` = the three
plus decoding. Modes: `eager`; `compile` (`model.compile_inference()`: torch.compile of the backbone
and the DiT, default inductor mode); `cuda_graphs` (mode="reduce-overhead", i.e. CUDA graphs;
skipped on CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr00t.data.embodiment import EmbodimentConfig  # noqa: E402
from gr00t.data.image_transforms import ImageTransformConfig  # noqa: E402
from gr00t.data.processor import Gr00tProcessor  # noqa: E402
from gr00t.data.tokenizer import build_tiny_tokenizer  # noqa: E402
from gr00t.model.gr00t_n16 import Gr00tN16Model  # noqa: E402
from gr00t.model.presets import load_preset  # noqa: E402
from gr00t.policy.observation import parse_observation  # noqa: E402
from gr00t.policy.policy import Gr00tPolicy  # noqa: E402

CAMERA = (256, 256)


def one_camera_embodiment(horizon: int) -> EmbodimentConfig:
    """A one-camera robot: 6-joint arm (relative actions) + gripper."""
    return EmbodimentConfig.from_dict(
        {
            "tag": "new_embodiment",
            "projector_index": 10,
            "video": {"keys": ["front"], "delta_indices": [0]},
            "state": {"keys": ["arm", "gripper"], "delta_indices": [0]},
            "action": {
                "horizon": horizon,
                "groups": [
                    {"key": "arm", "rep": "relative", "type": "joint", "state_key": "arm"},
                    {"key": "gripper", "rep": "absolute", "type": "joint"},
                ],
            },
            "language": {"keys": ["annotation.human.task_description"], "delta_indices": [0]},
        },
        source="bench/inference.py",
    )


def _stats(dim: int, lead: tuple[int, ...] = ()) -> dict[str, list]:
    shape = lead + (dim,)
    lo, hi = -np.ones(shape), np.ones(shape)
    return {
        "mean": np.zeros(shape).tolist(),
        "std": hi.tolist(),
        "min": lo.tolist(),
        "max": hi.tolist(),
        "q01": lo.tolist(),
        "q99": hi.tolist(),
    }


def build_policy(preset: str, device: torch.device) -> Gr00tPolicy:
    overrides = {}
    if preset != "n16_tiny":  # the tiny tokenizer's image token ids (see module docstring)
        overrides = {"image_token_id": 1000, "img_start_token_id": 1001, "img_end_token_id": 1002}
    config = load_preset(preset, **overrides)
    with torch.device(device):
        model = Gr00tN16Model(config)
    if device.type != "cuda":  # CUDA: the precision policy (bf16 frozen, fp32 trainable) as built
        model.float()
    emb = one_camera_embodiment(config.action_horizon)
    stats = {
        "state": {"arm": _stats(6), "gripper": _stats(1)},
        "action": {"arm": _stats(6), "gripper": _stats(1)},
    }
    processor = Gr00tProcessor.from_config(
        config,
        [(emb, stats, {"arm": _stats(6, (config.action_horizon,))})],
        build_tiny_tokenizer(),
        ImageTransformConfig(size=256),
        training=False,
    )
    return Gr00tPolicy(model, processor, "new_embodiment", device=device, seed=0)


def observation(rng: np.random.Generator) -> dict:
    return {
        "video": {"front": rng.integers(0, 256, size=(1, 1, *CAMERA, 3), dtype=np.uint8)},
        "state": {
            "arm": rng.uniform(-0.5, 0.5, (1, 1, 6)).astype(np.float32),
            "gripper": rng.uniform(0, 1, (1, 1, 1)).astype(np.float32),
        },
        "language": {
            "annotation.human.task_description": [["pick up the red block and place it in the bowl"]]
        },
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_call(policy: Gr00tPolicy, obs: dict, steps: int) -> dict[str, float]:
    dev, model = policy.device, policy.model
    t0 = time.perf_counter()
    parsed = parse_observation(obs, policy.embodiment, policy.state_action.state_dims)
    batch = policy.prepare(parsed)
    _sync(dev)
    t1 = time.perf_counter()
    context = model.encode(batch)
    _sync(dev)
    t2 = time.perf_counter()
    gen = torch.Generator(device=dev).manual_seed(0)
    normalized = model.denoise(context, num_steps=steps, generator=gen)
    _sync(dev)
    t3 = time.perf_counter()
    policy.decode(normalized, parsed)
    t4 = time.perf_counter()
    return {"data": t1 - t0, "encode": t2 - t1, "denoise": t3 - t2, "total": t4 - t0}


def run_mode(policy: Gr00tPolicy, mode: str, iters: int, warmup: int, steps: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    obs = observation(rng)
    if mode == "compile":
        policy.model.compile_inference()
    elif mode == "cuda_graphs":
        policy.model.compile_inference(mode="reduce-overhead")
    compile_s = time.perf_counter()
    for _ in range(warmup):
        time_call(policy, obs, steps)
    compile_s = time.perf_counter() - compile_s
    runs = [time_call(policy, obs, steps) for _ in range(iters)]
    policy.model.eager_inference()
    out = {k: 1000 * statistics.median(r[k] for r in runs) for k in runs[0]}
    out["p90_total"] = 1000 * sorted(r["total"] for r in runs)[int(0.9 * (len(runs) - 1))]
    out["warmup_s"] = compile_s
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--preset", default=None, help="model preset (default: n16_release on CUDA, n16_tiny on CPU)"
    )
    parser.add_argument("--modes", default="eager,compile,cuda_graphs")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="denoising steps")
    args = parser.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    preset = args.preset or ("n16_release" if device.type == "cuda" else "n16_tiny")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    policy = build_policy(preset, device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"# inference latency: {preset} on {name}, one {CAMERA[0]}x{CAMERA[1]} camera, batch 1, "
        f"{args.steps} denoising steps, horizon {policy.model.config.action_horizon}, torch {torch.__version__}"
    )
    print(f"{'mode':<12} {'data':>8} {'encode':>9} {'denoise':>8} {'total':>8} {'p90':>8} {'Hz':>7}  warmup")
    for mode in args.modes.split(","):
        if mode not in ("eager", "compile", "cuda_graphs"):
            raise SystemExit(f"unknown mode {mode!r}")
        if mode == "cuda_graphs" and device.type != "cuda":
            print(f"{mode:<12} skipped: CUDA graphs need a CUDA device")
            continue
        try:
            r = run_mode(policy, mode, args.iters, args.warmup, args.steps)
        except Exception as exc:  # a compiler failure must not hide the other modes' figures
            policy.model.eager_inference()
            print(f"{mode:<12} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            continue
        print(
            f"{mode:<12} {r['data']:8.2f} {r['encode']:9.2f} {r['denoise']:8.2f} {r['total']:8.2f} "
            f"{r['p90_total']:8.2f} {1000 / r['total']:7.1f}  {r['warmup_s']:.1f}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
