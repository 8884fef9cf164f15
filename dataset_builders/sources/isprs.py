"""ISPRS Potsdam and Vaihingen semantic labelling (colour-coded label tiles) in their release layouts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from dataset_builders import m2b
from dataset_builders.records import Skipped
from dataset_builders.sources.base import Item, images_in, pair_by_stem, patch_windows
from dataset_builders.sources.masks import ColorMaskReader
from rclip_hf.images import ImageReadError

ISPRS_LICENSE = "ISPRS 2D Semantic Labeling benchmark: research use, cite the ISPRS benchmark"
ISPRS_CITATION = "Rottensteiner et al., The ISPRS benchmark on urban object classification and 3D building reconstruction, 2012"


class PotsdamReader(ColorMaskReader):
    """Potsdam: ``DIR/2_Ortho_RGB/top_potsdam_<a>_<b>_RGB.tif`` + ``DIR/5_Labels_all/top_potsdam_<a>_<b>_label.tif``
    (ISPRS colours; clutter/background is not described). Each tile is cut into ``patch_size`` x ``patch_size``
    records (option ``patch_size``, default 512; 0 keeps whole tiles) as mmsegmentation's converters cut them
    (``patch_windows``), the preparation the paper's image counts point to: 144 patches per 6000x6000 Potsdam
    tile, 5,472 for the 38 tiles (the paper reports 5,421 Potsdam and 742 Vaihingen images)."""

    name = "potsdam"
    license, citation = ISPRS_LICENSE, ISPRS_CITATION
    layout = "DIR/2_Ortho_RGB/top_potsdam_*_RGB.tif + DIR/5_Labels_all/top_potsdam_*_label.tif"
    palette = m2b.ISPRS_PALETTE
    ignore = ("clutter",)
    image_folder, label_folder = "2_Ortho_RGB", "5_Labels_all"
    image_suffix, label_suffix = "_RGB", "_label"
    default_patch_size = 512

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (*super().option_names(), "patch_size")

    def scan(self) -> Iterator[Item | Skipped]:
        patch_size = self.options.get("patch_size", self.default_patch_size)
        if not isinstance(patch_size, int) or patch_size < 0:
            raise ValueError(f"{self.name}: option patch_size must be an integer >= 0 (0 = whole tiles), got {patch_size!r}")
        for entry in self._tiles():
            if isinstance(entry, Skipped) or not patch_size:
                yield entry
                continue
            try:
                width, height = entry.image_size()
            except ImageReadError as error:
                yield self.skip(entry.image_path, str(error))
                continue
            windows = patch_windows(width, height, patch_size)
            if windows == [(0, 0, width, height)]:
                yield entry
                continue
            for window in windows:
                yield replace(entry, window=window, provenance={**entry.provenance, "window": ",".join(map(str, window))})

    def _tiles(self) -> Iterator[Item | Skipped]:
        """The (image tile, label tile) pairs, and the files without a partner."""
        if not (self.root / self.image_folder).is_dir() and not (self.root / self.label_folder).is_dir():
            raise FileNotFoundError(f"{self.name}: no {self.image_folder}/ or {self.label_folder}/ under {self.root} "
                                    f"(expected {self.layout})")
        images = {stem.removesuffix(self.image_suffix): path for stem, path in images_in(self.root / self.image_folder).items()}
        labels = {stem.removesuffix(self.label_suffix): path for stem, path in images_in(self.root / self.label_folder).items()}
        yield from pair_by_stem(self, images, labels)


class VaihingenReader(PotsdamReader):
    """Vaihingen: ``DIR/top/top_mosaic_09cm_area<N>.tif`` (IRRG false colour, stored as is) +
    ``DIR/gts_for_participants/top_mosaic_09cm_area<N>.tif`` (ISPRS colours)."""

    name = "vaihingen"
    layout = "DIR/top/top_mosaic_09cm_area<N>.tif + DIR/gts_for_participants/top_mosaic_09cm_area<N>.tif"
    image_folder, label_folder = "top", "gts_for_participants"
    image_suffix = label_suffix = ""
