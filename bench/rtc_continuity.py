"""Continuity under asynchronous control: a plain and an RTC-trained checkpoint side by side.

    python bench/rtc_continuity.py --plain runs/plain/checkpoint-3000 --rtc runs/rtc/checkpoint-3000 \
        --data demo_data [--latency 4]

Both checkpoints are replayed open-loop on the dataset's episodes (`gr00t.eval.open_loop`, as
`gr00t-eval` does): synchronously (queries every chunk, no prefix) and asynchronously with
``latency_steps`` (each chunk asked that many steps early, the executed prefix frozen: guidance mode
for the plain model, prefix mode for the RTC one, and guidance for the RTC one too). Printed per run:
MSE, the mean jump at chunk boundaries, the recorded actions' step there, and the policy's own step
inside its chunks (the scale of its jitter).

Then the prefix response: on every ``--stride``-th sample, the recorded chunk's first ``latency``
steps (normalised) shifted by ±0.5 are frozen; the share of the shift that reaches the first free
step (1 = continues the prefix, 0 = ignores it), averaged, with the same noise as a sample without
the prefix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr00t.data.collator import Gr00tCollator  # noqa: E402
from gr00t.data.dataset import Gr00tDataset  # noqa: E402
from gr00t.eval.open_loop import run_open_loop  # noqa: E402
from gr00t.model.rtc import RealTimeChunking  # noqa: E402
from gr00t.policy.policy import Gr00tPolicy  # noqa: E402

SHIFT = 0.5


def replay_rows(policy: Gr00tPolicy, dataset: Gr00tDataset, latency: int, modes: list[str]) -> list[str]:
    rows = []
    for j, mode in [(0, None), *((latency, m) for m in modes)]:
        report = run_open_loop(policy, dataset, latency_steps=j, rtc_mode=mode)
        jump = report.metrics["boundary_jump"]
        rows.append(
            f"| {j} | {mode or '-'} | {report.metrics['mse']:.4f} | {jump['mean']:.4f} | "
            f"{jump['ground_truth_step']:.4f} | {jump['inner_step']:.4f} | {jump['mean'] / jump['inner_step']:.2f} |"
        )
    return rows


def prefix_response(policy: Gr00tPolicy, dataset: Gr00tDataset, frozen: int, mode: str, stride: int) -> float:
    """Mean share of a ±SHIFT prefix offset carried into the first free step (normalised units)."""
    model, processor = policy.model, policy.processor
    collate = Gr00tCollator(processor.tokenizer.pad_token_id)
    g = torch.Generator().manual_seed(0)
    shares = []
    with torch.no_grad():
        for index in range(0, len(dataset), stride):
            batch = collate([processor(dataset[index])])
            ctx = model.encode(batch)
            action, mask = batch.head.action, batch.head.action_mask[:, frozen]
            noise = torch.randn(action.shape, generator=g)
            free = model.denoise(ctx, noise=noise)
            for shift in (SHIFT, -SHIFT):
                rtc = RealTimeChunking(action[:, :frozen] + shift, frozen, 0, mode)
                out = model.denoise(ctx, noise=noise, rtc=rtc)
                moved = ((out[:, frozen] - free[:, frozen]) * mask).sum() / mask.sum()
                shares.append(float(moved) / shift)
    return sum(shares) / len(shares)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plain", required=True, help="checkpoint trained with rtc_training_max_delay=0")
    parser.add_argument("--rtc", required=True, help="checkpoint trained with rtc_training_max_delay=k > 0")
    parser.add_argument("--data", required=True, help="dataset folder to replay")
    parser.add_argument("--embodiment", default="new_embodiment")
    parser.add_argument("--latency", type=int, default=4, help="latency_steps of the asynchronous replay")
    parser.add_argument("--stride", type=int, default=7, help="prefix response: every n-th sample")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = Gr00tDataset(args.data, args.embodiment)
    print(
        "| model | latency_steps | RTC mode | MSE | boundary jump | recorded step | policy step in chunk | jump / step |"
    )
    print("|---|---|---|---|---|---|---|---|")
    responses = {}
    for name, path, modes, probe in (
        ("plain", args.plain, ["guidance"], "guidance"),
        ("RTC-trained", args.rtc, ["prefix", "guidance"], "prefix"),
    ):
        policy = Gr00tPolicy.from_checkpoint(path, args.embodiment)
        for row in replay_rows(policy, dataset, args.latency, modes):
            print(f"| {name} {row}")
        responses[name] = (probe, prefix_response(policy, dataset, args.latency, probe, args.stride))
    for name, (mode, share) in responses.items():
        print(f"prefix response ({name}, {mode} mode, {args.latency} frozen steps): {share:.3f}")


if __name__ == "__main__":
    main()
