"""RemoteCount (the RemoteCLIP object-counting benchmark) as a Hugging Face folder.

Two ways in:
- ``from_dota``: rebuild it from DOTA-format annotations (``DIR/images`` + ``DIR/labelTxt``, read with the
  ``dota`` source reader, so clipped or malformed lines are handled the same way): one sample per (image,
  category) whose category is one of the 13 RemoteCount categories and has 1 to 10 instances in the image;
  the caption states the count as a word ("There are three planes in the image.", singular for one), its
  phrasing picked by a seeded RNG (deterministic per image, category and seed).
- ``from_release``: a copy of the official release. Accepted layout (documented here because the release
  itself is not available to this project): a folder with the images (directly or under ``images/``) and one
  annotation file, ``*.json`` (a list of objects) or ``*.jsonl`` (one object per line), each object with the
  image file name (``image``, ``file_name`` or ``filename``) and ``caption``; ``count`` (1..10) and
  ``category`` are optional and are read from the caption when missing (the first number word or digit, the
  first category name mentioned).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from dataset_builders.b2c import normalize_class_name
from dataset_builders.hf_folder import LICENSE_NAME, card_text, licence_text, write_dataset_folder
from dataset_builders.records import Record
from dataset_builders.sources import read_source
from dataset_builders.sources.base import path_inside, read_annotation_text, read_json_file
from dataset_builders.sources.dota import DotaReader
from dataset_builders.sources.images import image_cell
from rclip_hf.benchmark_registry import BENCHMARKS
from rclip_hf.images import ImageReadError
from rclip_hf.progress import progress_bar
from rclip_hf.prompts import COUNT_WORDS, COUNTING_TEMPLATES, counting_caption

logger = logging.getLogger(__name__)

CATEGORIES = ("plane", "helicopter", "roundabout", "bridge", "baseball diamond", "ground track field",
              "basketball court", "tennis court", "harbor", "soccer field", "swimming pool", "ship", "storage tank")
#: DOTA names whose normalised form differs from the RemoteCount category
RENAMES = {"soccer ball field": "soccer field"}
#: RemoteCount's citation (the registry's) and that of the DOTA images it is built from.
CITATIONS = (f"{BENCHMARKS['remotecount'].citation} (RemoteCount)", DotaReader.citation)
FEATURES = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                              "count": datasets.Value("int64"), "category": datasets.Value("string")})


def category_of(label: str) -> str | None:
    """The RemoteCount category of a DOTA class name, or None when it is not one of the 13."""
    name = normalize_class_name(label)
    name = RENAMES.get(name, name)
    return name if name in CATEGORIES else None


def count_caption(category: str, count: int, rng: random.Random) -> str:
    """A caption stating ``count`` (1..10) ``category`` objects, the number as a word, in a phrasing of
    ``rclip_hf.prompts.COUNTING_TEMPLATES`` drawn from ``rng``."""
    return counting_caption(category, count, rng.randrange(len(COUNTING_TEMPLATES)))


def samples_from_records(records: list[Record], seed: int) -> list[tuple[Path, dict[str, Any]]]:
    """(image path, row without image) per (image, category) with 1..10 instances, in image then category order."""
    samples = []
    for record in records:
        counts = Counter(category for category in map(category_of, (box.label for box in record.boxes)) if category)
        for category in sorted(counts, key=CATEGORIES.index):
            if 1 <= counts[category] <= len(COUNT_WORDS):
                rng = random.Random(f"{seed}:{record.image_path.name}:{category}")
                samples.append((record.image_path, {"caption": count_caption(category, counts[category], rng),
                                                    "count": counts[category], "category": category}))
    return samples


def parse_caption(caption: str, where: str) -> tuple[int, str]:
    """(count, category) stated by a caption; ValueError naming ``where`` when either is missing."""
    lowered = caption.lower()
    match = re.search(r"\b(" + "|".join(COUNT_WORDS) + r"|10|[1-9])\b", lowered)
    categories = [c for c in sorted(CATEGORIES, key=len, reverse=True) if re.search(rf"\b{c}", lowered)]
    if match is None or not categories:
        raise ValueError(f"{where}: caption {caption!r} states no count 1..10 or no RemoteCount category")
    token = match.group(1)
    return (int(token) if token.isdigit() else COUNT_WORDS.index(token) + 1), categories[0]


def _release_entries(path: Path) -> list[tuple[str, Any]]:
    """(where, entry) of a release annotation file: ``FILE:LINE`` per JSONL line, ``FILE#[i]`` per JSON item."""
    text, note = read_annotation_text(path)
    if note is not None:
        logger.warning("%s: %s", path, note)
    if path.suffix != ".jsonl":
        entries, _ = read_json_file(path)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a JSON list of objects, got {type(entries).__name__}")
        return [(f"{path}#[{index}]", entry) for index, entry in enumerate(entries)]
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                found.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON: {error.msg} (column {error.colno})") from None
    return found


