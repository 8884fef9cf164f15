"""Sources with one text annotation file per image and one object per line: DOTA, LEVIR, CARPK, VisDrone."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from dataset_builders.records import Skipped
from dataset_builders.sources.base import (
    Item,
    Loaded,
    SourceReader,
    files_matching,
    images_in,
    pair_by_stem,
    read_annotation_text,
    sized_collector,
)

#: a parsed object line: (class name, xs, ys) — two points for a box, four for an oriented polygon
ParsedLine = tuple[str, list[float], list[float]]


class TextBoxReader(SourceReader):
    """Base of line-per-object sources: pairs ``<image_dir>/<id>.*`` with ``<label_dir>/<id>.txt`` (first
    existing pattern of each) and turns every line into a box; a malformed line is dropped and recorded."""

    image_dirs: ClassVar[tuple[str, ...]]
    label_dirs: ClassVar[tuple[str, ...]]
    label_suffix: ClassVar[str] = ".txt"

    @abstractmethod
    def parse_line(self, text: str, path: Path, line: int, item: Item) -> ParsedLine | None:
        """Parse one non-empty line; None for header lines (stored in ``item.provenance``); ValueError if malformed."""

    def scan(self) -> Iterator[Item | Skipped]:
        image_dir = next((self.root / rel for rel in self.image_dirs if (self.root / rel).is_dir()), None)
        label_dir = next((self.root / rel for rel in self.label_dirs if (self.root / rel).is_dir()), None)
        if image_dir is None and label_dir is None:
            raise FileNotFoundError(f"{self.name}: no image or label folder under {self.root} (expected {self.layout})")
        labels = {path.stem: path for path in files_matching(label_dir, f"*{self.label_suffix}")} if label_dir else {}
        yield from pair_by_stem(self, images_in(image_dir) if image_dir else {}, labels)

    def load(self, item: Item) -> Loaded:
        collector = sized_collector(self, item)
        if isinstance(collector, Loaded):
            return collector
        text, decoding = read_annotation_text(item.annotation_path)
        if decoding is not None:
            collector.note(decoding, None)
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                parsed = self.parse_line(raw.strip(), item.annotation_path, number, item)
            except ValueError as error:
                collector.note(f"malformed line dropped: {error}", number)
                continue
            if parsed is not None:
                collector.add_polygon(*parsed, number)
        return collector.loaded(item)


def split_fields(text: str, path: Path, line: int, expected: tuple[int, ...], layout: str) -> list[str]:
    """Split a line on commas or whitespace, checking the field count; ValueError names file, line and layout."""
    fields = [field for field in text.replace(",", " ").split()]
    if len(fields) not in expected:
        raise ValueError(f"{path}:{line}: expected {layout!r}, got {len(fields)} fields: {text!r}")
    return fields


def class_from_id(token: str, classes: dict[int, str], path: Path, line: int) -> str:
    """Class name of an integer class id; ValueError naming file, line and the allowed ids when unknown."""
    try:
        return classes[int(float(token))]
    except (ValueError, KeyError):
        raise ValueError(f"{path}:{line}: unknown class id {token!r} (allowed: {sorted(classes)})") from None
