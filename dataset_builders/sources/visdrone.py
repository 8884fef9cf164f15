"""VisDrone-DET reader: one text annotation file per image, one object per line."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from dataset_builders.sources.base import Item, parse_floats
from dataset_builders.sources.textboxes import ParsedLine, TextBoxReader, class_from_id, split_fields


class VisDroneReader(TextBoxReader):
    """VisDrone2019-DET: ``DIR/images/<id>.jpg`` + ``DIR/annotations/<id>.txt``, lines
    ``left,top,width,height,score,category,truncation,occlusion``; category 0 ("ignored regions") and 11
    ("others") are kept as such and left undescribed by B2C."""

    name = "visdrone"
    license = "VisDrone: academic research use only (https://github.com/VisDrone/VisDrone-Dataset)"
    citation = "Zhu et al., Detection and Tracking Meet Drones Challenge, TPAMI 2021"
    layout = "DIR/images/<id>.jpg + DIR/annotations/<id>.txt"
    image_dirs, label_dirs = ("images",), ("annotations",)
    classes: ClassVar[dict[int, str]] = {0: "ignored regions", 1: "pedestrian", 2: "people", 3: "bicycle", 4: "car", 5: "van", 6: "truck",
               7: "tricycle", 8: "awning-tricycle", 9: "bus", 10: "motor", 11: "others"}

    def parse_line(self, text: str, path: Path, line: int, item: Item) -> ParsedLine | None:
        fields = split_fields(text, path, line, (8,), "left,top,width,height,score,category,truncation,occlusion")
        left, top, width, height = parse_floats(fields[:4], path, line)
        return class_from_id(fields[5], self.classes, path, line), [left, left + width], [top, top + height]
