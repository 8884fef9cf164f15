"""DOTA reader on the real DOTA samples and on hand-made bad label files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_builders.records import Box
from dataset_builders.sources import get_reader, read_source


def test_real_dota_sample_pairs_images_and_labels(shared_data: Path) -> None:
    records, skipped = read_source("dota", shared_data / "dota")
    assert [record.image_path.name for record in records] == ["P0706.png", "P1888.png"]
    p1888 = records[1]
    assert (p1888.width, p1888.height) == (712, 557)
    assert p1888.provenance["imagesource"] == "GoogleEarth"
    assert p1888.provenance["gsd"] == "0.266170468393"
    label_lines = [line for line in (shared_data / "dota/labelTxt/P1888.txt").read_text().splitlines()[2:] if line.strip()]
    assert len(p1888.boxes) == len(label_lines)
    xs = [float(v) for v in label_lines[0].split()[0:8:2]]
    ys = [float(v) for v in label_lines[0].split()[1:8:2]]
    assert p1888.boxes[0] == Box(label_lines[0].split()[8], min(xs), min(ys), max(xs), max(ys))
    orphans = sorted(Path(entry.path).stem for entry in skipped if "without an image" in entry.reason)
    assert orphans == ["P0770", "P1088", "P1234", "P2598", "P2709"]


def test_real_dota_clips_box_past_the_border(shared_data: Path) -> None:
    records, skipped = read_source("dota", shared_data / "dota")
    clipped = [entry for entry in skipped if entry.reason.startswith("clipped")]
    assert [(Path(entry.path).name, entry.line) for entry in clipped] == [("P0706.txt", 3)]
    assert records[0].boxes[0] == Box("ship", 1054.0, 1011.0, 1111.0, 1062.0)


def test_float_coordinates_and_boxes_outside_the_patch(shared_data: Path) -> None:
    records, skipped = read_source("dota", shared_data / "dota_split")
    assert records[0].boxes == [Box("plane", 123.0, 171.0, 221.0, 199.0)]
    outside = [(entry.line, "wholly outside the 285x294 image" in entry.reason) for entry in skipped]
    assert outside == [(1, True), (2, True), (3, True)]


@pytest.fixture
def bad_dota(tmp_path: Path) -> Path:
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "images" / "A.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "images" / "NoLabel.png")
    (root / "labelTxt" / "A.txt").write_text(
        "imagesource:GoogleEarth\n"
        "gsd:0.5\n"
        "1 2 10 2 10 12 1 12 plane 0\n"        # line 3: good
        "1 2 10 2 10 12 plane 0\n"             # line 4: 6 coordinates
        "1 2 x 2 10 12 1 12 ship 0\n"          # line 5: not a number
        "5 5 5 5 5 5 5 5 ship 0\n"             # line 6: zero area
        "70 70 80 70 80 80 70 80 ship 0\n"     # line 7: outside
        "\n"
        "20.5 20.5 30.5 20.5 30.5 40.5 20.5 40.5 storage-tank 1\n"  # line 9: floats, difficult
        "1 2 10 2 10 12 1 12 plane 7\n"        # line 10: bad difficult flag
    )
    return root


def test_malformed_lines_are_dropped_with_file_and_line(bad_dota: Path) -> None:
    records, skipped = read_source("dota", bad_dota)
    assert [record.image_path.name for record in records] == ["A.png"]
    assert records[0].boxes == [Box("plane", 1.0, 2.0, 10.0, 12.0), Box("storage-tank", 20.5, 20.5, 30.5, 40.5)]
    by_line = {entry.line: entry.reason for entry in skipped if entry.line is not None}
    assert sorted(by_line) == [4, 5, 6, 7, 10]
    assert "got 8 fields" in by_line[4]
    assert "'x' is not a number" in by_line[5]
    assert "zero-area" in by_line[6]
    assert "wholly outside" in by_line[7]
    assert "difficult flag '7'" in by_line[10]
    assert any(entry.reason.startswith("image without an annotation file") and entry.path.endswith("NoLabel.png")
               for entry in skipped)


def test_include_difficult_false_drops_difficult_objects(bad_dota: Path) -> None:
    records, skipped = read_source("dota", bad_dota, include_difficult=False)
    assert [box.label for box in records[0].boxes] == ["plane"]
    assert any(entry.line == 9 and "include_difficult=False" in entry.reason for entry in skipped)


def test_missing_folder_and_unknown_option_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_reader("dota", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="neither|no image or label folder"):
        list(get_reader("dota", tmp_path).scan())
    with pytest.raises(ValueError, match="unknown reader option"):
        get_reader("dota", tmp_path, min_area=3)
    with pytest.raises(ValueError, match="unknown source format 'dotaa'"):
        get_reader("dotaa", tmp_path)


def test_unreadable_image_header_is_skipped(bad_dota: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bad_dota, copy)
    (copy / "images" / "A.png").write_bytes(b"not a png")
    records, skipped = read_source("dota", copy)
    assert records == []
    assert any(entry.path.endswith("A.png") and "cannot read image" in entry.reason for entry in skipped)
