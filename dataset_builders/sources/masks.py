"""Segmentation sources (iSAID, LoveDA, ISPRS Potsdam/Vaihingen): masks -> boxes with data-core's M2B."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from dataset_builders import m2b
from dataset_builders.records import Box, Skipped
from dataset_builders.sources.base import Item, Loaded, SourceReader, files_matching, images_in, pair_by_stem
from dataset_builders.sources.images import decoded_whole
from rclip_hf.images import ImageReadError


def read_mask(path: Path, mode: str, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Decode a mask file (or its ``window`` (x0, y0, x1, y1)): mode "RGB" -> (H, W, 3) uint8, mode "index" ->
    (H, W) int64."""
    if window is None:
        return _MASK_DECODERS[mode](path)
    whole = decoded_whole(path, _MASK_DECODERS[mode])
    x0, y0, x1, y1 = window
    return whole[y0:y1, x0:x1].copy()  # smaller than the window where the mask is: the size check reports it


def _read_rgb_mask(path: Path) -> np.ndarray:
    with _opened_mask(path) as mask:
        return np.asarray(mask.convert("RGB"))


def _read_index_mask(path: Path) -> np.ndarray:
    with _opened_mask(path) as mask:
        if mask.mode not in ("L", "P", "I", "I;16"):
            raise ImageReadError(f"{path}: index mask must be single-band, got mode {mask.mode}")
        return np.asarray(mask).astype(np.int64)


_MASK_DECODERS = {"RGB": _read_rgb_mask, "index": _read_index_mask}


@contextmanager
def _opened_mask(path: Path) -> Iterator[Image.Image]:
    """The fully decoded mask image; ImageReadError naming the file when it cannot be read."""
    try:
        with Image.open(path) as mask:
            mask.load()
            yield mask
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{path}: corrupt or unreadable mask: {error}") from error


def rgb_to_ids(mask_rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB-encoded ids -> (H, W) int32 ids R * 65536 + G * 256 + B (0 = no instance)."""
    rgb = mask_rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class MaskReader(SourceReader):
    """Base of mask sources: ``load`` checks sizes, runs M2B and records its notes (specks, unknown colours)."""

    default_min_area: ClassVar[int] = m2b.DEFAULT_MIN_AREA

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("min_area",)

    @property
    def min_area(self) -> int:
        """Minimum component area in pixels kept by M2B (option ``min_area``)."""
        return int(self.options.get("min_area", self.default_min_area))

    @abstractmethod
    def boxes_from_masks(self, item: Item) -> tuple[list[Box], list[str], tuple[int, int]]:
        """(boxes, M2B notes, mask (width, height)) for one item."""

    def load(self, item: Item) -> Loaded:
        try:
            width, height = item.image_size()
            boxes, notes, mask_size = self.boxes_from_masks(item)
        except ImageReadError as error:
            return Loaded(skipped=self.skip(item.image_path, str(error)))
        if mask_size != (width, height):
            return Loaded(skipped=self.skip(item.annotation_path, f"mask size {mask_size[0]}x{mask_size[1]} differs "
                                            f"from image size {width}x{height} of {item.image_path.name}"))
        recorded = [self.skip(item.annotation_path, f"M2B: {note}") for note in notes]
        if not boxes:
            return Loaded(skipped=self.skip(item.annotation_path, "empty mask: no foreground component of a known "
                                            f"class above min_area={self.min_area}"), notes=recorded)
        return Loaded(record=self.new_record(item, boxes=boxes, size=(width, height)), notes=recorded)


class ColorMaskReader(MaskReader):
    """Mask sources whose labels are colour-coded RGB images."""

    palette: ClassVar[Mapping[tuple[int, int, int], str]]
    ignore: ClassVar[tuple[str, ...]]
    expects_instances: ClassVar[bool] = False  # whether the release has instance-id masks

    def boxes_from_masks(self, item: Item) -> tuple[list[Box], list[str], tuple[int, int]]:
        mask = read_mask(item.annotation_path, "RGB", item.window)
        instance_path = item.provenance.get("instance_mask")
        instance_ids = rgb_to_ids(read_mask(Path(instance_path), "RGB", item.window)) if instance_path else None
        missing = ["no instance-id mask: touching objects of one class form one box"] if self.expects_instances \
            and instance_ids is None else []
        if instance_ids is not None and instance_ids.shape != mask.shape[:2]:
            raise ImageReadError(f"{instance_path}: instance mask shape {instance_ids.shape} differs from "
                                 f"colour mask shape {mask.shape[:2]}")
        boxes, notes = m2b.boxes_from_color_mask(mask, self.palette, ignore=self.ignore, min_area=self.min_area,
                                                 instance_ids=instance_ids)
        return boxes, missing + notes, (mask.shape[1], mask.shape[0])


class IsaidReader(ColorMaskReader):
    """iSAID: ``DIR/{train,val,test}/images/<id>.png`` with ``<id>_instance_color_RGB.png`` (semantic colours)
    and ``<id>_instance_id_RGB.png`` (instance ids as RGB, separates touching objects); any subset of splits."""

    name = "isaid"
    license = "iSAID: academic research use only (images from DOTA; https://captain-whu.github.io/iSAID/)"
    citation = "Waqas Zamir et al., iSAID: A Large-scale Dataset for Instance Segmentation in Aerial Images, CVPRW 2019"
    layout = "DIR/{train,val,test}/images/<id>.png + <id>_instance_color_RGB.png + <id>_instance_id_RGB.png"
    palette = m2b.ISAID_PALETTE
    ignore = ("background",)
    expects_instances = True
    color_suffix, instance_suffix = "_instance_color_RGB", "_instance_id_RGB"

    def scan(self) -> Iterator[Item | Skipped]:
        splits = [split for split in ("train", "val", "test") if (self.root / split / "images").is_dir()]
        if not splits:
            raise FileNotFoundError(f"isaid: no split folder under {self.root} (expected {self.layout})")
        for split in splits:
            folder = self.root / split / "images"
            images = images_in(folder, (".png",), exclude=(self.color_suffix, self.instance_suffix))
            colors = {path.name[: -len(self.color_suffix) - 4]: path
                      for path in files_matching(folder, f"*{self.color_suffix}.png")}
            for entry in pair_by_stem(self, images, colors, {"split": split}):
                if isinstance(entry, Item):
                    instance = folder / f"{entry.image_path.stem}{self.instance_suffix}.png"
                    if instance.is_file():
                        entry.provenance["instance_mask"] = str(instance)
                yield entry
