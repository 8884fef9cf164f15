"""Retrieval metrics at scale: chunked `retrieval_metrics` vs the naive full similarity matrix.

Claim: peak memory of `rclip_hf.evaluation.retrieval_metrics` is bounded by the chunk (about chunk_size²
float32 scores per block), not by images × texts. Each measurement runs in its own subprocess; peak memory is
the rise of the process's peak RSS (ru_maxrss) over the peak after the embeddings were made. The naive
baseline (one texts × images matrix, then torch.topk per k, as clip_benchmark) is measured where it fits in
`--naive-max-gb` and extrapolated (linearly in images × texts) beyond.

python benchmarks/eval_scale.py [--sizes 10000x50000,100000x500000] [--dim 512] [--chunk-size 4096]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from rclip_hf.arguments import ArgumentParser


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _embeddings(num_images: int, num_texts: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded normalised embeddings; texts are noisy copies of their image (several captions per image)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(num_images, dim, generator=generator)
    images /= images.norm(dim=1, keepdim=True)
    text_to_image = torch.arange(num_texts) % num_images
    texts = torch.empty(num_texts, dim)
    for start in range(0, num_texts, 4096):  # chunked, so that making the data needs no big temporary
        block = torch.randn(min(4096, num_texts - start), dim, generator=generator).mul_(1.5)
        block += images[text_to_image[start : start + len(block)]]
        texts[start : start + len(block)] = block / block.norm(dim=1, keepdim=True)
    return images, texts, text_to_image


def _naive(images: torch.Tensor, texts: torch.Tensor, text_to_image: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """The baseline: the full (texts, images) score matrix and torch.topk per k on its rows and columns."""
    scores = texts @ images.T  # (M, N): the whole matrix at once
    image_ids = torch.arange(len(images))
    metrics = {}
    for k in ks:
        top = scores.T.topk(k, dim=1).indices
        metrics[f"i2t_R@{k}"] = (text_to_image[top] == image_ids[:, None]).any(1).float().mean().item() * 100
    for k in ks:
        top = scores.topk(k, dim=1).indices
        metrics[f"t2i_R@{k}"] = (top == text_to_image[:, None]).any(1).float().mean().item() * 100
    return metrics


def worker(method: str, num_images: int, num_texts: int, dim: int, chunk_size: int) -> None:
    """Measure one method at one size; print a JSON line."""
    from rclip_hf.evaluation import retrieval_metrics

    images, texts, text_to_image = _embeddings(num_images, num_texts, dim)
    before = _peak_rss_mb()
    start = time.perf_counter()
    if method == "naive":
        metrics = _naive(images, texts, text_to_image)
    else:
        metrics = retrieval_metrics(images, texts, text_to_image, chunk_size=chunk_size, tie_break=method)
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "wall_s": wall,
                "extra_mb": _peak_rss_mb() - before,
                "base_mb": before,
                "t2i_R@1": metrics["t2i_R@1"],
            }
        )
    )


def measure(method: str, num_images: int, num_texts: int, dim: int, chunk_size: int) -> dict:
    """Run :func:`worker` in a fresh subprocess and parse its JSON line."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        str(num_images),
        str(num_texts),
        str(dim),
        str(chunk_size),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Measure every size and print a markdown table with ratios to the naive baseline."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000x50000,100000x500000", help="IMAGESxTEXTS, comma-separated")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument(
        "--naive-max-gb", type=float, default=8.0, help="Largest score matrix the baseline may build"
    )
    parser.add_argument(
        "--methods", default="torch,lowest_index", help="tie_break modes of the chunked metric"
    )
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, num_images, num_texts, dim, chunk_size = args.worker
        worker(method, int(num_images), int(num_texts), int(dim), int(chunk_size))
        return
    torch_threads = torch.get_num_threads()
    print(
        f"# retrieval_metrics at scale (D={args.dim}, chunk_size={args.chunk_size}, float32, CPU, {torch_threads} threads)\n"
    )
    print(
        "| images × texts | method | wall (s) | peak extra memory (MiB) | vs naive: time | vs naive: memory |"
    )
    print("|---|---|---|---|---|---|")
    naive_reference = None  # (pairs, wall, extra_mb) of the largest measured baseline
    for size in args.sizes.split(","):
        num_images, num_texts = (int(value) for value in size.lower().split("x"))
        pairs = num_images * num_texts
        if pairs * 4 / 2**30 <= args.naive_max_gb:
            naive = measure("naive", num_images, num_texts, args.dim, args.chunk_size)
            naive_reference = (pairs, naive["wall_s"], naive["extra_mb"])
            label = "naive (full matrix)"
        elif naive_reference is not None:
            scale = pairs / naive_reference[0]
            naive = {"wall_s": naive_reference[1] * scale, "extra_mb": naive_reference[2] * scale}
            label = "naive (extrapolated)"
        else:
            naive, label = None, ""
        if naive:
            print(
                f"| {num_images:,} × {num_texts:,} | {label} | {naive['wall_s']:.1f} | {naive['extra_mb']:,.0f} | 1.00 | 1.00 |"
            )
        for method in args.methods.split(","):
            result = measure(method, num_images, num_texts, args.dim, args.chunk_size)
            ratios = (
                f"{result['wall_s'] / naive['wall_s']:.2f} | {result['extra_mb'] / naive['extra_mb']:.4f}"
                if naive
                else "– | –"
            )
            print(
                f"| {num_images:,} × {num_texts:,} | chunked, tie_break={method} | {result['wall_s']:.1f} | "
                f"{result['extra_mb']:,.0f} | {ratios} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
