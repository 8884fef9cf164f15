"""Benchmark (a) of the data pipeline: corpus build throughput vs a decode-only pass over the same images.

Claim: ``python -m dataset_builders.build_corpus`` (scan, annotation parsing, M2B, full decode, p-Hash, B2C,
de-duplication, Parquet writing, card and report) takes at most 1.5x the time of only decoding the same
image files (``PIL.Image.open(path).convert("RGB")``), both with the same number of processes, in the same
run. Fairness: both sides use the same image files, the same number of processes (a fork ``Pool``
created inside the timed region) and a warm page cache (every source file is read once before timing);
build and decode-only alternate in each repeat, so machine load hits both alike, and the table gives the
median of the repeats for each and the median of the per-repeat ratios. Workloads, copied from
../shared/data into a temp dir:
- ``real``: DOTA + iSAID + DIOR + NEON csv as released (large images, masks for iSAID);
- ``tiles``: the RSSCN7 and AID150 JPEGs (1550 small images) in a DOTA layout with seeded boxes.
Prints a markdown table; ``--dedup`` also runs benchmark (b) from ``data_pipeline_dedup.py`` (10k and 100k).

    python benchmarks/data_pipeline.py [--num-proc 2] [--repeats 3] [--dedup]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
from PIL import Image

from dataset_builders.corpus import CorpusConfig, build_corpus

SHARED = Path(os.environ.get("RCLIP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def make_tiles(target: Path, seed: int = 0) -> Path:
    """DOTA layout over the RSSCN7 + AID150 JPEGs with 1-6 seeded boxes each."""
    rng = random.Random(seed)
    (target / "images").mkdir(parents=True)
    (target / "labelTxt").mkdir()
    for path in sorted((SHARED / "rsscn7").rglob("*.jpg")) + sorted((SHARED / "aid150").rglob("*.jpg")):
        name = f"{path.parent.name}_{path.stem}"
        shutil.copy(path, target / "images" / f"{name}.jpg")
        width, height = Image.open(path).size
        lines = []
        for _ in range(rng.randint(1, 6)):
            x, y = rng.uniform(0, width - 20), rng.uniform(0, height - 20)
            w, h = rng.uniform(5, 20), rng.uniform(5, 20)
            label = rng.choice(["plane", "ship", "storage-tank", "small-vehicle"])
            lines.append(f"{x:.1f} {y:.1f} {x + w:.1f} {y:.1f} {x + w:.1f} {y + h:.1f} {x:.1f} {y + h:.1f} {label} 0")
        (target / "labelTxt" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return target


def decode(path: str) -> tuple[int, int]:
    """Fully decode one image as RGB (the baseline's whole work per image)."""
    with Image.open(path) as image:
        return image.convert("RGB").size


def decode_only(paths: list[str], num_proc: int) -> float:
    """Seconds to decode every image once with ``num_proc`` processes."""
    start = time.perf_counter()
    if num_proc == 1:
        list(map(decode, paths))
    else:
        with multiprocessing.get_context().Pool(num_proc) as pool:
            list(pool.imap(decode, paths, chunksize=4))
    return time.perf_counter() - start


def image_files(report: dict) -> list[str]:
    """The image files the build decoded: every candidate (kept, duplicate or excluded) of the report."""
    files = []
    for stats in report["sources"].values():
        root = Path(stats["path"])
        base = root if root.is_dir() else root.parent
        dropped = {entry["image"] for entry in stats["duplicates"]} | {entry["image"] for entry in stats["excluded"]}
        files.extend(str(base / image.split("/", 1)[1]) for image in sorted(dropped))
    return files


def warm_page_cache(sources: list[str]) -> None:
    """Read every file of the sources once, so neither timed side pays for cold reads."""
    for source in sources:
        root = Path(source.split("=", 1)[1])
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                path.read_bytes()


def run(name: str, sources: list[str], work: Path, num_proc: int, repeats: int) -> dict:
    """Median times of the build and of decode-only over the same images, and the median per-repeat ratio."""
    warm_page_cache(sources)
    builds, decodes = [], []
    for repeat in range(repeats):
        output = work / f"{name}-corpus"
        start = time.perf_counter()
        report = build_corpus(CorpusConfig(source=sources, output=str(output), num_proc=num_proc, force=True,
                                           seed=repeat))
        builds.append(time.perf_counter() - start)
        stored = datasets.load_dataset(str(output), split="train").cast_column("image", datasets.Image(decode=False))
        bases = {n: (Path(s["path"]) if Path(s["path"]).is_dir() else Path(s["path"]).parent)
                 for n, s in report["sources"].items()}
        paths = [str(bases[p.split("/", 1)[0]] / p.split("/", 1)[1]) for p in (row["path"] for row in stored["image"])]
        paths += image_files(report)
        decodes.append(decode_only(paths, num_proc))
    return {"name": name, "images": len(paths), "build": statistics.median(builds),
            "decode": statistics.median(decodes),
            "ratio": statistics.median(build / decode for build, decode in zip(builds, decodes)),
            "ratios": [build / decode for build, decode in zip(builds, decodes)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dedup", action="store_true", help="also run benchmark (b), data_pipeline_dedup.py")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        real = [f"dota={SHARED / 'dota'}", f"isaid={SHARED / 'isaid'}", f"dior={SHARED / 'dior'}",
                f"csv={SHARED / 'neon_trees'}"]
        tiles = [f"dota={make_tiles(work / 'tiles')}"]
        results = [run("real", real, work, args.num_proc, args.repeats),
                   run("tiles", tiles, work, args.num_proc, args.repeats)]
    print(f"\nCorpus build vs decode-only ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"num_proc={args.num_proc}, median of {args.repeats} runs, load average before "
          f"{load_before:.1f} after {os.getloadavg()[0]:.1f}; goal: ratio <= 1.5)\n")
    print("| workload | images | build s | build img/s | decode-only s | decode img/s | ratio build/decode "
          "(median; per run) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['images']} | {r['build']:.2f} | {r['images'] / r['build']:.1f} | {r['decode']:.2f} | "
              f"{r['images'] / r['decode']:.1f} | {r['ratio']:.2f}; {', '.join(f'{x:.2f}' for x in r['ratios'])} |")
    if args.dedup:
        sys.path.insert(0, str(Path(__file__).parent))
        import data_pipeline_dedup

        sys.argv = [sys.argv[0], "--sizes", "10000", "100000"]
        data_pipeline_dedup.main()


if __name__ == "__main__":
    main()
