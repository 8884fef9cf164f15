"""Benchmark (b) of the data pipeline: exact near-duplicate search on p-Hashes vs naive pairwise imagehash.

Claim: ``dataset_builders.dedup.near_duplicate_pairs`` finds every pair within ``max_distance`` among 1M
64-bit hashes at distance 4 in < 30 s on 2 cores, exactly. Baseline, measured in the same run: the naive
approach, a Python double loop over ``imagehash.ImageHash`` objects (``h1 - h2 <= max_distance``), timed on
a random sample of pairs of the 10k set and extrapolated to all ``N (N - 1) / 2`` pairs of each size.
Exactness is checked against a vectorised brute force at 10k. Prints a markdown table.

    python benchmarks/data_pipeline_dedup.py [--sizes 10000 100000 1000000] [--distances 1 4]
"""

from __future__ import annotations

import os
import platform
import time

import imagehash
import numpy as np

from dataset_builders.dedup import near_duplicate_pairs
from rclip_hf.arguments import ArgumentParser


def planted_hashes(size: int, rng: np.random.Generator) -> np.ndarray:
    """Random 64-bit hashes with 1% near-duplicates at distances 0..4 and a group of 50 identical hashes."""
    hashes = rng.integers(0, 2**64, size=size, dtype=np.uint64)
    copies = size // 100
    sources = rng.integers(0, size, size=copies)
    targets = rng.integers(0, size, size=copies)
    flips = np.zeros(copies, dtype=np.uint64)
    for index, distance in enumerate(rng.integers(0, 5, size=copies)):
        for bit in rng.choice(64, size=distance, replace=False):
            flips[index] |= np.uint64(1) << np.uint64(bit)
    hashes[targets] = hashes[sources] ^ flips
    hashes[:50] = hashes[50]
    return hashes


def brute_force_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 512) -> np.ndarray:
    """Exact pairs i < j by comparing every row chunk with all hashes (vectorised, O(N^2))."""
    found = []
    for start in range(0, hashes.size, chunk):
        block = np.bitwise_count(hashes[start:start + chunk, None] ^ hashes[None, :]) <= max_distance
        rows, cols = np.nonzero(block)
        rows += start
        keep = rows < cols
        found.append(np.stack([rows[keep], cols[keep]], axis=1))
    pairs = np.concatenate(found).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def naive_seconds_per_comparison(hashes: np.ndarray, max_distance: int, samples: int,
                                 rng: np.random.Generator) -> float:
    """Seconds per ``h1 - h2 <= max_distance`` on ImageHash objects, timed on random pairs of ``hashes``."""
    objects = [imagehash.hex_to_hash(f"{int(value):016x}") for value in hashes]
    first, second = rng.integers(0, len(objects), size=(2, samples))
    pairs = [(objects[i], objects[j]) for i, j in zip(first.tolist(), second.tolist())]
    start = time.perf_counter()
    sum(1 for a, b in pairs if a - b <= max_distance)
    return (time.perf_counter() - start) / samples


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--distances", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--naive-samples", type=int, default=200_000, help="pairs timed for the naive baseline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sets = {size: planted_hashes(size, rng) for size in args.sizes}
    reference = sets[min(args.sizes)]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    rows = []
    for max_distance in args.distances:
        exact = np.array_equal(near_duplicate_pairs(reference, max_distance), brute_force_pairs(reference, max_distance))
        per_comparison = naive_seconds_per_comparison(reference, max_distance, args.naive_samples, rng)
        for size, hashes in sets.items():
            start = time.perf_counter()
            pairs = near_duplicate_pairs(hashes, max_distance)
            elapsed = time.perf_counter() - start
            naive = per_comparison * size * (size - 1) / 2
            checked = ("yes" if exact else "NO") if size == reference.size else "-"
            rows.append((size, max_distance, len(pairs), elapsed, naive, naive / elapsed, checked))
        print(f"max_distance={max_distance}: naive ImageHash comparison {per_comparison * 1e6:.2f} us/pair "
              f"(timed on {args.naive_samples} random pairs of the {reference.size} set); "
              f"exact vs brute force at {reference.size}: {exact}")

    print()
    print("| hashes | max_distance | pairs found | near_duplicate_pairs (s) | naive pairwise imagehash (s, extrapolated) "
          "| speed-up | exact vs brute force |")
    print("|---:|---:|---:|---:|---:|---:|:---:|")
    for size, max_distance, count, elapsed, naive, ratio, exact in rows:
        print(f"| {size:,} | {max_distance} | {count:,} | {elapsed:.3f} | {naive:,.0f} | {ratio:,.0f}x | {exact} |")
    goal = [row for row in rows if row[0] == 1_000_000 and row[1] == 4]
    if goal:
        print(f"\ngoal 1M hashes at distance 4 in < 30 s: {goal[0][3]:.2f} s -> {'met' if goal[0][3] < 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
