"""Training throughput (image-text pairs/s) and model FLOPs utilisation: rclip-hf's step vs a plain open_clip step.

Both sides train the same architecture (random init) on the same batch of images and captions, at the same
precision, with AdamW, gradient clipping and the temperature clamp; data loading is excluded. Our step pads the
captions to the longest in the batch, open_clip always to 77 tokens. FLOPs per step come from
`torch.utils.flop_counter.FlopCounterMode` (forward + backward); MFU = achieved FLOP/s / peak FLOP/s, the peak
being the datasheet dense bf16/fp32 figure on known GPUs, else a large matmul measured in the same run.

    python benchmarks/train_throughput.py --arch ViT-B-32 --batch-size 8 --steps 3            # CPU
    python benchmarks/train_throughput.py --arch ViT-L-14 --batch-size 128 --precision bf16 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "training_scripts"))

from training.loop import clamp_logit_scale, training_step
from training.model import ContrastiveModule
from training.optim import parameter_groups

import rclip_hf
from rclip_hf.loss import MAX_LOGIT_SCALE, ClipLoss

#: Dense peak TFLOP/s (no sparsity) by GPU name fragment: (bf16, fp32).
GPU_PEAK_TFLOPS = {"H100": (989.0, 67.0), "H200": (989.0, 67.0), "A100": (312.0, 19.5)}
CAPTIONS = ("There are 3 planes in the middle of the picture.", "Many small vehicles at the edge of the picture.",
            "A storage tank next to a harbor.", "Lots of buildings are located in this remote sensing picture.")


def peak_tflops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """Datasheet peak of a known GPU, else the measured throughput of a 2048^3 (CPU) / 8192^3 (GPU) matmul."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, (bf16, fp32) in GPU_PEAK_TFLOPS.items():
            if fragment in name:
                return (bf16 if dtype == torch.bfloat16 else fp32), f"{name} datasheet"
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = _timed(lambda: a @ b, device, repeats=3)
    return 2 * size**3 / seconds / 1e12, f"measured {size}^3 matmul"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean seconds per call of `step` after one warm-up call."""
    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _flops(step: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def ours(arch: str, pixels: torch.Tensor, captions: list[str], precision: str, device: torch.device
         ) -> Callable[[], object]:
    """rclip-hf's training step (RemoteCLIPModel + ContrastiveModule + ClipLoss + accelerate autocast)."""
    accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=device.type == "cpu")
    set_seed(0)
    model = rclip_hf.RemoteCLIPModel(rclip_hf.RemoteCLIPConfig.from_preset(arch))
    tokens = rclip_hf.build_tokenizer()(captions, padding="longest", return_tensors="pt")
    module = ContrastiveModule(model)
    optimizer = torch.optim.AdamW(parameter_groups(module, 0.2), lr=1e-5)
    module, optimizer = accelerator.prepare(module, optimizer)
    batch = {"pixel_values": pixels.to(accelerator.device), "input_ids": tokens["input_ids"].to(accelerator.device),
             "attention_mask": tokens["attention_mask"].to(accelerator.device)}
    loss_fn = ClipLoss()

    def step():
        training_step(module, batch, loss_fn, accelerator)
        accelerator.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        clamp_logit_scale(module, accelerator)

    return step


def plain_open_clip(arch: str, pixels: torch.Tensor, captions: list[str], precision: str, device: torch.device
                    ) -> Callable[[], object]:
    """open_clip's own training step (as in its `train_one_epoch`): autocast, ClipLoss, AdamW, clip, clamp."""
    set_seed(0)
    model = open_clip.create_model(f"{arch}-quickgelu", pretrained=None).to(device)
    text = open_clip.tokenize(captions).to(device)  # always 77 tokens
    images = pixels.to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.2), lr=1e-5)
    loss_fn = open_clip.loss.ClipLoss()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            image_features, text_features, logit_scale = model(images, text)
            loss = loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B-32", choices=["RN50", "ViT-B-32", "ViT-L-14"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per implementation (after 1 warm-up)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    image_size = rclip_hf.RemoteCLIPConfig.from_preset(args.arch).image_size
    pixels = torch.randn(args.batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    captions = [CAPTIONS[index % len(CAPTIONS)] for index in range(args.batch_size)]
    peak, peak_source = peak_tflops(device, torch.bfloat16 if args.precision == "bf16" else torch.float32)

    rows = []
    for name, build in (("rclip-hf (accelerate)", ours), ("open_clip", plain_open_clip)):
        step = build(args.arch, pixels, captions, args.precision, device)
        seconds = _timed(step, device, args.steps)
        flops = _flops(step)
        achieved = flops / seconds / 1e12
        rows.append((name, args.batch_size / seconds, flops / 1e9, achieved, achieved / peak * 100))
        del step
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.arch}, batch {args.batch_size}, {args.precision}, {args.steps} timed steps, device {device_name}; "
          f"peak {peak:.2f} TFLOP/s ({peak_source})")
    print("| implementation | pairs/s | GFLOP/step | TFLOP/s | MFU % |")
    print("|---|---|---|---|---|")
    for name, pairs, gflop, achieved, mfu in rows:
        print(f"| {name} | {pairs:.2f} | {gflop:.1f} | {achieved:.3f} | {mfu:.1f} |")
    ratio = rows[0][1] / rows[1][1]
    print(f"throughput ratio rclip-hf / open_clip: {ratio:.2f}x "
          f"(MFU ratio {rows[0][4] / rows[1][4]:.2f}x; FLOPs differ as open_clip pads text to 77 tokens)")


if __name__ == "__main__":
    main()
