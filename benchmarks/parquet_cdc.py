"""Benchmark of the Parquet shards: content-defined chunking (CDC) and the page index, as ``datasets`` writes them.

Claims: (1) a rebuild in which one of several sources changes re-uploads little: most of the new shards' bytes
fall in chunks the previous build already has (Xet de-duplicates by content-defined chunks of ~64 KiB across all
files of a repo); (2) the writer's limits still hold with CDC: row groups of at most ``rows_per_batch`` rows and
~``max_batch_bytes`` of image bytes, and Arrow memory bounded by the row group, not the build.
Baseline, measured in the same run: the same ``ShardWriter`` with ``content_defined_chunking=False`` (the writer
before CDC). Xet's chunker is modelled by a gear rolling hash (64-byte window, a boundary where the top 16 bits
are 0: ~64 KiB chunks, at least 8 KiB, at most 128 KiB), the chunking Xet uses; chunks are compared by XXH3-128.

Workload: ``--sources`` sources of ``--images`` incompressible "images" (random bytes, 16-160 KiB, as JPEG/PNG
bytes are) each, with a caption; the rebuild changes one source in the middle (removes 3 images, replaces 5,
adds 4), so every row after it shifts. Each build runs in a fresh process (clean memory peaks). Prints a table.

Measured (2 CPUs, x86_64, defaults): the rebuild re-uses 89% of its bytes with CDC (611 of 678 chunks unchanged)
against 95% without (643 of 678): claim (1) holds, but for image bytes stored uncompressed (PLAIN, as datasets
stores them) Parquet CDC does not beat plain pages in this model: Xet's own chunking already finds shifted
content, and CDC's smaller pages (256 KiB-1 MiB) add page headers (1-4 MiB CDC pages: 94%; 64-256 KiB: 83%).
Limits hold: at most 102 rows and 8.1 MiB of image bytes per row group, Arrow peak 2.3 MiB with CDC (16 MiB
without).

    python benchmarks/parquet_cdc.py [--sources 4] [--images 120] [--max-shard-mb 16]
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from dataset_builders.hf_folder import DEFAULT_MAX_BATCH_BYTES, ShardWriter
from rclip_hf.arguments import ArgumentParser

FEATURES = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                              "source": datasets.Value("string")})
ROWS_PER_BATCH = 256
_GEAR = np.random.default_rng(2024).integers(0, 2**64, size=256, dtype=np.uint64)
_BOUNDARY = np.uint64(0xFFFF) << np.uint64(48)
MIN_CHUNK, MAX_CHUNK = 8 * 1024, 128 * 1024


def source_rows(seed: int, count: int, source: str) -> list[dict]:
    """``count`` rows of one source: random image bytes (16-160 KiB) and a caption, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [{"image": {"bytes": rng.bytes(int(rng.integers(16, 160)) * 1024), "path": f"{source}/{index}.jpg"},
             "caption": f"image {index} of {source}", "source": source} for index in range(count)]


def build_rows(sources: int, images: int, changed: bool) -> list[dict]:
    """All rows of a build, source by source; ``changed`` edits the middle source (3 removed, 5 replaced, 4 added)."""
    rows = []
    for number in range(sources):
        name = f"source{number}"
        part = source_rows(number, images, name)
        if changed and number == sources // 2:
            fresh = source_rows(1000 + number, 9, name)
            part = part[3:]
            part[10:15] = fresh[:5]
            part += fresh[5:]
        rows += part
    return rows


