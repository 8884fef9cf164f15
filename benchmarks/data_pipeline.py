"""Benchmark (a) of the data pipeline: corpus build throughput vs a decode-only pass over the same files.

Claim: ``python -m dataset_builders.build_corpus`` (scan, annotation parsing, M2B, full decode, p-Hash, B2C,
de-duplication, Parquet writing, card and report) takes at most 1.5x the time of only decoding the same
raster files (``PIL.Image.open(path).convert("RGB")``), both with the same number of processes, in the same
run. Fairness: both sides decode the same files (every candidate image of the build, kept or removed as a
duplicate, and, for mask sources, the masks M2B decodes), use the same number of worker processes (a fork
``Pool`` created inside the timed region, tasks chunked alike by ``task_chunks``, workers forked with one BLAS thread) and a
warm page cache (every
source file is read once before timing); build and decode-only alternate in each repeat, so machine load
hits both alike, and the table gives the median of the repeats for each and the median of the per-repeat
ratios (the figure least sensitive to other processes on the machine), plus the CPU seconds of each side
(this process and its worker processes: the work done, whatever the machine load). A third pass, decode +
p-Hash of the images (masks decoded only), shows the floor no build can go below: the p-Hash needs the full
decode, a grayscale conversion and a 32x32 Lanczos resize of every image (bit for bit ``imagehash.phash``, so no
reduced decode). Where that floor is itself near 1.5 (JPEGs up to about 1 Mpx, which libjpeg-turbo decodes
fast), the goal leaves almost nothing for captions and writing. Workloads:
- ``real``: DOTA + iSAID + DIOR + NEON csv as released in ../shared/data (9 images, masks for iSAID: a fixed-cost
  check, too few images for a throughput figure);
- ``tiles``: the RSSCN7 and AID150 JPEGs (1550 small images, 150-400 px), copied into a temp dir in a DOTA layout
  with seeded boxes;
- ``large``: the detection-size images of the real set (DOTA, iSAID, DIOR, NEON; 0.4-5 Mpx, PNG and JPEG as
  released), each in its 8 right-angle rotations/flips (64 images), in a DOTA layout with seeded boxes;
- ``crops``: one row per image size and format of the paper's sources (``CROPS``: 256x256 JPEG, 800x800 JPEG,
  1920x1080 JPEG, 512x512 PNG, 1024x1024 PNG, each standing for the sources of the nearest size and format), seeded
  crops of the real large images (rotated/flipped), 40-100 Mpx per row;
- ``mix``: the paper's corpus in miniature: one build over the ``crops`` kinds of images, each as many as the paper
  has images of the sources it stands for, divided by ``MIX_SCALE`` (330 images).
Prints a markdown table; ``--dedup`` also runs benchmark (b) from ``data_pipeline_dedup.py`` (10k and 100k).

    python benchmarks/data_pipeline.py [--num-proc 2] [--repeats 3] [--workloads real,tiles,large,crops,mix] [--dedup]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import datasets
from PIL import Image

from dataset_builders.corpus import (
    CorpusConfig,
    build_corpus,
    file_size,
    relative_name,
    source_base,
    task_chunks,
)
from dataset_builders.dedup import phash_value
from dataset_builders.lanczos import single_threaded_blas
from dataset_builders.records import Skipped
from dataset_builders.sources import get_reader
from rclip_hf.arguments import ArgumentParser
from rclip_hf.images import IMAGE_SUFFIXES

SHARED = Path(os.environ.get("RCLIP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _write_boxes(target: Path, name: str, width: int, height: int, rng: random.Random) -> None:
    """1-6 seeded DOTA boxes inside a width x height image as ``labelTxt/<name>.txt``."""
    lines = []
    for _ in range(rng.randint(1, 6)):
        x, y = rng.uniform(0, width - 20), rng.uniform(0, height - 20)
        w, h = rng.uniform(5, 20), rng.uniform(5, 20)
        label = rng.choice(["plane", "ship", "storage-tank", "small-vehicle"])
        lines.append(f"{x:.1f} {y:.1f} {x + w:.1f} {y:.1f} {x + w:.1f} {y + h:.1f} {x:.1f} {y + h:.1f} {label} 0")
    (target / "labelTxt" / f"{name}.txt").write_text("\n".join(lines) + "\n")


def make_tiles(target: Path, seed: int = 0) -> Path:
    """DOTA layout over the RSSCN7 + AID150 JPEGs (copied byte for byte) with 1-6 seeded boxes each."""
    rng = random.Random(seed)
    (target / "images").mkdir(parents=True)
    (target / "labelTxt").mkdir()
    for path in sorted((SHARED / "rsscn7").rglob("*.jpg")) + sorted((SHARED / "aid150").rglob("*.jpg")):
        name = f"{path.parent.name}_{path.stem}"
        shutil.copy(path, target / "images" / f"{name}.jpg")
        _write_boxes(target, name, *Image.open(path).size, rng)
    return target


LARGE_SOURCES = ("dota/images/*.png", "isaid/*/images/P????.png", "dior/JPEGImages/*.jpg", "neon_trees/2019_*.png")
TRANSPOSES = (None, *Image.Transpose)  # identity + the 7 others of the square's symmetry group (distinct p-Hashes)


class Crops(NamedTuple):
    """A ``crops`` row: ``images`` crops of ``width`` x ``height`` saved as ``suffix``, standing for the paper's
    ``sources`` of the nearest size and format, which hold ``paper_images`` of its 165,745 images."""

    width: int
    height: int
    suffix: str
    images: int
    sources: str
    paper_images: int


CROPS = (Crops(256, 256, ".jpg", 600, "RET-3", 13_713),
         Crops(800, 800, ".jpg", 160, "DIOR, HRRSD, RSOD, LEVIR, HRSC", 51_006),
         Crops(1920, 1080, ".jpg", 48, "AU-AIR, VisDrone, Stanford Drone", 56_645),
         Crops(512, 512, ".png", 200, "Potsdam, Vaihingen", 6_163),
         Crops(1024, 1024, ".png", 60, "LoveDA, iSAID, DOTA, CARPK", 37_985))
MIX_SCALE = 500  # the ``mix`` workload has this many times fewer images of each kind than the paper


def detection_images() -> Iterator[tuple[Path, Image.Image]]:
    """(path, RGB image) of each detection-size image of ../shared/data (DOTA, iSAID, DIOR, NEON: 0.4-5 Mpx)."""
    for pattern in LARGE_SOURCES:
        for path in sorted(SHARED.glob(pattern)):
            with Image.open(path) as original:
                yield path, original.convert("RGB")


def make_large(target: Path, seed: int = 0) -> Path:
    """DOTA layout over the detection-size images of ../shared/data, each in its 8 right-angle rotations and flips,
    in its own file format, with 1-6 seeded boxes."""
    rng = random.Random(seed)
    (target / "images").mkdir(parents=True)
    (target / "labelTxt").mkdir()
    for path, rgb in detection_images():
        for index, transpose in enumerate(TRANSPOSES):
            variant = rgb if transpose is None else rgb.transpose(transpose)
            name = f"{path.relative_to(SHARED).parts[0]}_{path.stem}_{index}"
            variant.save(target / "images" / f"{name}{path.suffix.lower()}", quality=95)  # quality: JPEG only
            _write_boxes(target, name, *variant.size, rng)
    return target


def make_crops(target: Path, crop: Crops, count: int, seed: int = 0) -> Path:
    """Add ``count`` seeded ``crop.width`` x ``crop.height`` crops of the detection-size images of ../shared/data
    (each taken from one of the 8 right-angle rotations/flips of an image at least that large), saved as
    ``crop.suffix`` (JPEG at quality 90), with 1-6 seeded boxes, to the DOTA layout at ``target``."""
    rng = random.Random(seed)
    (target / "images").mkdir(parents=True, exist_ok=True)
    (target / "labelTxt").mkdir(exist_ok=True)
    width, height = crop.width, crop.height
    originals = [rgb for _, rgb in detection_images()
                 if min(rgb.size) >= min(width, height) and max(rgb.size) >= max(width, height)]
    if not originals:
        raise ValueError(f"no image of ../shared/data is large enough for {width}x{height} crops")
    for index in range(count):
        transpose = TRANSPOSES[index % len(TRANSPOSES)]
        variant = originals[index % len(originals)]
        variant = variant if transpose is None else variant.transpose(transpose)
        if variant.width < width or variant.height < height:  # a portrait image turned: take the next turn
            variant = variant.transpose(Image.Transpose.ROTATE_90)
        x, y = rng.randint(0, variant.width - width), rng.randint(0, variant.height - height)
        name = f"crop_{width}x{height}{crop.suffix[1:]}_{index:05d}"
        variant.crop((x, y, x + width, y + height)).save(target / "images" / f"{name}{crop.suffix}", quality=90)
        _write_boxes(target, name, width, height, rng)
    return target


def make_mix(target: Path) -> Path:
    """One DOTA layout with the ``CROPS`` kinds of images in the paper's proportions (``MIX_SCALE`` fewer)."""
    for index, crop in enumerate(CROPS):
        make_crops(target, crop, max(1, round(crop.paper_images / MIX_SCALE)), seed=index)
    return target


