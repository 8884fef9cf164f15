"""Tests of dataset_builders.m2b: masks -> boxes by outer contours, palettes, instance ids, specks, notes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy import ndimage

from dataset_builders.m2b import (
    ISAID_PALETTE,
    ISPRS_PALETTE,
    LOVEDA_CLASSES,
    LOVEDA_IGNORE_IDS,
    boxes_from_color_mask,
    boxes_from_index_mask,
)
from dataset_builders.records import Box

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def as_tuples(boxes: list[Box]) -> list[tuple[str, float, float, float, float]]:
    return sorted((box.label, box.x_min, box.y_min, box.x_max, box.y_max) for box in boxes)


def component_boxes(binary: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Pixel bboxes (x_min, y_min, max_x + 1, max_y + 1) of the 8-connected components, by scipy (an oracle)."""
    labels, _ = ndimage.label(binary, structure=EIGHT_CONNECTED)
    return sorted((float(s[1].start), float(s[0].start), float(s[1].stop), float(s[0].stop))
                  for s in ndimage.find_objects(labels))


def test_index_mask_hand_checked() -> None:
    mask = np.zeros((8, 10), dtype=np.uint8)
    mask[1:3, 1:4] = 2          # building rows 1-2, cols 1-3
    mask[3, 4] = 2              # touches the building diagonally: same 8-connected component
    mask[6, 8] = 2              # a 1-pixel speck
    mask[5:8, 0:2] = 4          # water
    mask[0, 9] = 1              # LoveDA background: ignored
    mask[7, 9] = 9              # not a LoveDA class
    boxes, notes = boxes_from_index_mask(mask, LOVEDA_CLASSES, ignore_ids=LOVEDA_IGNORE_IDS, min_area=2)
    assert as_tuples(boxes) == [("building", 1.0, 1.0, 5.0, 4.0), ("water", 0.0, 5.0, 2.0, 8.0)]
    assert notes == ["unknown class id 9: 1 pixels (not in class_names, not ignored; not boxed)",
                     "dropped 1 speck(s) of class 'building' below min_area=2 px (areas [1])"]
    boxes, notes = boxes_from_index_mask(mask, LOVEDA_CLASSES, ignore_ids=LOVEDA_IGNORE_IDS, min_area=1)
    assert ("building", 8.0, 6.0, 9.0, 7.0) in as_tuples(boxes) and len(boxes) == 3


def test_single_pixel_box_has_area_one_and_border_pixels_are_kept() -> None:
    mask = np.zeros((4, 4), dtype=np.int32)
    mask[0, 0] = 1
    mask[3, 1:4] = 1
    boxes, notes = boxes_from_index_mask(mask, {1: "car"}, min_area=1)
    assert as_tuples(boxes) == [("car", 0.0, 0.0, 1.0, 1.0), ("car", 1.0, 3.0, 4.0, 4.0)]
    assert notes == []


def test_nested_component_lies_in_the_outer_box() -> None:
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[1:8, 1:8] = 3
    mask[2:7, 2:7] = 0
    mask[4, 4] = 3  # island in the ring's hole: no outer contour of its own
    boxes, _ = boxes_from_index_mask(mask, {3: "road"}, min_area=1)
    assert as_tuples(boxes) == [("road", 1.0, 1.0, 8.0, 8.0)]


def test_empty_masks_give_no_boxes() -> None:
    assert boxes_from_index_mask(np.zeros((5, 5), dtype=np.int64), LOVEDA_CLASSES) == ([], [])
    assert boxes_from_color_mask(np.zeros((5, 5, 3), dtype=np.uint8), ISAID_PALETTE) == ([], [])
    white = np.full((5, 5, 3), 255, dtype=np.uint8)  # ISPRS impervious surfaces everywhere: one box
    assert as_tuples(boxes_from_color_mask(white, ISPRS_PALETTE)[0]) == [("impervious surfaces", 0, 0, 5, 5)]


def test_color_mask_isprs_ignores_clutter_and_reports_unknown_colours() -> None:
    mask = np.full((6, 8, 3), 255, dtype=np.uint8)  # impervious surfaces
    mask[:, :] = (255, 0, 0)                          # clutter/background everywhere
    mask[0:2, 0:3] = (0, 0, 255)                      # building
    mask[4:6, 5:8] = (255, 255, 0)                    # car
    mask[3, 3:5] = (1, 2, 3)                          # not an ISPRS colour (JPEG noise, edge blur)
    boxes, notes = boxes_from_color_mask(mask, ISPRS_PALETTE, min_area=1)
    assert as_tuples(boxes) == [("building", 0.0, 0.0, 3.0, 2.0), ("car", 5.0, 4.0, 8.0, 6.0)]
    assert notes == ["colour (1, 2, 3) not in the palette: 2 pixels (not boxed)"]
    boxes, _ = boxes_from_color_mask(mask, ISPRS_PALETTE, ignore=(), min_area=1)
    assert ("clutter", 0.0, 0.0, 8.0, 6.0) in as_tuples(boxes)


