"""Benchmark datasets as Hugging Face folders: retrieval test splits from Karpathy-style caption JSON (RSITMD,
RSICD, UCM-captions) and classification sets from folder-per-class layouts, named as in `rclip_hf.benchmark_registry`.

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

from dataset_builders.hf_folder import (
    LICENSE_NAME,
    REPORT_NAME,
    card_text,
    licence_text,
    write_dataset_folder,
)
from dataset_builders.sources.base import path_inside
from dataset_builders.sources.captions import find_caption_json, find_image_dir, load_karpathy_json
from dataset_builders.sources.images import image_cell
from rclip_hf.benchmark_registry import BENCHMARKS, names_for
from rclip_hf.images import IMAGE_SUFFIXES, ImageReadError, image_files
from rclip_hf.progress import progress_bar

logger = logging.getLogger(__name__)

RETRIEVAL_NAMES = names_for("retrieval")
CLASSIFICATION_NAMES = names_for("zero_shot_classification")
#: ``<name>-<split>.txt`` prefixes of published split lists whose name differs from the benchmark's (torchgeo's).
SPLIT_FILE_PREFIXES = {"ucmerced": "uc_merced"}
#: Split-list names -> the dataset split they fill.
SPLIT_FILE_SPLITS = {"train": "train", "val": "validation", "test": "test"}
RETRIEVAL_FEATURES = datasets.Features({"image": datasets.Image(), "captions": datasets.List(datasets.Value("string")),
                                        "filename": datasets.Value("string")})


def _check_name(name: str, known: tuple[str, ...]) -> None:
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"benchmark name {name!r} must be lower-case letters, digits and '_' (known: {', '.join(known)})")
    if name not in known:
        logger.warning("benchmark name %r is not one of the known names %s", name, known)


def _rows(entries: list[tuple[Path, dict[str, Any]]], skipped: list[dict[str, str]], desc: str) -> Iterator[dict[str, Any]]:
    """Rows with the image cell added; unreadable images are recorded in ``skipped`` and left out."""
    for path, row in progress_bar(entries, desc=desc, unit="img"):
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
        image = path_inside(image_dir, filename) if isinstance(filename, str) else None
        if image is None:
            skipped.append({"path": where, "reason": f"image path {filename!r} missing or leaving {image_dir}"})
        elif not image.is_file():
            skipped.append({"path": where, "reason": f"image {filename!r} not found in {image_dir}"})
        elif not captions:
            skipped.append({"path": where, "reason": f"{filename}: no non-empty caption"})
        else:
            entries.append((image, {"captions": captions, "filename": filename}))
    if not entries:
        raise ValueError(f"{json_path}: no usable image with split == 'test'")

    def card(counts: dict[str, int], metadata: dict[str, Any]) -> str:
        body = (f"# {_full_name(name)} retrieval benchmark (test split)\n\nBuilt by `python -m dataset_builders.build_benchmarks` "
                f"from `{json_path.name}` (Karpathy format): the images with `split == \"test\"`, one row per image with "
                f"its captions in file order (`sentences[].raw`). Rows: {counts['test']} images, "
                f"{sum(len(row['captions']) for _, row in entries)} captions. Skipped: {len(skipped)} (see "
                f"`{REPORT_NAME}`). Licence: as the original dataset (`{LICENSE_NAME}`).\n" + _citation(name))
        fields = _card_fields(name, ["image-to-text", "text-retrieval"], ["image-captioning"])
        return card_text({**fields, "tags": ["remote-sensing", "retrieval", "image-text-retrieval"], **metadata}, body)

    report: dict[str, Any] = {"name": name, "source": str(json_path), "skipped": skipped}
    report["rows"] = write_dataset_folder(Path(output), RETRIEVAL_FEATURES, {"test": _rows(entries, skipped, name)},
                                          card, lambda counts: {**report, "rows": counts}, licence=_licence(name))
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


def splits_by_fraction(per_class: dict[str, list[Path]], test_fraction: float, seed: int) -> dict[str, dict[str, list[Path]]]:
    """Seeded per-class split: round(test_fraction * n) images of each class go to ``test`` (at least one)."""
    splits: dict[str, dict[str, list[Path]]] = {"train": {}, "test": {}}
    for label, paths in per_class.items():
        shuffled = list(paths)
        random.Random(f"{seed}:{label}").shuffle(shuffled)
        n_test = max(1, round(test_fraction * len(shuffled)))
        splits["test"][label] = sorted(shuffled[:n_test])
        splits["train"][label] = sorted(shuffled[n_test:])
    return splits


def split_lists(split_dir: Path, name: str) -> dict[str, Path]:
    """The published split lists of benchmark ``name`` in ``split_dir``, by dataset split: the files
    ``<prefix>-train.txt``, ``<prefix>-val.txt`` (-> ``validation``) and ``<prefix>-test.txt`` that exist, as
    torchgeo names them (prefix: the benchmark name, ``uc_merced`` for ucmerced)."""
    prefix = SPLIT_FILE_PREFIXES.get(name, name)
    lists = {split: Path(split_dir) / f"{prefix}-{stem}.txt" for stem, split in SPLIT_FILE_SPLITS.items()}
    return {split: path for split, path in lists.items() if path.is_file()}


def splits_from_lists(per_class: dict[str, list[Path]], lists: dict[str, Path]
                      ) -> tuple[dict[str, dict[str, list[Path]]], list[str]]:
    """(images per split and class, images of the source in no list) from split lists of one image file name
    per line, as torchgeo reads them. A line matches an image by file name (``agricultural00.tif``), by
    ``<class>/<file name>``, or by name without extension (the EuroSAT lists name ``.jpg`` files that other
    releases store as ``.tif``). ValueError with file and line for a name that is not in the source or is
    listed twice."""
    index: dict[str, list[tuple[str, Path]]] = {}
    for label, paths in per_class.items():
        for path in paths:
            for key in {path.name, f"{label}/{path.name}", path.stem}:
                index.setdefault(key, []).append((label, path))
    splits: dict[str, dict[str, list[Path]]] = {split: {label: [] for label in per_class} for split in lists}
    seen: dict[Path, str] = {}
    for split, list_path in lists.items():
        for number, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
            entry = line.strip()
            if not entry:
                continue
            where = f"{list_path}:{number}"
            matches = index.get(entry) or index.get(Path(entry).stem, [])
            if len(matches) != 1:
                problem = ("is not an image of the source" if not matches else
                           f"matches {len(matches)} images ({', '.join(f'{m[0]}/{m[1].name}' for m in matches)})")
                raise ValueError(f"{where}: {entry!r} {problem}; fix the split list or the --classification folder")
            label, path = matches[0]
            if path in seen:
                raise ValueError(f"{where}: {entry!r} is already listed at {seen[path]}")
            seen[path] = where
            splits[split][label].append(path)
    unlisted = [f"{label}/{path.name}" for label, paths in per_class.items() for path in paths if path not in seen]
    return {split: {label: sorted(paths) for label, paths in classes.items()} for split, classes in splits.items()}, unlisted


def _full_name(name: str) -> str:
    """The dataset's own name, as its Hub card shows it (from `rclip_hf.benchmark_registry`; an unknown name as it is)."""
    return BENCHMARKS[name].full_name if name in BENCHMARKS else name


