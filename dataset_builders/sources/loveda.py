"""LoveDA land-cover segmentation (index masks) in its release layout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from dataset_builders import m2b
from dataset_builders.records import Box, Skipped
from dataset_builders.sources.base import Item, files_matching, images_in, pair_by_stem
from dataset_builders.sources.masks import MaskReader, read_mask


class LovedaReader(MaskReader):
    """LoveDA: ``DIR/{Train,Val,Test}/{Urban,Rural}/images_png/<id>.png`` + ``.../masks_png/<id>.png``; mask
    values 0 = no-data and 1 = background are ignored, 2..7 = building, road, water, barren, forest,
    agriculture (``m2b.LOVEDA_CLASSES``)."""

    name = "loveda"
    license = "LoveDA: CC BY-NC-SA 4.0 (https://github.com/Junjue-Wang/LoveDA)"
    citation = "Wang et al., LoveDA: A Remote Sensing Land-Cover Dataset for Domain Adaptive Semantic Segmentation, NeurIPS 2021"
    layout = "DIR/{Train,Val,Test}/{Urban,Rural}/{images_png,masks_png}/<id>.png"
    ignore_ids: ClassVar[tuple[int, ...]] = tuple(m2b.LOVEDA_IGNORE_IDS)

    def scan(self) -> Iterator[Item | Skipped]:
        domains = sorted(path.parent for path in self.root.glob("*/*/images_png"))
        if not domains:
            raise FileNotFoundError(f"loveda: no */*/images_png folder under {self.root} (expected {self.layout})")
        for domain in domains:
            masks = {path.stem: path for path in files_matching(domain / "masks_png", "*.png")}
            yield from pair_by_stem(self, images_in(domain / "images_png"), masks,
                                    {"split": domain.parent.name, "domain": domain.name})

    def boxes_from_masks(self, item: Item) -> tuple[list[Box], list[str], tuple[int, int]]:
        mask = read_mask(item.annotation_path, "index", item.window)
        boxes, notes = m2b.boxes_from_index_mask(mask, m2b.LOVEDA_CLASSES, ignore_ids=self.ignore_ids,
                                                 min_area=self.min_area)
        return boxes, notes, (mask.shape[1], mask.shape[0])