def release_samples(root: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[dict[str, str]]]:
    """(samples, skipped rows) of the official release in the layout of the module docstring; a row whose image
    path leaves the image folder is skipped and recorded (file, line, path)."""
    files = sorted(root.glob("*.json")) + sorted(root.glob("*.jsonl"))
    if len(files) != 1:
        raise FileNotFoundError(f"{root}: expected one *.json or *.jsonl annotation file, found {[f.name for f in files]}")
    image_dir = root / "images" if (root / "images").is_dir() else root
    samples, skipped = [], []
    for where, entry in _release_entries(files[0]):
        name = next((entry[key] for key in ("image", "file_name", "filename") if key in entry), None) \
            if isinstance(entry, dict) else None
        if not isinstance(name, str) or "caption" not in entry:
            raise ValueError(f"{where}: entry needs an image name ('image'/'file_name'/'filename') and 'caption'")
        image = path_inside(image_dir, name)
        if image is None:
            skipped.append({"path": where, "reason": f"image path {name!r} leaves the image folder {image_dir}"})
            continue
        count, category = parse_caption(entry["caption"], where)
        count, category = int(entry.get("count", count)), entry.get("category", category)
        if category not in CATEGORIES or not 1 <= count <= 10:
            raise ValueError(f"{where}: category {category!r} / count {count} outside the 13 categories / 1..10")
        samples.append((image, {"caption": entry["caption"], "count": count, "category": category}))
    return samples, skipped


def write_remotecount(samples: list[tuple[Path, dict[str, Any]]], output: Path, origin: str,
                      reader_skipped: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the samples as the ``remotecount`` HF folder (split ``test``); returns the build report (also
    written beside the data, with the reader's skips when given)."""
    skipped: list[dict[str, str]] = []

    def rows() -> Iterator[dict[str, Any]]:
        for path, row in progress_bar(samples, desc="remotecount", unit="img"):
            try:
                yield {"image": image_cell(path, path.name), **row}
            except (ImageReadError, FileNotFoundError) as error:
                skipped.append({"path": str(path), "reason": str(error)})

    def card(counts: dict[str, int], metadata: dict[str, Any]) -> str:
        per_count = Counter(row["count"] for _, row in samples)
        per_category = Counter(row["category"] for _, row in samples)
        body = (f"# RemoteCount\n\nObject-counting benchmark of RemoteCLIP (13 categories, counts 1-10), {origin}. "
                f"Columns: `image`, `caption` (states the count as a word or digits), `count` (1..10), `category`. "
                f"Split `test`: {counts['test']} samples (skipped: {len(skipped)}, see `build_report.json`).\n\n"
                "Samples per count: " + ", ".join(f"{n}: {per_count[n]}" for n in range(1, 11)) + ".\n\n"
                "Samples per category: " + ", ".join(f"{c}: {per_category[c]}" for c in CATEGORIES) + ".\n\n"
                f"Licence: as DOTA (academic research use only; `{LICENSE_NAME}`).\n\n## Citation\n\n"
                + "\n\n".join(f"{citation}." for citation in CITATIONS) + "\n")
        return card_text({"pretty_name": "RemoteCount", "license": "other", "license_name": "dota-terms",
                          "license_link": LICENSE_NAME, "task_categories": ["zero-shot-image-classification"],
                          "tags": ["remote-sensing", "counting", "remoteclip"], **metadata}, body)

    report: dict[str, Any] = {"origin": origin, "skipped": skipped}
    if reader_skipped is not None:
        report["reader_skipped"] = reader_skipped
    licence = licence_text("RemoteCount", [("DOTA (the images)", ("academic research use only "
                                                                 "(https://captain-whu.github.io/DOTA/)"), CITATIONS[1]),
                                           ("RemoteCount (the captions)", "as RemoteCLIP's release", CITATIONS[0])])
    report["rows"] = write_dataset_folder(Path(output), FEATURES, {"test": rows()}, card,
                                          lambda counts: {**report, "rows": counts}, licence=licence)
    return report


def from_dota(dota_root: Path, output: Path, seed: int = 0) -> dict[str, Any]:
    """Rebuild RemoteCount from DOTA-format annotations; the reader's skips are added to the report."""
    records, reader_skipped = read_source("dota", dota_root)
    samples = samples_from_records(records, seed)
    if not samples:
        raise ValueError(f"{dota_root}: no image has 1..10 instances of a RemoteCount category")
    return write_remotecount(samples, output, f"rebuilt from the DOTA-format annotations at `{Path(dota_root).name}` "
                                              f"(seed {seed}; one sample per image and category with 1-10 instances)",
                             [{"path": s.path, "reason": s.reason, "line": s.line} for s in reader_skipped])


def from_release(root: Path, output: Path) -> dict[str, Any]:
    """Convert a copy of the official release (layout in the module docstring); rows skipped while reading the
    annotation file are in the report's ``reader_skipped``."""
    samples, reader_skipped = release_samples(Path(root))
    return write_remotecount(samples, output, f"converted from the official release at `{Path(root).name}`",
                             reader_skipped)
