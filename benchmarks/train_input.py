"""Training input throughput: image-caption pairs/s per DataLoader worker of rclip-hf's input path vs open_clip's
(`image_transform(..., is_train=True)` + `open_clip.tokenize`, as its CsvDataset) on the same files, and the CPU
cores one GPU needs at the goal step rates.

Files: full-size detection scenes (the DOTA and iSAID samples, 0.7-1.5 Mpx PNG) and small scene tiles (RSSCN7,
400 x 400 JPEG), each stored as released and as a `build_corpus --max-side 256` corpus stores it (JPEG q95 4:4:4,
`dataset_builders.corpus.TRAINING_JPEG`). rclip-hf's path is the trainer's own (`CaptionPairDataset` over a
`datasets.Dataset`, `EpochShuffleSampler`, `PairCollator`): undecoded bytes, crop drawn on the header size, JPEG
decoded at reduced size when the crop allows and otherwise by TorchCodec (as PNG), flip and rotation, uint8 out,
one fast-tokenizer call per batch (normalisation happens on the GPU). open_clip's decodes in full with PIL, crops,
converts to float and normalises in the worker. Per core: each pipeline runs in this process (what one worker does) and is timed in CPU seconds, which
other load on a shared machine barely changes; cores needed = goal rate / pairs per CPU-second. Then DataLoader
workers (`--workers`, wall clock, persistent, `--samples` pairs per worker and pass) show the scaling. Each configuration runs `--epochs` timed passes
over `--samples` pairs after a warm-up pass, interleaved with the other pipeline; the tables give medians. `--profile` prints where one rclip-hf worker spends its time (cProfile,
in-process).

    python benchmarks/train_input.py --samples 192 --workers 1 2
    python benchmarks/train_input.py --workers $(nproc) --samples 4096      # on a GPU host: all cores
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import datasets
import open_clip
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]

import rclip_hf
from dataset_builders.corpus import TRAINING_JPEG, fit_max_side
from rclip_hf.arguments import ArgumentParser
from training_scripts.training.augment import TrainAugmentation
from training_scripts.training.data import CaptionPairDataset, EpochShuffleSampler, PairCollator

#: goal step rates on one GPU (pairs/s): the issue's targets
GOALS = {"ViT-B/32": 8000, "ViT-L/14": 750}
CAPTION = "There are 3 planes in the middle of the picture, next to a storage tank."
IMAGE_SETS = {"full-size scenes (DOTA, iSAID)": ("dota/images/*.png", "isaid/*/images/P000?.png"),
              "small tiles (RSSCN7 400 px)": ("rsscn7/*/*.jpg",)}


def image_files(data: Path, patterns: tuple[str, ...], limit: int) -> list[bytes]:
    """The released bytes of at most `limit` files matching `patterns` (spread over RSSCN7's classes)."""
    paths = sorted(path for pattern in patterns for path in data.glob(pattern))
    step = max(1, len(paths) // limit)
    return [path.read_bytes() for path in paths[::step][:limit]]


def at_max_side(files: list[bytes], max_side: int) -> list[bytes]:
    """The files as `build_corpus --max-side` stores them."""
    stored = []
    for data in files:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        if max(image.size) <= max_side:
            stored.append(data)
            continue
        buffer = io.BytesIO()
        fit_max_side(image, max_side).save(buffer, **TRAINING_JPEG)
        stored.append(buffer.getvalue())
    return stored


class OpenClipPairs(torch.utils.data.Dataset):
    """open_clip's training sample: full decode, `image_transform(is_train=True)`, `tokenize` of the caption."""

    def __init__(self, files: list[bytes], samples: int, size: int):
        self.files, self.samples = files, samples
        self.transform = open_clip.image_transform(size, is_train=True)

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.open(io.BytesIO(self.files[index % len(self.files)]))
        return self.transform(image), open_clip.tokenize([CAPTION])[0]


def rclip_loader(files: list[bytes], samples: int, size: int, workers: int, batch: int) -> torch.utils.data.DataLoader:
    """The trainer's DataLoader over a `datasets.Dataset` of `samples` rows cycling over `files`."""
    rows = {"image": [{"bytes": files[i % len(files)], "path": f"{i}.img"} for i in range(samples)],
            "captions": [[CAPTION]] * samples}
    corpus = datasets.Dataset.from_dict(rows, features=datasets.Features(
        {"image": datasets.Image(), "captions": datasets.List(datasets.Value("string"))}))
    pairs = CaptionPairDataset(corpus, TrainAugmentation(size=size), seed=0)
    return torch.utils.data.DataLoader(pairs, batch_size=batch, sampler=EpochShuffleSampler(samples, 0),
                                       collate_fn=PairCollator(rclip_hf.build_tokenizer()), num_workers=workers,
                                       persistent_workers=workers > 0, drop_last=True)


def open_clip_loader(files: list[bytes], samples: int, size: int, workers: int, batch: int
                     ) -> torch.utils.data.DataLoader:
    """open_clip's DataLoader (shuffled, default collate) over the same files."""
    return torch.utils.data.DataLoader(OpenClipPairs(files, samples, size), batch_size=batch, shuffle=True,
                                       num_workers=workers, persistent_workers=workers > 0, drop_last=True)


def epoch_seconds(loader: torch.utils.data.DataLoader, epoch: int, clock=time.perf_counter) -> float:
    """Seconds of `clock` for one pass over the loader (`time.process_time`: CPU seconds of this process)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    start = clock()
    for _ in loader:
        pass
    return clock() - start


def interleaved(loaders: dict[str, torch.utils.data.DataLoader], epochs: int, clock=time.perf_counter
                ) -> dict[str, list[float]]:
    """Per-pass seconds of each loader after a warm-up pass, passes interleaved (A B, B A, ...)."""
    for loader in loaders.values():
        epoch_seconds(loader, 0, clock)
    seconds: dict[str, list[float]] = {name: [] for name in loaders}
    for epoch in range(1, epochs + 1):
        for name in (loaders if epoch % 2 else reversed(list(loaders))):
            seconds[name].append(epoch_seconds(loaders[name], epoch, clock))
    return seconds


def profile_worker(files: list[bytes], size: int, samples: int, rows: int) -> None:
    """cProfile of rclip-hf's per-sample work plus collation, in this process (what one worker runs)."""
    loader = rclip_loader(files, samples, size, 0, 32)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in loader:
        pass
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(rows)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--samples", type=int, default=192, help="pairs per pass (and per worker)")
    parser.add_argument("--files", type=int, default=14, help="distinct files per image set")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per configuration")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224, help="training crop size (ViT-B/32, ViT-L/14: 224)")
    parser.add_argument("--max-side", "--max_side", type=int, default=256)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest functions")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker

    pairs = args.samples // args.batch_size * args.batch_size
    per_core, scaling = [], []  # (image set, storage, ours, open_clip, ratio) / (... , workers, ...)
    for set_name, patterns in IMAGE_SETS.items():
        released = image_files(args.data, patterns, args.files)
        for storage, files in (("as released", released), (f"--max-side {args.max_side}",
                                                            at_max_side(released, args.max_side))):
            builders = {"ours": rclip_loader, "open_clip": open_clip_loader}
            # per core: the work of one worker, run in this process and timed in CPU seconds (robust to other load)
            seconds = interleaved({name: build(files, args.samples, args.size, 0, args.batch_size)
                                   for name, build in builders.items()}, args.epochs, time.process_time)
            per_core.append((set_name, storage, pairs / statistics.median(seconds["ours"]),
                             pairs / statistics.median(seconds["open_clip"]),
                             statistics.median(b / a for a, b in zip(seconds["ours"], seconds["open_clip"]))))
            for workers in args.workers:  # DataLoader workers, wall clock: `--samples` pairs per worker and pass
                seconds = interleaved({name: build(files, args.samples * workers, args.size, workers, args.batch_size)
                                       for name, build in builders.items()}, args.epochs)
                scaling.append((set_name, storage, workers, pairs * workers / statistics.median(seconds["ours"]),
                                pairs * workers / statistics.median(seconds["open_clip"])))
            print(f"done: {set_name}, {storage}", file=sys.stderr, flush=True)

    print(f"{args.samples} pairs per pass, {args.epochs} timed passes after a warm-up (medians), batch "
          f"{args.batch_size}, crop {args.size} px, 1 thread per process; {len(os.sched_getaffinity(0))} cores "
          "visible\n")
    goal_cols = " | ".join(f"cores for {name} at {rate:,} pairs/s (ours / open_clip)" for name, rate in GOALS.items())
    print("Per core: one worker's work in this process, pairs per CPU-second\n")
    print(f"| images | storage | ours | open_clip | ours / open_clip | {goal_cols} |")
    print("|---|---|---|---|---|" + "---|" * len(GOALS))
    for set_name, storage, ours, theirs, ratio in per_core:
        cores = " | ".join(f"{rate / ours:.1f} / {rate / theirs:.1f}" for rate in GOALS.values())
        print(f"| {set_name} | {storage} | {ours:.0f} | {theirs:.0f} | {ratio:.2f}x | {cores} |")
    print("\nDataLoader workers: pairs/s (wall clock) per worker; on a shared machine this is bounded by the free "
          "cores\n")
    print("| images | storage | workers | ours pairs/s/worker | open_clip pairs/s/worker |")
    print("|---|---|---|---|---|")
    for set_name, storage, workers, ours, theirs in scaling:
        print(f"| {set_name} | {storage} | {workers} | {ours / workers:.0f} | {theirs / workers:.0f} |")
    if args.profile:
        for set_name, patterns in IMAGE_SETS.items():
            files = at_max_side(image_files(args.data, patterns, args.files), args.max_side)
            print(f"\n### profile: rclip-hf worker, {set_name}, --max-side {args.max_side}\n")
            profile_worker(files, args.size, args.samples, args.profile)


if __name__ == "__main__":
    main()