def _citation_of(name: str) -> str:
    """The source's citation (from `rclip_hf.benchmark_registry`; empty for an unknown name)."""
    return BENCHMARKS[name].citation if name in BENCHMARKS else ""


def _card_fields(name: str, task_categories: list[str], task_ids: list[str]) -> dict[str, Any]:
    """The Hub metadata of a benchmark card that does not come from its data."""
    return {"pretty_name": _full_name(name), "license": "other",
            "license_name": f"{name.replace('_', '-')}-terms", "license_link": LICENSE_NAME,
            "task_categories": task_categories, "task_ids": task_ids}


def _licence(name: str) -> str:
    """LICENSE.md of a benchmark: the original release's terms and its citation."""
    pretty, citation = _full_name(name), _citation_of(name)
    return licence_text(pretty, [(pretty, ("the terms of the original release (most allow academic research use "
                                          "only; check them before any other use)"), citation)])


def _citation(name: str) -> str:
    """The card's citation section."""
    citation = _citation_of(name)
    return f"\n## Citation\n\n{citation}.\n" if citation else ""


def build_classification(source: Path, output: Path, name: str, test_fraction: float = 0.5, seed: int = 0,
                         split_files: Path | None = None) -> dict[str, Any]:
    """Classification set from a folder-per-class layout: ``label`` is a ClassLabel of the folder names (sorted).

    Splits, first that applies: the published split lists of ``name`` in ``split_files`` (``split_lists``;
    train / validation / test), the source's own ``train/`` and ``test/`` folders, or the fallback, a seeded
    stratified split putting ``test_fraction`` of each class in ``test`` (1.0: everything in ``test``, no
    ``train``). The report's ``split_definition`` (also in the card) names the one used."""
    _check_name(name, CLASSIFICATION_NAMES)
    source = Path(source)
    if not 0.0 < test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in (0, 1], got {test_fraction}")
    if split_files is not None and not Path(split_files).is_dir():
        raise FileNotFoundError(f"--split-files {split_files}: no such folder")
    lists = split_lists(split_files, name) if split_files is not None else {}
    unlisted: list[str] = []
    if lists:
        if "test" not in lists:
            raise FileNotFoundError(f"--split-files {split_files}: {name} has {sorted(p.name for p in lists.values())} "
                                    f"but no {SPLIT_FILE_PREFIXES.get(name, name)}-test.txt")
        splits, unlisted = splits_from_lists(class_images(source), lists)
        definition = {"kind": "split_files", "files": sorted(path.name for path in lists.values()),
                      "description": "the published split lists " + ", ".join(f"`{p.name}`" for p in lists.values())
                                     + (f" ({len(unlisted)} source images in no list, named in `{REPORT_NAME}`)"
                                        if unlisted else "")}
        if unlisted:
            logger.warning("%s: %d images of %s are in no split list (listed in the report)", name, len(unlisted), source)
    elif (source / "train").is_dir() and (source / "test").is_dir():
        splits = {split: class_images(source / split) for split in ("train", "test")}
        if list(splits["train"]) != list(splits["test"]):
            raise ValueError(f"{source}: train and test class folders differ: {list(splits['train'])} vs {list(splits['test'])}")
        definition = {"kind": "source_folders", "description": "the source's own train/test folders"}
    elif test_fraction == 1.0:
        splits = {"test": class_images(source)}
        definition = {"kind": "all_test", "description": "all images in `test` (no train split)"}
    else:
        if split_files is not None:
            logger.warning("%s: no %s-{train,val,test}.txt in %s; using the seeded fallback split",
                           name, SPLIT_FILE_PREFIXES.get(name, name), split_files)
        splits = splits_by_fraction(class_images(source), test_fraction, seed)
        definition = {"kind": "seeded_fallback", "seed": seed, "test_fraction": test_fraction,
                      "description": f"the seeded fallback split (no published split lists given): seed {seed}, "
                                     f"{test_fraction:g} of each class in `test`, the rest in `train`"}
    names = list(splits["test"])
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names),
                                  "filename": datasets.Value("string")})
    skipped: list[dict[str, str]] = []
    rows = {}
    for split in ("train", "validation", "test"):
        if split in splits:
            entries = [(path, {"label": label_index, "filename": f"{label}/{path.name}"})
                       for label_index, label in enumerate(names) for path in splits[split][label]]
            rows[split] = _rows(entries, skipped, f"{name}/{split}")

    def card(counts: dict[str, int], metadata: dict[str, Any]) -> str:
        body = (f"# {_full_name(name)} scene classification\n\nBuilt by `python -m "
                f"dataset_builders.build_benchmarks` from the folder-per-class layout at `{source.name}`. `label` is a "
                f"ClassLabel of the {len(names)} folder names (sorted); `filename` is `<class folder>/<file>`.\n\n"
                f"Split definition: {definition['description']}. Rows: "
                + ", ".join(f"{split} {count}" for split, count in counts.items())
                + f". Skipped images: {len(skipped)} (see `{REPORT_NAME}`). Licence: as the original dataset "
                f"(`{LICENSE_NAME}`).\n" + _citation(name))
        fields = _card_fields(name, ["image-classification", "zero-shot-image-classification"],
                              ["multi-class-image-classification"])
        return card_text({**fields, "tags": ["remote-sensing", "zero-shot-classification"], **metadata}, body)

    report: dict[str, Any] = {"name": name, "source": str(source), "split_definition": definition,
                              "classes": names, "unlisted": unlisted, "skipped": skipped}
    report["rows"] = write_dataset_folder(Path(output), features, rows, card, lambda counts: {**report, "rows": counts},
                                          licence=_licence(name))
    return report
