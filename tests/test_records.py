"""Tests of dataset_builders.records: box validation and helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataset_builders.records import Box, Record, Skipped


def test_box_centre_and_dict() -> None:
    box = Box("ship", 10.0, 20.0, 30.0, 60.0)
    assert box.center == (20.0, 40.0)
    assert box.as_dict() == {"label": "ship", "x_min": 10.0, "y_min": 20.0, "x_max": 30.0, "y_max": 60.0}


@pytest.mark.parametrize("coords", [(5, 0, 5, 1), (0, 3, 1, 2), (0, 0, float("nan"), 1), (0, 0, float("inf"), 1)])
def test_box_rejects_degenerate_or_non_finite(coords: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError, match="Box 'car'"):
        Box("car", *coords)


def test_record_defaults_are_independent() -> None:
    first = Record(Path("a.png"), 4, 4, "dota")
    second = Record(Path("b.png"), 4, 4, "dota")
    first.boxes.append(Box("ship", 0, 0, 1, 1))
    assert second.boxes == [] and second.captions == [] and second.provenance == {}
    assert Skipped("a.txt", "bad line", line=3).source == ""
