"""LEVIR, CARPK and VisDrone readers (one text line per object) on hand-made samples in tests/data."""

from __future__ import annotations

from pathlib import Path

from dataset_builders.records import Box
from dataset_builders.sources import read_source

DATA = Path(__file__).parent / "data"


def test_levir_class_ids_and_bad_lines() -> None:
    records, skipped = read_source("levir", DATA / "levir")
    assert [(record.image_path.name, record.boxes) for record in records] == [
        ("10.jpg", [Box("plane", 10, 12, 30, 28), Box("oil tank", 40, 40, 60, 62)]),
        ("11.jpg", [Box("ship", 5, 5, 25, 25)]),
    ]
    assert [(Path(entry.path).name, entry.line) for entry in skipped] == [("11.txt", 2), ("11.txt", 3)]
    assert "unknown class id '7' (allowed: [1, 2, 3])" in skipped[0].reason
    assert "got 3 fields" in skipped[1].reason


def test_carpk_zero_area_dropped_and_box_clipped() -> None:
    records, skipped = read_source("carpk", DATA / "carpk")
    assert records[0].boxes == [Box("car", 1, 1, 20, 20), Box("car", 50, 50, 64, 64)]
    assert [(entry.line, entry.reason.split(":")[0]) for entry in skipped] == [
        (2, "dropped box 'car'"), (3, "clipped box 'car'")]
    assert "zero-area" in skipped[0].reason


def test_visdrone_xywh_categories_and_trailing_comma() -> None:
    records, skipped = read_source("visdrone", DATA / "visdrone")
    assert records[0].boxes == [Box("car", 5, 6, 25, 21), Box("ignored regions", 30, 30, 40, 40),
                                Box("pedestrian", 40, 40, 60, 64)]
    assert [(entry.line, entry.reason.startswith("clipped")) for entry in skipped] == [(3, True)]
