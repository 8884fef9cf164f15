"""CARPK / PUCPR+ reader: one text annotation file per image, one object per line."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from dataset_builders.sources.base import Item, parse_floats
from dataset_builders.sources.textboxes import ParsedLine, TextBoxReader, class_from_id, split_fields


class CarpkReader(TextBoxReader):
    """CARPK / PUCPR+ devkits: ``DIR/[data/]Images/<id>.png`` + ``DIR/[data/]Annotations/<id>.txt``, lines
    ``x_min y_min x_max y_max class`` (class 1 = car)."""

    name = "carpk"
    license = "CARPK: academic research use only (https://lafi.github.io/LPN/)"
    citation = "Hsieh et al., Drone-based Object Counting by Spatially Regularized Regional Proposal Network, ICCV 2017"
    layout = "DIR/[data/]Images/<id>.png + DIR/[data/]Annotations/<id>.txt"
    image_dirs, label_dirs = ("Images", "data/Images"), ("Annotations", "data/Annotations")
    classes: ClassVar[dict[int, str]] = {1: "car"}

    def parse_line(self, text: str, path: Path, line: int, item: Item) -> ParsedLine | None:
        fields = split_fields(text, path, line, (5,), "x_min y_min x_max y_max class")
        x_min, y_min, x_max, y_max = parse_floats(fields[:4], path, line)
        return class_from_id(fields[4], self.classes, path, line), [x_min, x_max], [y_min, y_max]
