"""Human-captioned sources (RSICD, RSITMD, UCM-captions) in their Karpathy-style JSON."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from dataset_builders.records import Skipped
from dataset_builders.sources.base import Item, Loaded, SourceReader, read_json_file
from rclip_hf.images import ImageReadError

logger = logging.getLogger(__name__)

IMAGE_DIR_CANDIDATES = ("images", "RSICD_images", "imgs", "Images", ".")


def load_karpathy_json(path: Path) -> list[dict]:
    """The ``images`` list of a Karpathy-style caption JSON; ValueError naming the file when malformed."""
    data, note = read_json_file(path)
    if note is not None:
        logger.warning("%s: %s", path, note)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected a JSON object with an 'images' list (Karpathy format)")  # noqa: TRY004 -- bad file content, not a bad argument type
    return data["images"]


def find_caption_json(root: Path) -> Path:
    """The caption JSON at PATH: the file itself, or the single ``dataset*.json`` / ``*.json`` in the folder."""
    if root.is_file():
        return root
    candidates = sorted(root.glob("dataset*.json")) or sorted(root.glob("*.json"))
    if len(candidates) != 1:
        raise FileNotFoundError(f"{root}: expected one caption JSON (dataset_*.json), found {[p.name for p in candidates]}")
    return candidates[0]


def find_image_dir(json_path: Path, image_dir: str | None) -> Path:
    """The image folder of a caption JSON: ``image_dir`` (relative to the JSON) or the first existing candidate."""
    names = (image_dir,) if image_dir else IMAGE_DIR_CANDIDATES
    for name in names:
        folder = json_path.parent / name
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"{json_path}: no image folder among {list(names)} beside it")


class CaptionsReader(SourceReader):
    """RSICD / RSITMD / UCM-captions: ``images[].filename``, ``images[].sentences[].raw``, ``images[].split``.
    Options: ``splits`` (default ``["train", "val"]``; test images are skipped and recorded, they are the
    retrieval benchmarks) and ``image_dir`` (default: ``images``, ``RSICD_images``, ``imgs``, ``Images`` or the
    JSON's folder)."""

    name = "captions"
    license = "RSICD / RSITMD / UCM-captions: academic research use only"
    citation = "Lu et al., Exploring Models and Data for Remote Sensing Image Caption Generation, TGRS 2017 (RSICD)"
    layout = "dataset_<name>.json (Karpathy format) + an image folder beside it"

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("splits", "image_dir")

    def scan(self) -> Iterator[Item | Skipped]:
        json_path = find_caption_json(self.root)
        image_dir = find_image_dir(json_path, self.options.get("image_dir"))
        splits = tuple(self.options.get("splits", ("train", "val")))
        for index, entry in enumerate(load_karpathy_json(json_path)):
            where = f"{json_path}#images[{index}]"
            filename, split = entry.get("filename"), entry.get("split", "")
            if not isinstance(filename, str) or not filename:
                yield self.skip(where, "entry has no 'filename'")
            elif split not in splits:
                yield self.skip(where, f"{filename}: split {split!r} not in the selected splits {list(splits)}")
            elif isinstance(image := self.inside(image_dir, filename, where), Skipped):
                yield image
            elif not image.is_file():
                yield self.skip(where, f"caption entry without an image: {image} not found")
            else:
                raw = [sentence.get("raw") for sentence in entry.get("sentences", []) if isinstance(sentence, dict)]
                yield Item(image_path=image, annotation_path=json_path, payload=raw,
                           provenance={"annotation": json_path.name, "split": split, "entry": str(index)})

    def load(self, item: Item) -> Loaded:
        captions = [text.strip() for text in item.payload if isinstance(text, str) and text.strip()]
        if not captions:
            return Loaded(skipped=self.skip(item.annotation_path, f"{item.image_path.name}: no non-empty caption "
                                            f"(entry images[{item.provenance['entry']}])"))
        try:
            record = self.new_record(item, captions=captions)
        except ImageReadError as error:
            return Loaded(skipped=self.skip(item.image_path, str(error)))
        return Loaded(record=record)
