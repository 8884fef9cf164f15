"""Image and text encoding throughput of RemoteCLIPModel vs open_clip with the same weights, batch, threads,
device and dtype, measured in one process. Prints img/s, text/s and the ratio (ours / open_clip).

    python benchmarks/inference_throughput.py --archs RN50 ViT-B-32 ViT-L-14 --batch-size 16
    python benchmarks/inference_throughput.py --device cuda --dtype bfloat16 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import open_clip
import torch

from rclip_hf.convert import build_model
from rclip_hf.processing_remoteclip import CONTEXT_LENGTH


def _time_per_call(function: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> float:
    """Median seconds per call after one warm-up call."""
    function()
    timings = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def measure(arch: str, batch_size: int, repeats: int, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """Throughputs (items/s) of both implementations for one architecture."""
    torch.manual_seed(0)
    reference = open_clip.create_model(f"{arch}-quickgelu", pretrained=None).eval()
    ours = build_model(reference.state_dict(), arch).eval()
    reference, ours = reference.to(device, dtype), ours.to(device, dtype)
    image_size = ours.config.image_size
    pixel_values = torch.randn(batch_size, 3, image_size, image_size, device=device, dtype=dtype)
    # CLIP captions are short: pad to 77 for open_clip (its fixed context), to the batch's longest for ours.
    tokens = open_clip.tokenize(["a satellite photo of many storage tanks next to a harbor."] * batch_size)
    length = int((tokens != 0).sum(dim=1).max())
    input_ids = tokens[:, :length].to(device)
    results = {}
    with torch.inference_mode():
        results["ours_img"] = batch_size / _time_per_call(
            lambda: ours.get_image_features(pixel_values=pixel_values).pooler_output, device, repeats)
        results["open_clip_img"] = batch_size / _time_per_call(
            lambda: reference.encode_image(pixel_values), device, repeats)
        results["ours_txt"] = batch_size / _time_per_call(
            lambda: ours.get_text_features(input_ids=input_ids).pooler_output, device, repeats)
        results["open_clip_txt"] = batch_size / _time_per_call(
            lambda: reference.encode_text(tokens.to(device)), device, repeats)
        results["ours_txt77"] = batch_size / _time_per_call(
            lambda: ours.get_text_features(input_ids=_pad_to_context(input_ids)).pooler_output, device, repeats)
    return results


def _pad_to_context(input_ids: torch.Tensor) -> torch.Tensor:
    padding = input_ids.new_full((input_ids.shape[0], CONTEXT_LENGTH - input_ids.shape[1]), 49407)
    return torch.cat([input_ids, padding], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["RN50", "ViT-B-32", "ViT-L-14"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {name}; dtype {args.dtype}; batch {args.batch_size}; median of {args.repeats} after a warm-up\n")
    print("| arch | ours img/s | open_clip img/s | img ratio | ours text/s (pad longest) | ours text/s (pad 77) "
          "| open_clip text/s (77) | text ratio (longest / 77) |")
    print("|---|---|---|---|---|---|---|---|")
    for arch in args.archs:
        r = measure(arch, args.batch_size, args.repeats, device, dtype)
        print(f"| {arch} | {r['ours_img']:.1f} | {r['open_clip_img']:.1f} | {r['ours_img'] / r['open_clip_img']:.2f} "
              f"| {r['ours_txt']:.1f} | {r['ours_txt77']:.1f} | {r['open_clip_txt']:.1f} "
              f"| {r['ours_txt'] / r['open_clip_txt']:.2f} / {r['ours_txt77'] / r['open_clip_txt']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
