"""Mask-to-Box (M2B): segmentation masks -> horizontal boxes per class (RemoteCLIP §III-B), then B2C.

For every class of a mask the class pixels form a binary mask; the outer contours of its connected
components are traced with Suzuki's border following (``cv2.findContours(binary, cv2.RETR_EXTERNAL,
cv2.CHAIN_APPROX_SIMPLE)``, 8-connected foreground) and each contour's point min/max is a box. A component
nested in a hole of another component of the same class has no outer contour of its own; it lies inside
the enclosing box. Where an instance-id mask exists (iSAID ``_instance_id_RGB.png``) the binary mask is
made per (class, instance) instead, so touching objects of one class get separate boxes; one instance is
one box (the min/max over all its contours, even if occlusion split it into pieces).

Box convention: pixel ``(x, y)`` covers the square ``[x, x + 1) x [y, y + 1)``, so a component whose pixels
span columns ``min_x..max_x`` and rows ``min_y..max_y`` (inclusive) gets ``Box(x_min=min_x, y_min=min_y,
x_max=max_x + 1, y_max=max_y + 1)``: the box contains every foreground pixel and a single pixel has area 1.

Components (or instances) with fewer than ``min_area`` pixels are dropped as specks and reported in the
notes, one note per class. Values that are neither a named class nor ignored (colours outside the palette,
unknown ids) are reported in the notes with their pixel count and are not boxed. An all-background mask
gives no boxes and no notes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import cv2
import numpy as np

from dataset_builders.b2c import normalize_class_name
from dataset_builders.records import Box

__all__ = [
    "DEFAULT_MIN_AREA",
    "ISAID_PALETTE",
    "ISPRS_PALETTE",
    "LOVEDA_CLASSES",
    "LOVEDA_IGNORE_IDS",
    "boxes_from_color_mask",
    "boxes_from_index_mask",
]

DEFAULT_MIN_AREA = 16  # pixels; components below this are specks (noise, annotation slivers)

# iSAID semantic colours (RGB) -> class, as released (names keep the devkit's spelling; B2C normalises them)
ISAID_PALETTE: Mapping[tuple[int, int, int], str] = {
    (0, 0, 0): "background",
    (0, 0, 63): "ship",
    (0, 63, 63): "storage_tank",
    (0, 63, 0): "baseball_diamond",
    (0, 63, 127): "tennis_court",
    (0, 63, 191): "basketball_court",
    (0, 63, 255): "Ground_Track_Field",
    (0, 127, 63): "Bridge",
    (0, 127, 127): "Large_Vehicle",
    (0, 0, 127): "Small_Vehicle",
    (0, 0, 191): "Helicopter",
    (0, 0, 255): "Swimming_pool",
    (0, 191, 127): "Roundabout",
    (0, 127, 191): "Soccer_ball_field",
    (0, 127, 255): "plane",
    (0, 100, 155): "Harbor",
}

# ISPRS 2D semantic labelling, Potsdam and Vaihingen (same six colours); clutter/background is ignored
ISPRS_PALETTE: Mapping[tuple[int, int, int], str] = {
    (255, 255, 255): "impervious surfaces",
    (0, 0, 255): "building",
    (0, 255, 255): "low vegetation",
    (0, 255, 0): "tree",
    (255, 255, 0): "car",
    (255, 0, 0): "clutter",
}

# LoveDA index masks: 0 is no-data, 1 background; pass ``ignore_ids=LOVEDA_IGNORE_IDS``
LOVEDA_CLASSES: Mapping[int, str] = {
    0: "no-data",
    1: "background",
    2: "building",
    3: "road",
    4: "water",
    5: "barren",
    6: "forest",
    7: "agriculture",
}
LOVEDA_IGNORE_IDS = (0, 1)

_DEFAULT_IGNORE = ("background", "clutter")


def _box_from_points(points: np.ndarray, label: str, offset: tuple[int, int]) -> Box:
    """Box of contour points ``(K, 2)`` (x, y) in a crop at ``offset`` (x0, y0): min and max + 1 (see module doc)."""
    x0, y0 = offset
    (x_min, y_min), (x_max, y_max) = points.min(axis=0), points.max(axis=0)
    return Box(label, float(x_min + x0), float(y_min + y0), float(x_max + x0 + 1), float(y_max + y0 + 1))


def _outer_contours(binary: np.ndarray) -> list[np.ndarray]:
    """Outer contours of the 8-connected components of a uint8 binary mask, each ``(K, 2)`` int (x, y)."""
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [contour.reshape(-1, 2) for contour in contours]


def _component_boxes(binary: np.ndarray, label: str, offset: tuple[int, int], min_area: int) -> tuple[list[Box], list[int]]:
    """Boxes of the outer components of a binary crop (area >= min_area) and the areas of the dropped ones."""
    _, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    boxes: list[Box] = []
    dropped: list[int] = []
    for points in _outer_contours(binary):
        x, y = points[0]
        area = int(stats[components[y, x], cv2.CC_STAT_AREA])
        if area < min_area:
            dropped.append(area)
        else:
            boxes.append(_box_from_points(points, label, offset))
    return boxes, dropped


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct value >= 0 of ``keys`` (H, W): the value, its pixel count, and its pixel bbox corners
    ``(y0, x0)`` and ``(y1, x1)`` (inclusive), as arrays ``(G,)``, ``(G,)``, ``(G, 2)``, ``(G, 2)``."""
    ys, xs = np.nonzero(keys >= 0)
    if not ys.size:
        empty = np.empty((0, 2), dtype=np.intp)
        return np.empty(0, dtype=keys.dtype), np.empty(0, dtype=np.intp), empty, empty
    found = keys[ys, xs]
    order = np.argsort(found, kind="stable")  # one sort: pixels grouped by value
    found, ys, xs = found[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, found[1:] != found[:-1]])
    counts = np.diff(np.r_[starts, found.size])
    lows = np.stack([np.minimum.reduceat(ys, starts), np.minimum.reduceat(xs, starts)], axis=1)
    highs = np.stack([np.maximum.reduceat(ys, starts), np.maximum.reduceat(xs, starts)], axis=1)
    return found[starts], counts, lows, highs