def crop_name(crop: Crops) -> str:
    """The table row name of a ``crops`` row."""
    return f"crops {crop.width}x{crop.height} {Image.registered_extensions()[crop.suffix]} ({crop.sources})"


def decode(task: tuple[str, bool]) -> int:
    """Fully decode one file ``(path, hashed)`` as RGB and, when ``hashed``, p-Hash it (returns the hash or width)."""
    path, hashed = task
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        return phash_value(rgb) if hashed else rgb.size[0]


def decode_chunk(chunk: list[tuple[str, bool]]) -> list[int]:
    return [decode(task) for task in chunk]


def timed_pass(tasks: list[tuple[str, bool]], num_proc: int) -> float:
    """Seconds to ``decode`` every task once with ``num_proc`` processes (tasks chunked as the build's)."""
    start = time.perf_counter()
    if num_proc == 1:
        list(map(decode, tasks))
    else:
        chunks = task_chunks([file_size(Path(path)) for path, _ in tasks], num_proc)
        with single_threaded_blas(), multiprocessing.get_context().Pool(num_proc) as pool:
            list(pool.imap(decode_chunk, [[tasks[position] for position in chunk] for chunk in chunks]))
    return time.perf_counter() - start


def candidate_names(output: Path, report: dict) -> set[str]:
    """Names (``format/relative path``) of every image the build decoded and hashed: kept, duplicate or excluded."""
    stored = datasets.load_dataset(str(output), split="train", cache_dir=str(output.parent / "datasets-cache"))
    stored = stored.cast_column("image", datasets.Image(decode=False))
    names = {row["path"] for row in stored["image"]}
    for stats in report["sources"].values():
        names |= {entry["image"] for entry in stats["duplicates"]} | {entry["image"] for entry in stats["excluded"]}
    return names


