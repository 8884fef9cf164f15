"""VOC-XML readers (DIOR, HRRSD, RSOD, generic VOC) and HRSC2016 on real and hand-made samples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dataset_builders.records import Box
from dataset_builders.sources import read_source
from dataset_builders.sources.voc import rotated_corners
from dataset_builders.sources.xmlfile import XmlFile

DATA = Path(__file__).parent / "data"


def test_dior_oriented_box_from_real_sample(shared_data: Path) -> None:
    records, skipped = read_source("dior", shared_data / "dior")
    assert skipped == []
    assert [(r.image_path.name, r.width, r.height, r.boxes) for r in records] == [
        ("00001.jpg", 800, 800, [Box("golffield", 133, 237, 684, 672)])]


def test_generic_voc_reads_neon_xmls_by_filename(shared_data: Path) -> None:
    records, notes = read_source("voc", shared_data / "neon_trees")
    by_name = {record.image_path.name: record for record in records}
    assert sorted(by_name) == ["2019_YELL_2_528000_4978000_image_crop2.png", "2019_YELL_2_541000_4977000_image_crop.png",
                               "OSBS_029.tif", "SOAP_061.png"]
    assert len(by_name["OSBS_029.tif"].boxes) == 61
    assert by_name["OSBS_029.tif"].boxes[0] == Box("Tree", 203, 67, 227, 90)
    assert all(not note.reason.startswith("dropped") for note in notes)


def test_hrrsd_layout() -> None:
    records, skipped = read_source("hrrsd", DATA / "hrrsd")
    assert skipped == []
    assert records[0].boxes == [Box("bridge", 2, 3, 40, 20), Box("crossroad", 10, 30, 30, 60)]


def test_rsod_bad_objects_and_malformed_xml() -> None:
    records, skipped = read_source("rsod", DATA / "rsod")
    assert [record.image_path.name for record in records] == ["aircraft_1.jpg"]
    assert records[0].boxes == [Box("aircraft", 5, 5, 15, 15)]
    reasons = [(Path(entry.path).name, entry.line, entry.reason) for entry in skipped]
    assert reasons[0][:2] == ("aircraft_1.xml", 18) and "zero-area" in reasons[0][2]
    assert reasons[1][:2] == ("aircraft_1.xml", 28) and "neither <bndbox> nor <robndbox>" in reasons[1][2]
    assert reasons[2][0] == "oiltank_1.xml" and "malformed XML" in reasons[2][2]


def test_rotated_corners_of_quarter_turn() -> None:
    xs, ys = rotated_corners(10.0, 20.0, 4.0, 2.0, math.pi / 2)
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((9.0, 11.0, 18.0, 22.0))


def test_xml_missing_tag_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_text("<annotation>\n  <object>\n    <name>x</name>\n  </object>\n</annotation>\n")
    xml = XmlFile(path)
    obj = xml.root.find("object")
    with pytest.raises(ValueError, match=r"a\.xml:2: <object> has no <bndbox>"):
        xml.text(obj, "bndbox")


def test_hrsc_boxes_are_ships_and_orphan_xml_is_recorded() -> None:
    records, skipped = read_source("hrsc", DATA / "hrsc")
    assert records[0].boxes == [Box("ship", 4, 6, 20, 30), Box("ship", 40, 10, 64, 20)]
    assert records[0].provenance["class_ids"] == "100000013,100000013"
    assert [(Path(entry.path).name, entry.line) for entry in skipped] == [("100000001.xml", 18), ("100000002.xml", None)]
    assert skipped[0].reason == "clipped box 'ship': (40.0, 10.0, 70.0, 20.0) -> (40.0, 10.0, 64.0, 20.0) to the 64x64 image"
    assert skipped[1].reason == "annotation file without an image (no image named '100000002')"


def test_real_hrsc_annotation_without_image(shared_data: Path) -> None:
    records, skipped = read_source("hrsc", shared_data / "hrsc")
    assert records == []
    assert [(Path(entry.path).name, "without an image" in entry.reason) for entry in skipped] == [("100000006.xml", True)]