def test_instance_ids_split_touching_objects_and_join_split_ones() -> None:
    ship = (0, 0, 63)
    mask = np.zeros((6, 12, 3), dtype=np.uint8)
    mask[1:4, 0:6] = ship                # two touching ships: columns 0-2 (id 7) and 3-5 (id 9)
    mask[1:3, 8:10] = ship               # one ship split by a bridge: rows 1-2 and row 5 (id 11)
    mask[5, 8:10] = ship
    mask[4, 11] = ship                   # a ship pixel without instance id
    ids = np.zeros((6, 12), dtype=np.int64)
    ids[1:4, 0:3], ids[1:4, 3:6], ids[1:3, 8:10], ids[5, 8:10] = 7, 9, 11, 11
    boxes, notes = boxes_from_color_mask(mask, ISAID_PALETTE, min_area=1, instance_ids=ids)
    assert as_tuples(boxes) == [("ship", 0.0, 1.0, 3.0, 4.0), ("ship", 3.0, 1.0, 6.0, 4.0),
                                ("ship", 8.0, 1.0, 10.0, 6.0), ("ship", 11.0, 4.0, 12.0, 5.0)]
    assert notes == ["1 pixels of class 'ship' have no instance id (0): boxed by connected components"]
    merged, _ = boxes_from_color_mask(mask, ISAID_PALETTE, min_area=1)
    assert ("ship", 0.0, 1.0, 6.0, 4.0) in as_tuples(merged) and len(merged) == 4  # split piece: 2 boxes
    _, notes = boxes_from_color_mask(mask, ISAID_PALETTE, min_area=7, instance_ids=ids)
    assert notes[-1] == "dropped 2 speck(s) of class 'ship' below min_area=7 px (areas [1, 6])"


def test_bad_masks_raise() -> None:
    with pytest.raises(ValueError, match=r"colour mask must be a uint8 \(H, W, 3\) RGB array, got int64 \(4, 4\)"):
        boxes_from_color_mask(np.zeros((4, 4), dtype=np.int64), ISAID_PALETTE)
    with pytest.raises(ValueError, match=r"index mask must be an integer \(H, W\) array, got float64"):
        boxes_from_index_mask(np.zeros((4, 4)), LOVEDA_CLASSES)
    with pytest.raises(ValueError, match=r"instance_ids must be an integer \(H, W\) array of the mask's shape \(4, 4\)"):
        boxes_from_color_mask(np.zeros((4, 4, 3), dtype=np.uint8), ISAID_PALETTE, instance_ids=np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="min_area must be >= 1 pixel, got 0"):
        boxes_from_index_mask(np.zeros((4, 4), dtype=np.int64), LOVEDA_CLASSES, min_area=0)
    with pytest.raises(ValueError, match=r"palette colour \(0, 300, 0\) \(class 'x'\) is not an RGB triple"):
        boxes_from_color_mask(np.zeros((4, 4, 3), dtype=np.uint8), {(0, 300, 0): "x"})


@settings(max_examples=120, deadline=None)
@given(mask=arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.integers(0, 2)))
def test_property_boxes_cover_every_foreground_pixel(mask: np.ndarray) -> None:
    boxes, notes = boxes_from_index_mask(mask, {1: "ship", 2: "plane"}, min_area=1)
    assert notes == []
    for value, label in ((1, "ship"), (2, "plane")):
        found = [(b.x_min, b.y_min, b.x_max, b.y_max) for b in boxes if b.label == label]
        components = component_boxes(mask == value)
        for y, x in zip(*np.nonzero(mask == value)):  # every foreground pixel lies in a box of its class
            assert any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in found)
        assert set(found) <= set(components)  # each box is exactly a component's pixel bbox
        for x0, y0, x1, y1 in components:  # components without a box are nested in one
            assert any(a0 <= x0 and b0 <= y0 and x1 <= a1 and y1 <= b1 for a0, b0, a1, b1 in found)


def load_isaid(shared_data: Path, split: str, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(colour mask (H, W, 3) uint8, instance ids (H, W) int64) of an iSAID sample."""
    folder = shared_data / "isaid" / split / "images"
    colour = np.asarray(Image.open(folder / f"{stem}_instance_color_RGB.png").convert("RGB"))
    rgb = np.asarray(Image.open(folder / f"{stem}_instance_id_RGB.png").convert("RGB")).astype(np.int64)
    return colour, (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@pytest.mark.parametrize(("split", "stem"), [("train", "P0005"), ("val", "P0003"), ("train", "P0002")])
def test_real_isaid_instances(shared_data: Path, split: str, stem: str) -> None:
    colour, ids = load_isaid(shared_data, split, stem)
    boxes, notes = boxes_from_color_mask(colour, ISAID_PALETTE, min_area=16, instance_ids=ids)
    names = {np.uint32((r << 16) | (g << 8) | b): name for (r, g, b), name in ISAID_PALETTE.items()}
    codes = (colour[..., 0].astype(np.uint32) << 16) | (colour[..., 1].astype(np.uint32) << 8) | colour[..., 2]
    # each instance id: its class (at its first pixel), pixel count and pixel bbox, computed directly
    _, labels = np.unique(ids, return_inverse=True)  # id 0 -> label 0
    labels = labels.reshape(ids.shape)
    _, first_pixel = np.unique(labels.ravel(), return_index=True)
    sizes = np.bincount(labels.ravel())
    expected = []
    for label, region in enumerate(ndimage.find_objects(labels), start=1):
        name = names[codes.ravel()[first_pixel[label]]]
        if name != "background" and sizes[label] >= 16:
            expected.append((name, float(region[1].start), float(region[0].start), float(region[1].stop),
                             float(region[0].stop)))
    assert len(expected) > 50
    assert as_tuples(boxes) == sorted(expected)
    assert not any(note.startswith("colour") for note in notes)


def test_real_isaid_without_instance_ids_gives_the_components(shared_data: Path) -> None:
    colour, ids = load_isaid(shared_data, "train", "P0005")
    boxes, _ = boxes_from_color_mask(colour, ISAID_PALETTE, min_area=1)
    for (r, g, b), name in ISAID_PALETTE.items():
        if name != "background":
            found = sorted((box.x_min, box.y_min, box.x_max, box.y_max) for box in boxes if box.label == name)
            assert found == component_boxes(np.all(colour == (r, g, b), axis=-1))
    assert len(boxes) < len(np.unique(ids)) - 1  # touching vehicles merge without instance ids