def decoded_files(sources: list[str], names: set[str]) -> tuple[list[str], list[str]]:
    """The raster files the build decodes for the images ``names``: the images, and the masks of mask sources."""
    images, masks = [], []
    for source in sources:
        reader = get_reader(*source.split("=", 1))
        base = source_base(reader.root)
        for item in reader.checked_scan():
            if isinstance(item, Skipped) or f"{reader.name}/{relative_name(item.image_path, base)}" not in names:
                continue
            images.append(str(item.image_path))
            if item.annotation_path is not None and item.annotation_path.suffix.lower() in IMAGE_SUFFIXES:
                masks.append(str(item.annotation_path))
            if "instance_mask" in item.provenance:
                masks.append(item.provenance["instance_mask"])
    return images, masks


def warm_page_cache(sources: list[str]) -> None:
    """Read every file of the sources once, so neither timed side pays for cold reads."""
    for source in sources:
        root = Path(source.split("=", 1)[1])
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                path.read_bytes()


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (worker pools)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(name: str, sources: list[str], work: Path, num_proc: int, repeats: int) -> dict:
    """Median wall and CPU times of the build, of decode-only over the same files and of decode + p-Hash (the
    floor), and the median per-repeat ratios."""
    warm_page_cache(sources)
    times: dict[str, list[float]] = {key: [] for key in ("build", "decode", "floor", "build_cpu", "decode_cpu")}
    for repeat in range(repeats):
        output = work / "corpus"  # replaced by each build
        cpu, start = cpu_seconds(), time.perf_counter()
        report = build_corpus(CorpusConfig(source=sources, output=str(output), num_proc=num_proc, force=True,
                                           seed=repeat))
        times["build"].append(time.perf_counter() - start)
        times["build_cpu"].append(cpu_seconds() - cpu)
        images, masks = decoded_files(sources, candidate_names(output, report))
        cpu = cpu_seconds()
        times["decode"].append(timed_pass([(path, False) for path in images + masks], num_proc))
        times["decode_cpu"].append(cpu_seconds() - cpu)
        times["floor"].append(timed_pass([(path, True) for path in images] + [(path, False) for path in masks],
                                         num_proc))
    ratios = {key: [value / base for value, base in zip(times[key], times[baseline])]
              for key, baseline in (("build", "decode"), ("floor", "decode"), ("build_cpu", "decode_cpu"))}
    return {"name": name, "images": len(images), "files": len(images) + len(masks),
            **{key: statistics.median(values) for key, values in times.items()},
            **{f"{key}_ratio": statistics.median(values) for key, values in ratios.items()},
            "build_ratios": ratios["build"]}


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="real,tiles,large,crops,mix",
                        help="comma-separated subset of real,tiles,large,crops,mix")
    parser.add_argument("--dedup", action="store_true", help="also run benchmark (b), data_pipeline_dedup.py")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        crop_rows = {crop_name(crop): (lambda index=index, crop=crop:
                                       [f"dota={make_crops(work / f'crops-{index}', crop, crop.images)}"])
                     for index, crop in enumerate(CROPS)}
        workloads = {
            "real": {"real": lambda: [f"dota={SHARED / 'dota'}", f"isaid={SHARED / 'isaid'}",
                                      f"dior={SHARED / 'dior'}", f"csv={SHARED / 'neon_trees'}"]},
            "tiles": {"tiles": lambda: [f"dota={make_tiles(work / 'tiles')}"]},
            "large": {"large": lambda: [f"dota={make_large(work / 'large')}"]},
            "crops": crop_rows,
            "mix": {f"mix (the crops kinds in the paper's proportions, 1/{MIX_SCALE})": lambda: [f"dota={make_mix(work / 'mix')}"]},
        }
        chosen = args.workloads.split(",")
        unknown = set(chosen) - set(workloads)
        if unknown:
            parser.error(f"--workloads: unknown {sorted(unknown)}; choose from {sorted(workloads)}")
        results = [run(row, sources(), work, args.num_proc, args.repeats)
                   for name in chosen for row, sources in workloads[name].items()]
    print(f"\nCorpus build vs decode-only ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"num_proc={args.num_proc}, median of {args.repeats} runs, load average before "
          f"{load_before:.1f} after {os.getloadavg()[0]:.1f}; goal: ratio <= 1.5)\n")
    print("| workload | images | files decoded | build s | build img/s | decode-only s | decode img/s "
          "| ratio build/decode (median; per run) | decode + p-Hash / decode | CPU s build / decode-only "
          "| CPU ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['images']} | {r['files']} | {r['build']:.2f} | {r['images'] / r['build']:.1f} "
              f"| {r['decode']:.2f} | {r['images'] / r['decode']:.1f} "
              f"| {r['build_ratio']:.2f}; {', '.join(f'{x:.2f}' for x in r['build_ratios'])} "
              f"| {r['floor_ratio']:.2f} | {r['build_cpu']:.2f} / {r['decode_cpu']:.2f} | {r['build_cpu_ratio']:.2f} |")
    if args.dedup:
        sys.path.insert(0, str(Path(__file__).parent))
        import data_pipeline_dedup

        sys.argv = [sys.argv[0], "--sizes", "10000", "100000"]
        data_pipeline_dedup.main()


if __name__ == "__main__":
    main()
