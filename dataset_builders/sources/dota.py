"""DOTA reader: one text annotation file per image, one object per line."""

from __future__ import annotations

from pathlib import Path

from dataset_builders.sources.base import Item, parse_floats
from dataset_builders.sources.textboxes import ParsedLine, TextBoxReader


class DotaReader(TextBoxReader):
    """DOTA (v1.0/1.5/2.0): ``DIR/images/<id>.png`` + ``DIR/labelTxt/<id>.txt``; optional ``imagesource:`` /
    ``gsd:`` headers, then ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` (int or float); each quadrilateral
    becomes its enclosing horizontal box. Option ``include_difficult`` (default True)."""

    name = "dota"
    license = "DOTA: academic research use only (https://captain-whu.github.io/DOTA/)"
    citation = "Xia et al., DOTA: A Large-scale Dataset for Object Detection in Aerial Images, CVPR 2018"
    layout = "DIR/images/<id>.png + DIR/labelTxt/<id>.txt"
    image_dirs, label_dirs = ("images",), ("labelTxt",)
    header_keys = ("imagesource", "gsd")

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("include_difficult",)

    def parse_line(self, text: str, path: Path, line: int, item: Item) -> ParsedLine | None:
        key, _, value = text.partition(":")
        if value and key.lower() in self.header_keys:
            item.provenance[key.lower()] = value.strip()
            return None
        fields = text.split()
        if len(fields) not in (9, 10):
            raise ValueError(f"{path}:{line}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 class difficult', got "
                             f"{len(fields)} fields: {text!r}")
        coords = parse_floats(fields[:8], path, line)
        difficult = fields[9] if len(fields) == 10 else "0"
        if difficult not in ("0", "1", "2"):
            raise ValueError(f"{path}:{line}: difficult flag {difficult!r} is not 0, 1 or 2")
        if difficult != "0" and not self.options.get("include_difficult", True):
            raise ValueError(f"{path}:{line}: difficult object {fields[8]!r} (include_difficult=False)")
        return fields[8], coords[0::2], coords[1::2]