def _boxes_from_class_map(classes: np.ndarray, codes: Sequence[int], names: Mapping[int, str], min_area: int,
                          instance_ids: np.ndarray | None) -> tuple[list[Box], list[str]]:
    """M2B on a (H, W) integer map of class codes (-1 = not boxed) whose present codes are ``codes`` (ascending);
    ``instance_ids`` (H, W) splits instances."""
    boxes: list[Box] = []
    notes: list[str] = []
    for code in codes:
        label = names[code]
        in_class = classes == code
        ys, xs = np.nonzero(in_class)
        y0, x0, y1, x1 = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
        crop, offset = in_class[y0:y1, x0:x1], (int(x0), int(y0))
        if instance_ids is None:
            found, dropped = _component_boxes(crop.astype(np.uint8), label, offset, min_area)
        else:
            instances = np.where(crop, instance_ids[y0:y1, x0:x1], -1)
            found, dropped = _instance_boxes(instances, label, offset, min_area)
            unassigned = crop & (instances == 0)
            if unassigned.any():
                notes.append(f"{int(unassigned.sum())} pixels of class {label!r} have no instance id (0): "
                             "boxed by connected components")
                more, more_dropped = _component_boxes(unassigned.astype(np.uint8), label, offset, min_area)
                found, dropped = found + more, dropped + more_dropped
        boxes.extend(found)
        if dropped:
            notes.append(f"dropped {len(dropped)} speck(s) of class {label!r} below min_area={min_area} px "
                         f"(areas {sorted(dropped)})")
    return boxes, notes


def _instance_boxes(instances: np.ndarray, label: str, offset: tuple[int, int],
                    min_area: int) -> tuple[list[Box], list[int]]:
    """One box per instance id > 0 of a crop (``-1`` outside the class): min/max over its outer contours."""
    values, counts, lows, highs = _groups(np.where(instances > 0, instances, -1))
    boxes: list[Box] = []
    dropped: list[int] = []
    for value, count, (y0, x0), (y1, x1) in zip(values, counts, lows, highs):
        if count < min_area:
            dropped.append(int(count))
            continue
        binary = (instances[y0:y1 + 1, x0:x1 + 1] == value).astype(np.uint8)
        points = np.concatenate(_outer_contours(binary))
        boxes.append(_box_from_points(points, label, (offset[0] + int(x0), offset[1] + int(y0))))
    return boxes, dropped


