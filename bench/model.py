"""Model benchmarks: n16_tiny train step on CPU, parameter counts, full-size head latency on GPU.

Usage: python bench/model.py [--iters N] [--gpu-iters N]
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gr00t.model.action_head import FlowMatchingActionHead
from gr00t.model.backbones.eagle_processing import EagleInputs
from gr00t.model.batch import Gr00tBatch, HeadInputs
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.model.presets import load_preset


def tiny_batch(cfg, batch_size: int = 2, patches: tuple[int, int] = (4, 4)) -> Gr00tBatch:
    """A model batch for the n16_tiny Eagle layout: one image per sample, text around it."""
    rows, cols = patches
    n_tokens = (rows // cfg.downsample_factor) * (cols // cfg.downsample_factor)
    seq = [5, 6, 7, cfg.img_start_token_id] + [cfg.image_token_id] * n_tokens + [cfg.img_end_token_id, 8]
    patch_dim = 3 * cfg.vision_config["patch_size"] ** 2
    backbone = EagleInputs(
        input_ids=torch.tensor([seq] * batch_size),
        attention_mask=torch.ones(batch_size, len(seq), dtype=torch.long),
        pixel_values=torch.rand(batch_size, rows * cols, patch_dim) * 2 - 1,
        pixel_attention_mask=torch.ones(batch_size, rows * cols, dtype=torch.bool),
        spatial_shapes=torch.tensor([[rows, cols]] * batch_size),
    )
    head = HeadInputs(
        state=torch.randn(batch_size, cfg.state_horizon, cfg.max_state_dim),
        embodiment_id=torch.full((batch_size,), 10, dtype=torch.long),
        action=torch.rand(batch_size, cfg.action_horizon, cfg.max_action_dim) * 2 - 1,
        action_mask=torch.ones(batch_size, cfg.action_horizon, cfg.max_action_dim),
    )
    return Gr00tBatch(backbone, head)


def bench_tiny_train_step(iters: int) -> None:
    torch.manual_seed(0)
    cfg = load_preset("n16_tiny")
    model = Gr00tN16Model(cfg).train()
    batch = tiny_batch(cfg)
    times = []
    for i in range(iters + 1):
        start = time.perf_counter()
        model(batch).loss.backward()
        model.zero_grad(set_to_none=True)
        if i:  # first iteration is warm-up
            times.append(time.perf_counter() - start)
    print(
        f"n16_tiny forward+backward, CPU, batch 2, {torch.get_num_threads()} threads: "
        f"median {1000 * statistics.median(times):.1f} ms over {iters} iterations"
    )


def print_param_counts() -> None:
    for name in ("n16", "n16_release"):
        with torch.device("meta"):
            model = Gr00tN16Model(load_preset(name))
        parts = model.num_parameters_by_part()
        trainable = model.num_parameters_by_part(trainable_only=True)
        print(
            f"{name}: total {parts['total']:,} | backbone {parts['backbone']:,} | action head "
            f"{parts['action_head']:,} (DiT {parts['dit']:,}) | trainable at preset flags {trainable['total']:,}"
        )


def bench_gpu_head(iters: int) -> None:
    if not torch.cuda.is_available():
        print("full-size action head get_action latency: skipped (no CUDA device)")
        return
    device = torch.device("cuda")
    cfg = load_preset("n16_release")
    torch.manual_seed(0)
    head = FlowMatchingActionHead(cfg).to(device=device, dtype=torch.bfloat16).eval()
    seq, n_image = 200, 81  # one 256x256 camera (81 tokens) plus instruction/template tokens
    b = 1
    features = torch.randn(b, seq, cfg.backbone_embedding_dim, device=device, dtype=torch.bfloat16)
    attn = torch.ones(b, seq, dtype=torch.bool, device=device)
    image = torch.zeros(b, seq, dtype=torch.bool, device=device)
    image[:, 20 : 20 + n_image] = True
    state = torch.randn(b, 1, cfg.max_state_dim, device=device)
    ids = torch.full((b,), 10, dtype=torch.long, device=device)

    def run() -> torch.Tensor:
        return head.get_action(features, attn, image, state, ids)

    for _ in range(3):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    print(
        f"n16_release action head get_action ({cfg.num_inference_timesteps} steps, bf16, eager, batch 1, "
        f"{seq} backbone tokens) on {torch.cuda.get_device_name()}: median "
        f"{1000 * statistics.median(times):.2f} ms over {iters} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="CPU train-step iterations (after 1 warm-up)")
    parser.add_argument("--gpu-iters", type=int, default=20, help="GPU get_action runs (after 3 warm-ups)")
    args = parser.parse_args()
    bench_tiny_train_step(args.iters)
    print_param_counts()
    bench_gpu_head(args.gpu_iters)


if __name__ == "__main__":
    main()
