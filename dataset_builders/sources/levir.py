"""LEVIR reader: one text annotation file per image, one object per line."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from dataset_builders.sources.base import Item, parse_floats
from dataset_builders.sources.textboxes import ParsedLine, TextBoxReader, class_from_id, split_fields


class LevirReader(TextBoxReader):
    """LEVIR: ``DIR/imageWithLabel/<id>.jpg`` with ``<id>.txt`` beside it, lines ``class x_min y_min x_max y_max``
    with class ids 1 = plane, 2 = ship, 3 = oil tank."""

    name = "levir"
    license = "LEVIR: academic research use only (http://levir.buaa.edu.cn/)"
    citation = "Zou and Shi, Random Access Memories: A New Paradigm for Target Detection in High Resolution Aerial Remote Sensing Images, TIP 2018"
    layout = "DIR/imageWithLabel/<id>.jpg + DIR/imageWithLabel/<id>.txt"
    image_dirs = label_dirs = ("imageWithLabel", ".")
    classes: ClassVar[dict[int, str]] = {1: "plane", 2: "ship", 3: "oil tank"}

    def parse_line(self, text: str, path: Path, line: int, item: Item) -> ParsedLine | None:
        fields = split_fields(text, path, line, (5,), "class x_min y_min x_max y_max")
        x_min, y_min, x_max, y_max = parse_floats(fields[1:], path, line)
        return class_from_id(fields[0], self.classes, path, line), [x_min, x_max], [y_min, y_max]
