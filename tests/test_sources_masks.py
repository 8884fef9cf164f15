"""Mask sources (iSAID, LoveDA, Potsdam, Vaihingen): layouts, M2B notes, empty masks, bad masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_builders.records import Box
from dataset_builders.sources import read_source
from dataset_builders.sources.masks import rgb_to_ids

DATA = Path(__file__).parent / "data"


def test_isaid_real_sample_splits_and_orphans(shared_data: Path) -> None:
    records, skipped = read_source("isaid", shared_data / "isaid")
    assert [(r.image_path.name, r.provenance["split"], r.width, r.height) for r in records] == [
        ("P0005.png", "train", 884, 977), ("P0003.png", "val", 1147, 1023)]
    assert [(Path(entry.path).name, entry.reason.split(" (")[0]) for entry in skipped] == [
        ("P0002_instance_color_RGB.png", "annotation file without an image"),
        ("P0006.png", "image without an annotation file")]
    colours = np.asarray(Image.open(shared_data / "isaid/train/images/P0005_instance_color_RGB.png"))
    for box in records[0].boxes:  # every box covers pixels of its class colour
        window = colours[int(box.y_min):int(box.y_max), int(box.x_min):int(box.x_max)]
        assert {"Small_Vehicle": (0, 0, 127), "Large_Vehicle": (0, 127, 127)}[box.label] in {tuple(p) for p in window.reshape(-1, 3)}
    assert {box.label for box in records[0].boxes} == {"Small_Vehicle", "Large_Vehicle"}


def test_isaid_without_instance_mask_notes_merging(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "train" / "images"
    folder.mkdir(parents=True)
    for name in ("P0005.png", "P0005_instance_color_RGB.png"):
        shutil.copy(shared_data / "isaid/train/images" / name, folder / name)
    records, skipped = read_source("isaid", tmp_path)
    assert len(records) == 1
    assert [entry.reason for entry in skipped] == ["M2B: no instance-id mask: touching objects of one class form one box"]


def test_rgb_to_ids() -> None:
    rgb = np.array([[[0, 0, 0], [1, 2, 3]]], dtype=np.uint8)
    np.testing.assert_array_equal(rgb_to_ids(rgb), [[0, 65536 + 512 + 3]])


def test_loveda_index_mask_and_empty_mask() -> None:
    records, skipped = read_source("loveda", DATA / "loveda")
    assert [(r.provenance["split"], r.provenance["domain"], r.boxes) for r in records] == [
        ("Train", "Urban", [Box("building", 6, 4, 30, 20), Box("water", 40, 40, 50, 60)])]
    assert [(Path(entry.path).parts[-3:], entry.reason) for entry in skipped] == [
        (("Rural", "masks_png", "0.png"), "empty mask: no foreground component of a known class above min_area=16")]


def test_loveda_min_area_option_drops_small_components() -> None:
    records, skipped = read_source("loveda", DATA / "loveda", min_area=300)
    assert [box.label for box in records[0].boxes] == ["building"]  # 16x24 = 384 px kept, 10x20 = 200 px dropped
    assert any("water" in entry.reason for entry in skipped)


@pytest.mark.parametrize("name", ["potsdam", "vaihingen"])
def test_isprs_colour_masks_report_colours_outside_the_palette(name: str) -> None:
    records, skipped = read_source(name, DATA / name)
    assert records[0].boxes == [Box("building", 5, 5, 25, 25), Box("car", 50, 40, 58, 44),
                                Box("impervious surfaces", 0, 0, 64, 64)]
    assert [entry.reason for entry in skipped] == ["M2B: colour (10, 20, 30) not in the palette: 16 pixels (not boxed)"]


def test_mask_size_mismatch_and_corrupt_mask_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "loveda"
    shutil.copytree(DATA / "loveda", root)
    Image.fromarray(np.full((32, 32), 2, np.uint8)).save(root / "Train/Urban/masks_png/1366.png")
    (root / "Train/Rural/masks_png/0.png").write_bytes(b"\x89PNG broken")
    records, skipped = read_source("loveda", root)
    assert records == []
    reasons = sorted(entry.reason for entry in skipped)
    assert reasons[0].endswith("corrupt or unreadable mask: cannot identify image file "
                               f"'{root / 'Train/Rural/masks_png/0.png'}'")
    assert reasons[1] == "mask size 32x32 differs from image size 64x64 of 1366.png"
