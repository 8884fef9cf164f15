"""Which format stores a training-resolution corpus (`build_corpus --max-side PX`): file size, decode time and
fidelity of each candidate on real remote-sensing images resized to PX on the longer side.

Candidates: JPEG quality 95 with 4:2:0 and 4:4:4 chroma, WebP quality 95 and lossless, PNG. Each is decoded
`--repeats` times in one process, interleaved over formats; the table gives the median decode time per image, the
total size, the PSNR against the resized original (lossless: inf) and both ratios to PNG measured in the same run.

    python benchmarks/corpus_format.py --max-side 256 --data ../shared/data
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from rclip_hf.arguments import ArgumentParser

#: (name, PIL format, save options)
CANDIDATES = (
    ("JPEG q95 4:2:0", "JPEG", {"quality": 95}),
    ("JPEG q95 4:4:4", "JPEG", {"quality": 95, "subsampling": 0}),
    ("WebP q95", "WEBP", {"quality": 95, "method": 4}),
    ("WebP lossless", "WEBP", {"lossless": True, "method": 4}),
    ("PNG", "PNG", {"optimize": False}),
)
#: full-size detection scenes and small scene tiles of the shared samples
IMAGE_GLOBS = ("dota/images/*.png", "isaid/*/images/P000?.png", "dior/JPEGImages/*.jpg", "neon_trees/*.png",
               "rsscn7/*/*.jpg")


def training_images(data: Path, max_side: int, tiles_per_class: int = 2) -> list[Image.Image]:
    """The shared samples (at most `tiles_per_class` RSSCN7 tiles per class) resized to `max_side` (Lanczos)."""
    paths = []
    for pattern in IMAGE_GLOBS:
        found = sorted(data.glob(pattern))
        if pattern.startswith("rsscn7"):
            by_class: dict[str, list[Path]] = {}
            for path in found:
                by_class.setdefault(path.parent.name, []).append(path)
            found = [path for group in by_class.values() for path in group[:tiles_per_class]]
        paths.extend(found)
    images = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        scale = min(1.0, max_side / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        images.append(image.resize(size, Image.Resampling.LANCZOS) if scale < 1 else image)
    return images


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--max-side", "--max_side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    images = training_images(args.data, args.max_side)
    encoded = {}
    for name, fmt, options in CANDIDATES:
        files = []
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, fmt, **options)
            files.append(buffer.getvalue())
        encoded[name] = files
    seconds: dict[str, list[float]] = {name: [] for name in encoded}
    for repeat in range(args.repeats):
        order = list(encoded) if repeat % 2 == 0 else list(reversed(encoded))
        for name in order:
            start = time.perf_counter()
            for data in encoded[name]:
                Image.open(io.BytesIO(data)).convert("RGB").load()
            seconds[name].append((time.perf_counter() - start) / len(images))
    originals = [np.asarray(image) for image in images]
    fidelity = {name: min(psnr(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), original)
                          for data, original in zip(files, originals)) for name, files in encoded.items()}
    png_seconds, png_bytes = statistics.median(seconds["PNG"]), sum(map(len, encoded["PNG"]))
    print(f"{len(images)} images (DOTA, iSAID, DIOR, NEON scenes and RSSCN7 tiles) resized to longer side "
          f"{args.max_side}; decode median of {args.repeats} interleaved repeats, 1 process\n")
    print("| format | ms / image (decode) | KiB / image | min PSNR dB | decode vs PNG | size vs PNG |")
    print("|---|---|---|---|---|---|")
    for name, files in encoded.items():
        median = statistics.median(seconds[name])
        total = sum(map(len, files))
        print(f"| {name} | {median * 1e3:.2f} | {total / len(files) / 1024:.1f} | {fidelity[name]:.1f} "
              f"| {median / png_seconds:.2f}x | {total / png_bytes:.2f}x |")


if __name__ == "__main__":
    main()