def _check_common(min_area: int, instance_ids: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Validate ``min_area`` and the instance-id map; return the map as int32 / int64 (or None)."""
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1 pixel, got {min_area}")
    if instance_ids is None:
        return None
    instance_ids = np.asarray(instance_ids)
    if instance_ids.shape != shape or not np.issubdtype(instance_ids.dtype, np.integer):
        raise ValueError(f"instance_ids must be an integer (H, W) array of the mask's shape {shape}, "
                         f"got {instance_ids.dtype} {instance_ids.shape}")
    return instance_ids if instance_ids.dtype in (np.int32, np.int64) else instance_ids.astype(np.int64)


def _m2b(values: np.ndarray, names: Mapping[int, str], ignored: Collection[int], min_area: int,
         instance_ids: np.ndarray | None) -> tuple[list[Box], list[str], list[tuple[int, int]]]:
    """M2B on a (H, W) integer map of values: boxes, notes, and (value, pixel count) of unknown values."""
    # each pixel's slot in the sorted known (named or ignored) values: counting them needs no sort of the whole
    # mask, only the (usually absent) unknown pixels go through np.unique
    known = np.array(sorted(set(names) | set(ignored)), dtype=values.dtype)
    slot = np.searchsorted(known, values)  # (H, W) in 0..K; K = no known value there
    is_known = (slot < known.size) & (np.append(known, 0)[slot] == values)
    present = np.bincount(slot[is_known], minlength=known.size)
    boxed = [int(value) for value, count in zip(known, present) if count and int(value) not in ignored]
    unknown_values, unknown_counts = np.unique(values[~is_known], return_counts=True)
    unknown = list(zip(unknown_values.tolist(), unknown_counts.tolist()))
    boxed_slot = np.append(np.isin(known, boxed), False)  # (K + 1,)
    classes = np.where(is_known & boxed_slot[slot], values, -1)
    boxes, notes = _boxes_from_class_map(classes, boxed, names, min_area, instance_ids)
    return boxes, notes, unknown


def boxes_from_index_mask(mask: np.ndarray, class_names: Mapping[int, str], *, ignore_ids: Collection[int] = (0,),
                          min_area: int = DEFAULT_MIN_AREA,
                          instance_ids: np.ndarray | None = None) -> tuple[list[Box], list[str]]:
    """M2B for an index mask ``(H, W)`` of class ids: boxes (labels from ``class_names``) and notes.

    Ids in ``ignore_ids`` are background; ids neither named nor ignored are reported in the notes with their
    pixel count. ``instance_ids`` (H, W) ints (0 = none) separate touching instances. See the module doc.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"index mask must be an integer (H, W) array, got {mask.dtype} {mask.shape}")
    instance_ids = _check_common(min_area, instance_ids, mask.shape)
    names = {int(value): name for value, name in class_names.items()}
    boxes, notes, unknown = _m2b(mask.astype(np.int64), names, {int(value) for value in ignore_ids}, min_area,
                                 instance_ids)
    return boxes, [f"unknown class id {value}: {count} pixels (not in class_names, not ignored; not boxed)"
                   for value, count in unknown] + notes


def boxes_from_color_mask(mask_rgb: np.ndarray, palette: Mapping[tuple[int, int, int], str], *,
                          ignore: Collection[str] = _DEFAULT_IGNORE, min_area: int = DEFAULT_MIN_AREA,
                          instance_ids: np.ndarray | None = None) -> tuple[list[Box], list[str]]:
    """M2B for an RGB colour-coded mask ``(H, W, 3)`` uint8: boxes (labels from ``palette``) and notes.

    Classes whose normalised name is in ``ignore`` (default background, clutter) are not boxed; colours outside
    the palette are reported in the notes with their pixel count. ``instance_ids`` (H, W) ints (0 = none), e.g.
    iSAID's instance RGB decoded as ``R * 65536 + G * 256 + B``, separate touching instances.
    """
    mask_rgb = np.asarray(mask_rgb)
    if mask_rgb.ndim != 3 or mask_rgb.shape[2] != 3 or mask_rgb.dtype != np.uint8:
        raise ValueError(f"colour mask must be a uint8 (H, W, 3) RGB array, got {mask_rgb.dtype} {mask_rgb.shape}")
    instance_ids = _check_common(min_area, instance_ids, mask_rgb.shape[:2])
    names: dict[int, str] = {}
    for colour, name in palette.items():
        if len(colour) != 3 or not all(0 <= channel <= 255 for channel in colour):
            raise ValueError(f"palette colour {colour!r} (class {name!r}) is not an RGB triple of 0..255")
        names[_rgb_code(*colour)] = name
    ignored_names = {normalize_class_name(name) for name in ignore}
    ignored = {code for code, name in names.items() if normalize_class_name(name) in ignored_names}
    codes = _rgb_code(*(mask_rgb[..., channel].astype(np.int32) for channel in range(3)))  # 24-bit codes
    boxes, notes, unknown = _m2b(codes, names, ignored, min_area, instance_ids)
    return boxes, [f"colour {(value >> 16, (value >> 8) & 255, value & 255)} not in the palette: {count} pixels "
                   "(not boxed)" for value, count in unknown] + notes


def _rgb_code(red: int | np.ndarray, green: int | np.ndarray, blue: int | np.ndarray) -> int | np.ndarray:
    """One integer per colour: ``R * 65536 + G * 256 + B``."""
    return (red << 16) | (green << 8) | blue
