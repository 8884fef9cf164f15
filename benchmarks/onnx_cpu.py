"""onnxruntime (CPU) vs PyTorch (CPU) on the same exported model, same batch and threads, in one process.

Each architecture (random weights, full size) is saved, exported with `rclip-hf export --to onnx`, and its image and
text encoders are timed interleaved (PyTorch, onnxruntime, onnxruntime, PyTorch, ...) after a warm-up; prints median
images/s and texts/s and the median per-repeat ratio onnxruntime / PyTorch (the goal: >= 1.2 on images).

    python benchmarks/onnx_cpu.py --archs RN50 ViT-B-32 --batch-size 16 --threads 2

On a machine whose cores other jobs share, give `--threads 1`: with more threads than free cores, PyTorch's OpenMP
barriers wait for descheduled threads (measured: RN50 text encoder 8x slower with 2 threads than with 1 at load 9 on
2 cores), which measures the load rather than either runtime.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from interleaved import interleaved_seconds, median_ratio

from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, build_processor
from rclip_hf.arguments import ArgumentParser
from rclip_hf.onnx_export import ImageEncoder, TextEncoder, export_onnx

CAPTION = "a satellite photo of many storage tanks next to a harbor."


def session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with every graph optimisation and `threads` intra-op threads that do not spin between runs
    (spinning threads would take the cores from the PyTorch call timed next)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(arch: str, batch_size: int, repeats: int, threads: int, workdir: Path) -> dict[str, tuple[float, float]]:
    """(items/s median, median speed ratio to PyTorch) of each timed call for one architecture."""
    torch.manual_seed(0)
    model = RemoteCLIPModel(RemoteCLIPConfig.from_preset(arch)).eval()
    model.save_pretrained(workdir / arch)
    processor = build_processor(image_size=model.config.vision_config.image_size)
    processor.save_pretrained(workdir / arch)
    export_onnx(workdir / arch, workdir / f"{arch}-onnx")
    images, texts = (session(workdir / f"{arch}-onnx" / name, threads)
                     for name in ("image_encoder.onnx", "text_encoder.onnx"))
    size = model.config.vision_config.image_size
    pixel_values = torch.randn(batch_size, 3, size, size)
    tokens = processor.tokenizer([CAPTION] * batch_size, padding=True, return_tensors="pt")
    image_encoder, text_encoder = ImageEncoder(model).eval(), TextEncoder(model).eval()
    pixels_np, ids_np, mask_np = pixel_values.numpy(), tokens.input_ids.numpy(), tokens.attention_mask.numpy()
    calls = {
        "images": ({"torch": lambda: image_encoder(pixel_values),
                    "ort": lambda: images.run(None, {"pixel_values": pixels_np})}),
        "texts": ({"torch": lambda: text_encoder(tokens.input_ids, tokens.attention_mask),
                   "ort": lambda: texts.run(None, {"input_ids": ids_np, "attention_mask": mask_np})}),
    }
    results = {}
    with torch.inference_mode():
        for kind, pair in calls.items():
            seconds = interleaved_seconds(pair, torch.device("cpu"), repeats)
            for name, timings in seconds.items():
                results[f"{name}_{kind}"] = (batch_size / statistics.median(timings),
                                             median_ratio(seconds, name, "torch"))
    return results


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["RN50", "ViT-B-32"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} threads; float32; batch {args.batch_size}; {args.repeats} interleaved repeats after "
          f"a warm-up; torch {torch.__version__}, onnxruntime {ort.__version__}: medians, and the median of the "
          "per-repeat ratios onnxruntime / PyTorch\n")
    print("| arch | PyTorch img/s | onnxruntime img/s | img ratio | PyTorch text/s | onnxruntime text/s | text ratio |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for arch in args.archs:
            r = measure(arch, args.batch_size, args.repeats, args.threads, Path(workdir))
            print(f"| {arch} | {r['torch_images'][0]:.1f} | {r['ort_images'][0]:.1f} | {r['ort_images'][1]:.2f} "
                  f"| {r['torch_texts'][0]:.1f} | {r['ort_texts'][0]:.1f} | {r['ort_texts'][1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
