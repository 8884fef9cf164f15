"""Stanford Drone reader: frames sampled from the video, lost boxes counted, malformed lines recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dataset_builders.records import Box
from dataset_builders.sources import read_source

DATA = Path(__file__).parent / "data" / "stanford_drone"


def test_frames_every_stride_with_visible_boxes(tmp_path: Path) -> None:
    records, skipped = read_source("stanford_drone", DATA, frame_stride=2, frames_dir=str(tmp_path))
    assert [(r.provenance["frame"], r.boxes) for r in records] == [
        ("0", [Box("Pedestrian", 10, 10, 20, 30), Box("Biker", 30, 5, 50, 20)]),
        ("2", [Box("Pedestrian", 12, 12, 22, 32)]),
        ("4", [Box("Pedestrian", 12, 12, 22, 32)]),
    ]
    assert records[0].image_path == tmp_path / "little" / "video0" / "000000.jpg"
    with Image.open(records[0].image_path) as frame:
        assert frame.size == (64, 48) == (records[0].width, records[0].height)
    assert [(entry.line, entry.reason.split(":")[0]) for entry in skipped] == [(7, "malformed line dropped")]


def test_lost_boxes_are_counted_in_a_note(tmp_path: Path) -> None:
    records, skipped = read_source("stanford_drone", DATA, frame_stride=1, frames_dir=str(tmp_path))
    frame1 = next(r for r in records if r.provenance["frame"] == "1")
    assert frame1.boxes == [Box("Pedestrian", 11, 11, 21, 31)]
    assert any("frame 1: 1 box(es) flagged lost" in entry.reason for entry in skipped)
    with Image.open(frame1.image_path) as frame_image:
        assert np.asarray(frame_image).shape == (48, 64, 3)