def write_build(args: tuple[Path, int, int, bool, bool, int]) -> dict:
    """Write one build (in a fresh process) and return its shards, row-group sizes and memory peaks."""
    folder, sources, images, changed, cdc, max_shard_bytes = args
    rows = build_rows(sources, images, changed)
    pool = pa.default_memory_pool()
    writer = ShardWriter(folder, "train", FEATURES, max_shard_bytes=max_shard_bytes, rows_per_batch=ROWS_PER_BATCH,
                         content_defined_chunking=cdc)
    for row in rows:
        writer.write(row)
    shards = writer.close()
    groups = [footer.row_group(i) for footer in (pq.ParquetFile(path).metadata for path in shards)
              for i in range(footer.num_row_groups)]
    page_index = all(group.column(0).has_offset_index for group in groups)
    return {"shards": shards, "bytes": sum(path.stat().st_size for path in shards),
            "max_group_rows": max(group.num_rows for group in groups),
            "max_group_image_mb": max(group.column(0).total_uncompressed_size for group in groups) / 2**20,
            "arrow_peak_mb": pool.max_memory() / 2**20, "page_index": page_index,
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def chunks(path: Path, block: int = 1 << 22) -> list[tuple[bytes, int]]:
    """(XXH3-128 digest, length) of the content-defined chunks of a file (gear hash, top-16-bit boundary rule)."""
    data = np.fromfile(path, dtype=np.uint8)
    candidates = []
    for start in range(0, data.size, block):
        window = data[max(0, start - 63):start + block]
        gears = _GEAR[window]
        rolling = np.zeros(window.size, dtype=np.uint64)
        for shift in range(64):  # h_i = sum_j gear[b_(i-j)] << j (mod 2^64): the last 64 bytes
            rolling[shift:] += gears[:window.size - shift] << np.uint64(shift)
        hits = np.nonzero((rolling & _BOUNDARY) == 0)[0] + max(0, start - 63)
        candidates.extend(hits[hits >= start].tolist())
    cuts, last = [], 0
    for position in candidates + [data.size - 1]:
        end = position + 1
        while end - last > MAX_CHUNK:
            last += MAX_CHUNK
            cuts.append(last)
        if end - last >= MIN_CHUNK or end == data.size:
            cuts.append(end)
            last = end
    raw = data.tobytes()
    starts = [0] + cuts[:-1]
    return [(xxhash.xxh3_128(raw[a:b]).digest(), b - a) for a, b in zip(starts, cuts) if b > a]


def reuse(before: list[Path], after: list[Path]) -> tuple[float, int, int]:
    """(share of the rebuild's bytes in chunks the first build has, unchanged chunks, chunks of the rebuild)."""
    known = {digest for path in before for digest, _ in chunks(path)}
    new = [chunk for path in after for chunk in chunks(path)]
    reused = [length for digest, length in new if digest in known]
    return sum(reused) / sum(length for _, length in new), len(reused), len(new)


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--max-shard-mb", type=int, default=16)
    args = parser.parse_args()
    print(f"# Parquet CDC: {args.sources} sources x {args.images} images, shards <= {args.max_shard_mb} MiB, "
          f"row groups <= {ROWS_PER_BATCH} rows / {DEFAULT_MAX_BATCH_BYTES / 2**20:.0f} MiB; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| writer | build MB | rebuild re-uses (bytes) | unchanged chunks | max rows/group | max image MiB/group "
          "| page index | Arrow peak MiB | RSS peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    shares = {}
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for label, cdc in (("no CDC (baseline)", False), ("CDC (datasets defaults)", True)):
            stats = []
            for changed in (False, True):
                folder = Path(tmp) / f"{cdc}-{changed}"
                with context.Pool(1) as pool:
                    stats.append(pool.apply(write_build, ((folder, args.sources, args.images, changed, cdc,
                                                           args.max_shard_mb * 2**20),)))
            share, unchanged, total = reuse(stats[0]["shards"], stats[1]["shards"])
            shares[label] = share
            last = stats[1]
            print(f"| {label} | {last['bytes'] / 1e6:.1f} | {share:.1%} | {unchanged} / {total} | "
                  f"{max(s['max_group_rows'] for s in stats)} | {max(s['max_group_image_mb'] for s in stats):.1f} | "
                  f"{last['page_index']} | {max(s['arrow_peak_mb'] for s in stats):.1f} | "
                  f"{max(s['rss_peak_mb'] for s in stats):.0f} |")
    baseline, cdc = shares["no CDC (baseline)"], shares["CDC (datasets defaults)"]
    print(f"\nbytes a re-upload sends: CDC {1 - cdc:.1%} of the rebuild vs baseline {1 - baseline:.1%} "
          f"(ratio {(1 - cdc) / max(1 - baseline, 1e-9):.2f}x)")


if __name__ == "__main__":
    main()
