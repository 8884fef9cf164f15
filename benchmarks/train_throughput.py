"""Training throughput (image-text pairs/s) and model FLOPs utilisation: rclip-hf's step vs a plain open_clip step.

All sides start from the same open_clip weights (random init, converted with `rclip_hf.convert.build_model`) and
train on the same batch of images (uint8, normalised on the device as the trainer does) and captions, at the same
precision, with AdamW, gradient clipping and the temperature clamp; data loading is excluded. Each row compares
one implementation with a baseline, timed interleaved (A B, B A, ...) in one process after warm-up steps of each;
only those two models (and the untouched reference weights) are alive at a time, so ViT-L/14 fits where five
copies would not. The rows:

- rclip-hf with captions padded to the longest in the batch (what training does) vs open_clip's step as its
  main.py builds it (77 tokens, the default multi-tensor AdamW);
- rclip-hf padded to open_clip's 77 tokens (the same work) vs that open_clip step, and vs open_clip with the fused
  AdamW kernel rclip-hf uses (the same work and the same optimizer kernel);
- rclip-hf with the batch in `--accumulation` micro-batches (cached features, one contrastive batch: the cost of
  exact large batches, open_clip's `--accum-freq`) vs rclip-hf on the whole batch at once.

Every implementation's first step (same weights, same batch) is compared with open_clip's: the script fails when a
loss differs by more than `--loss-tolerance`. The table gives medians and the median per-repeat speed ratio. FLOPs
per step come from `torch.utils.flop_counter.FlopCounterMode` (forward + backward); MFU = achieved FLOP/s / peak
FLOP/s, the peak being the datasheet dense bf16/fp32 figure on known GPUs, else a large matmul timed interleaved
with each row's steps (so a shared machine's load affects both alike). `--profile N` prints the N most expensive operators of one step of each implementation (torch.profiler).

    python benchmarks/train_throughput.py --arch ViT-B-32 --batch-size 8 --steps 7            # CPU
    python benchmarks/train_throughput.py --arch ViT-L-14 --batch-size 128 --precision bfloat16 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import resource
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from accelerate import Accelerator
from interleaved import interleaved_seconds, median_ratio
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
import rclip_hf
from rclip_hf.arguments import ArgumentParser
from rclip_hf.convert import build_model
from rclip_hf.loss import MAX_LOGIT_SCALE, ClipLoss
from rclip_hf.precision import ALIASES, accelerate_mixed_precision, torch_dtype
from rclip_hf.processing_remoteclip import CONTEXT_LENGTH
from training_scripts.training.data import PixelNormalizer
from training_scripts.training.loop import clamp_logit_scale, training_step
from training_scripts.training.model import ContrastiveModule
from training_scripts.training.optim import adamw, parameter_groups

#: Dense peak TFLOP/s (no sparsity) by GPU name fragment: (bf16, fp32).
GPU_PEAK_TFLOPS = {"H100": (989.0, 67.0), "H200": (989.0, 67.0), "A100": (312.0, 19.5)}
CAPTIONS = ("There are 3 planes in the middle of the picture.", "Many small vehicles at the edge of the picture.",
            "A storage tank next to a harbor.", "Lots of buildings are located in this remote sensing picture.")
BASELINE = "open_clip (77 tokens)"
FUSED_BASELINE = f"{BASELINE}, fused AdamW"
OURS = "rclip-hf (pad longest)"
OURS_77 = "rclip-hf (pad 77)"
PEAK = "peak matmul"


def datasheet_peak_tflops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The datasheet dense peak of a known GPU, else None."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, (bf16, fp32) in GPU_PEAK_TFLOPS.items():
            if fragment in name:
                return bf16 if dtype == torch.bfloat16 else fp32
    return None


def matmul(device: torch.device, dtype: torch.dtype) -> tuple[Callable[[], torch.Tensor], int]:
    """A 2048^3 (CPU) / 8192^3 (GPU) matmul and its FLOPs: the measured peak of a device without a datasheet one."""
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return lambda: a @ b, 2 * size**3


def _flops(step: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def ours(reference: torch.nn.Module, arch: str, pixels: torch.Tensor, captions: list[str], precision: str,
         device: torch.device, pad_to_context: bool, accumulation: int = 1) -> Callable[[], torch.Tensor]:
    """rclip-hf's training step (RemoteCLIPModel + ContrastiveModule + ClipLoss + accelerate) with `reference`'s
    weights on uint8 `pixels`, the batch in `accumulation` micro-batches; returns the step, which returns the
    detached loss."""
    accelerator = Accelerator(mixed_precision=accelerate_mixed_precision(precision), cpu=device.type == "cpu")
    model = build_model(reference.state_dict(), arch).train()
    padding = {"padding": "max_length", "max_length": CONTEXT_LENGTH} if pad_to_context else {"padding": "longest"}
    tokens = rclip_hf.build_tokenizer()(captions, return_tensors="pt", **padding)
    module = ContrastiveModule(model)
    optimizer = adamw(parameter_groups(module, 0.2), lr=1e-5)  # the trainer's (fused) AdamW
    module, optimizer = accelerator.prepare(module, optimizer)
    batch = {"pixel_values": pixels.to(accelerator.device), "input_ids": tokens["input_ids"].to(accelerator.device),
             "attention_mask": tokens["attention_mask"].to(accelerator.device)}
    micro_batches = [{key: value.chunk(accumulation)[index] for key, value in batch.items()}
                     for index in range(accumulation)]
    normalize = PixelNormalizer(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    loss_fn = ClipLoss()

    def step() -> torch.Tensor:
        loss = training_step(module, micro_batches, loss_fn, accelerator, normalize)
        accelerator.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        clamp_logit_scale(module, accelerator)
        return loss

    return step


def plain_open_clip(reference: torch.nn.Module, pixels: torch.Tensor, captions: list[str], precision: str,
                    device: torch.device, fused: bool) -> Callable[[], torch.Tensor]:
    """open_clip's own training step (as in its `train_one_epoch`): autocast, ClipLoss, AdamW (its main.py's default
    kernel, or the fused one), clip, clamp; on a copy of `reference`, with pixels normalised as its worker does."""
    model = copy.deepcopy(reference).to(device).train()
    text = open_clip.tokenize(captions).to(device)  # always 77 tokens
    images = PixelNormalizer(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)(pixels).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.2), lr=1e-5, fused=fused or None)
    loss_fn = open_clip.loss.ClipLoss()

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            image_features, text_features, logit_scale = model(images, text)
            loss = loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return loss.detach()

    return step


def print_profile(name: str, step: Callable[[], object], rows: int) -> None:
    """The `rows` operators with the largest self CPU time in one step."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step()
    print(f"\n### profile: {name}\n")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def free(device: torch.device) -> None:
    """Returns the memory of dropped models and optimisers before the next row is built (glibc keeps freed heap
    memory of the process otherwise, and the peak grows with fragments of earlier rows)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl)
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory(device: torch.device) -> str:
    """Peak resident memory of this process (and peak CUDA memory on a GPU)."""
    text = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    if device.type == "cuda":
        text += f", peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B-32", choices=["RN50", "ViT-B-32", "ViT-L-14"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per implementation and row, interleaved")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation and row first")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                        type=lambda value: ALIASES.get(value, value), help="training precision (AMP); fp32, bf16 also work")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest operators")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--accumulation", type=int, default=4, help="micro-batches of the accumulation row")
    parser.add_argument("--loss-tolerance", "--loss_tolerance", type=float, default=None,
                        help="largest first-step loss difference allowed (default 1e-4 float32, 2e-2 bfloat16)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    image_size = rclip_hf.RemoteCLIPConfig.from_preset(args.arch).image_size
    pixels = torch.randint(0, 256, (args.batch_size, 3, image_size, image_size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    captions = [CAPTIONS[index % len(CAPTIONS)] for index in range(args.batch_size)]
    dtype = torch_dtype(args.precision)
    datasheet_peak = datasheet_peak_tflops(device, dtype)
    peak_call, peak_flops = matmul(device, dtype) if datasheet_peak is None else (None, 0)

    torch.manual_seed(0)
    reference = open_clip.create_model(f"{args.arch}-quickgelu", pretrained=None)  # never trained: every side copies
    accumulated = f"rclip-hf (pad longest, {args.accumulation} micro-batches)"
    builders: dict[str, Callable[[], Callable[[], torch.Tensor]]] = {
        BASELINE: lambda: plain_open_clip(reference, pixels, captions, args.precision, device, fused=False),
        FUSED_BASELINE: lambda: plain_open_clip(reference, pixels, captions, args.precision, device, fused=True),
        OURS: lambda: ours(reference, args.arch, pixels, captions, args.precision, device, pad_to_context=False),
        OURS_77: lambda: ours(reference, args.arch, pixels, captions, args.precision, device, pad_to_context=True),
        accumulated: lambda: ours(reference, args.arch, pixels, captions, args.precision, device, False,
                                  args.accumulation),
    }
    rows = [(OURS, BASELINE), (OURS_77, BASELINE), (OURS_77, FUSED_BASELINE), (accumulated, OURS)]
    first_losses: dict[str, float] = {}
    flops: dict[str, int] = {}
    seconds: dict[tuple[str, str], dict[str, list[float]]] = {}
    peaks: dict[tuple[str, str], float] = {}  # TFLOP/s
    for index, row in enumerate(rows, 1):
        print(f"row {index}/{len(rows)}: {row[0]} vs {row[1]}", file=sys.stderr, flush=True)
        steps = {name: builders[name]() for name in (row[1], row[0])}  # only this row's two models are alive
        for name, step in steps.items():
            loss = float(step())  # the first step, from the reference weights
            first_losses.setdefault(name, loss)
            if name not in flops:
                flops[name] = _flops(step)
                if args.profile:
                    print_profile(name, step, args.profile)
        calls = steps if peak_call is None else {**steps, PEAK: peak_call}
        seconds[row] = interleaved_seconds(calls, device, args.steps, warmup=args.warmup)
        peaks[row] = datasheet_peak or peak_flops / statistics.median(seconds[row].pop(PEAK)) / 1e12
        del steps, calls, step  # every reference to this row's models
        free(device)

    tolerance = args.loss_tolerance or (2e-2 if args.precision == "bfloat16" else 1e-4)
    # a ResNet's BatchNorm normalises each micro-batch with its own statistics: accumulation is exact for ViTs only
    differences = {name: abs(loss - first_losses[BASELINE]) for name, loss in first_losses.items()
                   if name != BASELINE and (name != accumulated or args.arch.startswith("ViT"))}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.arch}, batch {args.batch_size}, {args.precision}, device {device_name}; per row {args.warmup} "
          f"warm-up + {args.steps} timed steps of each side, interleaved; peak "
          + (f"{datasheet_peak:.2f} TFLOP/s (datasheet)" if datasheet_peak else
             f"{min(peaks.values()):.3f}-{max(peaks.values()):.3f} TFLOP/s (a matmul timed with each row's steps)")
          + "; "
          f"{peak_memory(device)}")
    print(f"first-step loss: {BASELINE} {first_losses[BASELINE]:.6f}; difference from it: "
          + ", ".join(f"{name} {difference:.2e}" for name, difference in differences.items())
          + f" (tolerance {tolerance:g})")
    print("| implementation | baseline | median s/step | baseline median s/step | pairs/s | GFLOP/step | TFLOP/s | "
          "MFU % | speed ratio vs baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, baseline in rows:
        median, baseline_median = (statistics.median(seconds[name, baseline][side]) for side in (name, baseline))
        # MFU counts useful work: the accumulated step's extra no-grad forward is overhead, not model FLOPs
        achieved = flops[OURS if name == accumulated else name] / median / 1e12
        print(f"| {name} | {baseline} | {median:.3f} | {baseline_median:.3f} | {args.batch_size / median:.2f} | "
              f"{flops[name] / 1e9:.1f} | {achieved:.3f} | {achieved / peaks[name, baseline] * 100:.1f} | "
              f"{median_ratio(seconds[name, baseline], name, baseline):.2f}x |")
    print(f"\nexact large batch in {args.accumulation} micro-batches (cached features): "
          f"{1 / median_ratio(seconds[accumulated, OURS], accumulated, OURS):.2f}x the time of one step on the "
          "whole batch (inverse median per-repeat speed ratio)")
    failed = {name: difference for name, difference in differences.items() if difference > tolerance}
    if failed:
        raise SystemExit(f"first-step losses differ from {BASELINE}'s by more than --loss-tolerance {tolerance:g}: "
                         + ", ".join(f"{name} {difference:.3e}" for name, difference in failed.items())
                         + "; the implementations do not compute the same step")


if __name__ == "__main__":
    main()
