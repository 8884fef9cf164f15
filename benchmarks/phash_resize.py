"""Benchmark of the p-Hash's resize: ``dataset_builders.lanczos.resize_gray`` vs Pillow's own Lanczos resize.

Claim: the matrix-product resize gives Pillow's 32x32 pixels exactly (checked on every image here) with less
CPU time, and so does the whole p-Hash (``dedup.phash_value`` vs ``imagehash.phash``, equal hashes). Both run in
this process, interleaved, on the same random grayscale / RGB images, with BLAS limited to one thread (as the
corpus builder runs it); CPU seconds per call (process time, best of ``--repeats`` rounds). The first call of a
size is left out of the timing (it computes the weights, or resizes with Pillow).

    python benchmarks/phash_resize.py [--sizes 150x150 400x400 ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import imagehash
import numpy as np
from PIL import Image

from dataset_builders.dedup import phash_value
from dataset_builders.lanczos import resize_gray, single_threaded_blas
from rclip_hf.arguments import ArgumentParser

SIZES = ["150x150", "256x256", "400x400", "800x800", "2000x2000", "4000x4000", "1000x10000", "10000x1000"]


def cpu_per_call(function: Callable[[], object], calls: int, repeats: int) -> float:
    """Best-of-``repeats`` process CPU seconds per call of ``function``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            function()
        best = min(best, (time.process_time() - start) / calls)
    return best


def measure(width: int, height: int, rng: np.random.Generator, repeats: int) -> tuple:
    """(Pillow resize s, resize_gray s, equal pixels, imagehash.phash s, phash_value s, equal hashes) of one size."""
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    gray = rgb.convert("L")
    resize_gray(gray, 32, 32)  # meet the size: its weights are computed from now on
    exact = np.array_equal(resize_gray(gray, 32, 32), np.asarray(gray.resize((32, 32), Image.Resampling.LANCZOS)))
    same_hash = phash_value(rgb) == int(str(imagehash.phash(rgb)), 16)
    calls = max(2, int(4e6 / (width * height)))
    return (cpu_per_call(lambda: gray.resize((32, 32), Image.Resampling.LANCZOS), calls, repeats),
            cpu_per_call(lambda: resize_gray(gray, 32, 32), calls, repeats), exact,
            cpu_per_call(lambda: imagehash.phash(rgb), calls, repeats),
            cpu_per_call(lambda: phash_value(rgb), calls, repeats), same_hash)


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="WIDTHxHEIGHT of the test images")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with single_threaded_blas():
        rows = [(size, *measure(*(int(side) for side in size.split("x")), rng, args.repeats)) for size in args.sizes]
    print(f"\np-Hash resize to 32x32 ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, one BLAS "
          f"thread, CPU ms per call, best of {args.repeats})\n")
    print("| image | Pillow resize | resize_gray | Pillow / resize_gray | equal pixels | imagehash.phash "
          "| phash_value | imagehash / phash_value | equal hashes |")
    print("|---|---:|---:|---:|:---:|---:|---:|---:|:---:|")
    for size, pillow, ours, exact, reference_hash, our_hash, same_hash in rows:
        print(f"| {size} | {pillow * 1e3:.3f} | {ours * 1e3:.3f} | {pillow / ours:.2f} | {'yes' if exact else 'NO'} "
              f"| {reference_hash * 1e3:.3f} | {our_hash * 1e3:.3f} | {reference_hash / our_hash:.2f} "
              f"| {'yes' if same_hash else 'NO'} |")


if __name__ == "__main__":
    main()
