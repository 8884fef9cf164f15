"""Image and text encoding throughput of RemoteCLIPModel vs open_clip with the same weights, batch, threads,
device and dtype, measured in one process. Calls are interleaved (ours, open_clip, open_clip, ours, ...) after a
warm-up of each; prints median img/s and text/s and the median per-repeat ratio (ours / open_clip).

    python benchmarks/inference_throughput.py --archs RN50 ViT-B-32 ViT-L-14 --batch-size 16
    python benchmarks/inference_throughput.py --device cuda --dtype bfloat16 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics

import open_clip
import torch
from interleaved import interleaved_seconds, median_ratio

from rclip_hf.arguments import ArgumentParser
from rclip_hf.convert import build_model
from rclip_hf.processing_remoteclip import CONTEXT_LENGTH

CAPTION = "a satellite photo of many storage tanks next to a harbor."


def measure(arch: str, batch_size: int, repeats: int, device: torch.device, dtype: torch.dtype
            ) -> dict[str, tuple[float, float]]:
    """(items/s median, median speed ratio to open_clip) of each measured call for one architecture."""
    torch.manual_seed(0)
    reference = open_clip.create_model(f"{arch}-quickgelu", pretrained=None).eval()
    ours = build_model(reference.state_dict(), arch).eval()
    reference, ours = reference.to(device, dtype), ours.to(device, dtype)
    image_size = ours.config.image_size
    pixel_values = torch.randn(batch_size, 3, image_size, image_size, device=device, dtype=dtype)
    # CLIP captions are short: open_clip always pads to 77 (its fixed context); ours pads to the batch's longest,
    # and is also measured at 77 for the same work.
    tokens = open_clip.tokenize([CAPTION] * batch_size).to(device)
    length = int((tokens != 0).sum(dim=1).max())
    input_ids = tokens[:, :length]
    input_ids_77 = torch.cat([input_ids, input_ids.new_full((batch_size, CONTEXT_LENGTH - length), 49407)], dim=1)
    images = {"ours_img": lambda: ours.get_image_features(pixel_values=pixel_values).pooler_output,
              "open_clip_img": lambda: reference.encode_image(pixel_values)}
    texts = {"ours_txt": lambda: ours.get_text_features(input_ids=input_ids).pooler_output,
             "ours_txt77": lambda: ours.get_text_features(input_ids=input_ids_77).pooler_output,
             "open_clip_txt": lambda: reference.encode_text(tokens)}
    results = {}
    with torch.inference_mode():
        for calls, baseline in ((images, "open_clip_img"), (texts, "open_clip_txt")):
            seconds = interleaved_seconds(calls, device, repeats)
            for name, timings in seconds.items():
                results[name] = (batch_size / statistics.median(timings), median_ratio(seconds, name, baseline))
    return results


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["RN50", "ViT-B-32", "ViT-L-14"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {name}; dtype {args.dtype}; batch {args.batch_size}; {args.repeats} interleaved repeats after "
          "a warm-up: medians, and the median of the per-repeat ratios ours / open_clip\n")
    print("| arch | ours img/s | open_clip img/s | img ratio | ours text/s (pad longest) | ours text/s (pad 77) "
          "| open_clip text/s (77) | text ratio (longest / 77) |")
    print("|---|---|---|---|---|---|---|---|")
    for arch in args.archs:
        r = measure(arch, args.batch_size, args.repeats, device, dtype)
        print(f"| {arch} | {r['ours_img'][0]:.1f} | {r['open_clip_img'][0]:.1f} | {r['ours_img'][1]:.2f} "
              f"| {r['ours_txt'][0]:.1f} | {r['ours_txt77'][0]:.1f} | {r['open_clip_txt'][0]:.1f} "
              f"| {r['ours_txt'][1]:.2f} / {r['ours_txt77'][1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
