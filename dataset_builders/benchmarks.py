"""Benchmark datasets as Hugging Face folders: retrieval test splits from Karpathy-style caption JSON (RSITMD,
RSICD, UCM-captions) and classification sets from folder-per-class layouts (contract names in CONTRACTS §2).

Images are stored like the corpus does (original bytes for 8-bit RGB JPEG/PNG, lossless PNG otherwise, e.g.
the UC Merced TIFFs). Unreadable images are left out and listed in ``build_report.json`` beside the data.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from tqdm.auto import tqdm

from dataset_builders.hf_folder import REPORT_NAME, card_text, write_dataset_folder
from dataset_builders.sources.captions import find_caption_json, find_image_dir, load_karpathy_json
from dataset_builders.sources.images import image_cell
from rclip_hf.images import IMAGE_SUFFIXES, ImageReadError, image_files

logger = logging.getLogger(__name__)

RETRIEVAL_NAMES = ("rsitmd", "rsicd", "ucm")
CLASSIFICATION_NAMES = ("eurosat", "ucmerced", "aid", "resisc45", "rsi_cb128", "rsi_cb256", "whu_earth", "mlrsnet",
                        "patternnet", "rs2800", "optimal31", "rsc11", "whu_rs19", "rsscn7", "aid150")
RETRIEVAL_FEATURES = datasets.Features({"image": datasets.Image(), "captions": datasets.List(datasets.Value("string")),
                                        "filename": datasets.Value("string")})


def _check_name(name: str, known: tuple[str, ...]) -> None:
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"benchmark name {name!r} must be lower-case letters, digits and '_' (known: {', '.join(known)})")
    if name not in known:
        logger.warning("benchmark name %r is not one of the known names %s", name, known)


def _rows(entries: list[tuple[Path, dict[str, Any]]], skipped: list[dict[str, str]], desc: str) -> Iterator[dict[str, Any]]:
    """Rows with the image cell added; unreadable images are recorded in ``skipped`` and left out."""
    for path, row in tqdm(entries, desc=desc, unit="img"):
        try:
            yield {"image": image_cell(path, row["filename"]), **row}
        except ImageReadError as error:
            skipped.append({"path": str(path), "reason": str(error)})


def build_retrieval(source: Path, output: Path, name: str) -> dict[str, Any]:
    """Retrieval test split (``split == "test"``) of a Karpathy-style JSON: one row per image with its captions
    (``sentences[].raw`` in file order). ``source`` is the JSON or its folder. Returns the build report."""
    _check_name(name, RETRIEVAL_NAMES)
    json_path = find_caption_json(Path(source))
    image_dir = find_image_dir(json_path, None)
    entries, skipped = [], []
    for index, entry in enumerate(load_karpathy_json(json_path)):
        if entry.get("split") != "test":
            continue
        filename = entry.get("filename")
        captions = [s.get("raw", "").strip() for s in entry.get("sentences", []) if isinstance(s, dict)]
        captions = [caption for caption in captions if caption]
        where = f"{json_path}#images[{index}]"
        if not isinstance(filename, str) or not (image_dir / filename).is_file():
            skipped.append({"path": where, "reason": f"image {filename!r} not found in {image_dir}"})
        elif not captions:
            skipped.append({"path": where, "reason": f"{filename}: no non-empty caption"})
        else:
            entries.append((image_dir / filename, {"captions": captions, "filename": filename}))
    if not entries:
        raise ValueError(f"{json_path}: no usable image with split == 'test'")

    def card(counts: dict[str, int], metadata: dict[str, Any]) -> str:
        body = (f"# {name} retrieval benchmark (test split)\n\nBuilt by `python -m dataset_builders.build_benchmarks` "
                f"from `{json_path.name}` (Karpathy format): the images with `split == \"test\"`, one row per image with "
                f"its captions in file order (`sentences[].raw`). Rows: {counts['test']} images, "
                f"{sum(len(row['captions']) for _, row in entries)} captions. Skipped: {len(skipped)} (see "
                f"`{REPORT_NAME}`). Licence: as the original dataset (academic research use).\n")
        return card_text({"license": "other", "task_categories": ["image-to-text", "text-to-image"],
                          "tags": ["remote-sensing", "retrieval"], **metadata}, body)

    report: dict[str, Any] = {"name": name, "source": str(json_path), "skipped": skipped}
    report["rows"] = write_dataset_folder(Path(output), RETRIEVAL_FEATURES, {"test": _rows(entries, skipped, name)},
                                          card, lambda counts: {**report, "rows": counts})
    return report


def find_class_root(root: Path) -> Path:
    """Descend through wrapper folders (one sub-folder and no images, e.g. EuroSAT ``2750/``, UC Merced
    ``Images/``) to the folder whose sub-folders are the classes."""
    current = Path(root)
    while True:
        children = sorted(path for path in current.iterdir() if path.is_dir() and not path.name.startswith("."))
        if len(children) == 1 and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in current.iterdir()):
            current = children[0]
            continue
        if not children:
            raise FileNotFoundError(f"{root}: no class folders (expected <root>/<class>/<image>)")
        return current


def class_images(root: Path) -> dict[str, list[Path]]:
    """Images per class folder name (sorted), from a folder-per-class layout."""
    class_root = find_class_root(root)
    images = {folder.name: image_files(folder)
              for folder in sorted(class_root.iterdir()) if folder.is_dir() and not folder.name.startswith(".")}
    empty = [name for name, paths in images.items() if not paths]
    if empty:
        raise ValueError(f"{class_root}: class folder(s) without images: {empty}")
    return images


def stratified_split(per_class: dict[str, list[Path]], test_fraction: float, seed: int) -> dict[str, dict[str, list[Path]]]:
    """Seeded per-class split: round(test_fraction * n) images of each class go to ``test`` (at least one)."""
    splits: dict[str, dict[str, list[Path]]] = {"train": {}, "test": {}}
    for label, paths in per_class.items():
        shuffled = list(paths)
        random.Random(f"{seed}:{label}").shuffle(shuffled)
        n_test = max(1, round(test_fraction * len(shuffled)))
        splits["test"][label] = sorted(shuffled[:n_test])
        splits["train"][label] = sorted(shuffled[n_test:])
    return splits


def build_classification(source: Path, output: Path, name: str, test_fraction: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Classification set from a folder-per-class layout: ``label`` is a ClassLabel of the folder names (sorted).
    A source with ``train/`` and ``test/`` folders keeps them; otherwise a seeded stratified split puts
    ``test_fraction`` of each class in ``test`` (1.0: everything in ``test``, no ``train``)."""
    _check_name(name, CLASSIFICATION_NAMES)
    source = Path(source)
    if not 0.0 < test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in (0, 1], got {test_fraction}")
    if (source / "train").is_dir() and (source / "test").is_dir():
        splits = {split: class_images(source / split) for split in ("train", "test")}
        if list(splits["train"]) != list(splits["test"]):
            raise ValueError(f"{source}: train and test class folders differ: {list(splits['train'])} vs {list(splits['test'])}")
        how = "the source's own train/test folders"
    elif test_fraction == 1.0:
        splits = {"test": class_images(source)}
        how = "all images in `test` (no train split)"
    else:
        splits = stratified_split(class_images(source), test_fraction, seed)
        how = f"a seeded (seed {seed}) stratified split: {test_fraction:g} of each class in `test`, the rest in `train`"
    names = list(splits["test"])
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names),
                                  "filename": datasets.Value("string")})
    skipped: list[dict[str, str]] = []
    rows = {}
    for split in ("train", "test"):
        if split in splits:
            entries = [(path, {"label": label_index, "filename": f"{label}/{path.name}"})
                       for label_index, label in enumerate(names) for path in splits[split][label]]
            rows[split] = _rows(entries, skipped, f"{name}/{split}")

    def card(counts: dict[str, int], metadata: dict[str, Any]) -> str:
        body = (f"# {name} scene classification\n\nBuilt by `python -m dataset_builders.build_benchmarks` from the "
                f"folder-per-class layout at `{source.name}`. `label` is a ClassLabel of the {len(names)} folder names "
                f"(sorted); `filename` is `<class folder>/<file>`. Splits: {how}. Rows: "
                + ", ".join(f"{split} {count}" for split, count in counts.items())
                + f". Skipped images: {len(skipped)} (see `{REPORT_NAME}`). Licence: as the original dataset.\n")
        return card_text({"license": "other", "task_categories": ["image-classification"],
                          "tags": ["remote-sensing", "zero-shot-classification"], **metadata}, body)

    report: dict[str, Any] = {"name": name, "source": str(source), "splits": how, "classes": names, "skipped": skipped}
    report["rows"] = write_dataset_folder(Path(output), features, rows, card, lambda counts: {**report, "rows": counts})
    return report

