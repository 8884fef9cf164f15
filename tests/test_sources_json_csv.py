"""Single-file annotation sources: caption JSON (Karpathy), AU-AIR JSON and CSV box tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dataset_builders.records import Box
from dataset_builders.sources import read_source
from dataset_builders.sources.captions import load_karpathy_json

DATA = Path(__file__).parent / "data"


def test_captions_default_splits_skip_test_empty_and_missing() -> None:
    records, skipped = read_source("captions", DATA / "captions")
    assert [(r.image_path.name, r.provenance["split"], len(r.captions)) for r in records] == [
        ("airport_1.png", "train", 6), ("beach_2.png", "val", 2)]
    assert records[1].captions == ["A beach next to the sea.", "Yellow sand and blue water."]
    reasons = [entry.reason for entry in skipped]
    assert reasons[0] == "farm_3.png: split 'test' not in the selected splits ['train', 'val']"
    assert reasons[1] == "river_4.png: no non-empty caption (entry images[3])"
    assert reasons[2].startswith("caption entry without an image") and "missing_5.png" in reasons[2]


def test_captions_split_option_and_json_file_path() -> None:
    records, _ = read_source("captions", DATA / "captions" / "dataset_rsitmd.json", splits=["test"])
    assert [record.image_path.name for record in records] == ["farm_3.png"]


def test_captions_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "dataset_x.json"
    bad.write_text('{"images": [\n  {"filename": "a.png",}\n]}')
    with pytest.raises(ValueError, match=r"dataset_x\.json:2: not valid JSON"):
        load_karpathy_json(bad)
    bad.write_text('{"pictures": []}')
    with pytest.raises(ValueError, match="'images' list"):
        load_karpathy_json(bad)


def test_au_air_boxes_classes_and_orphans() -> None:
    records, skipped = read_source("au_air", DATA / "au_air")
    assert [(r.image_path.name, r.boxes) for r in records] == [
        ("frame_0001.jpg", [Box("Car", 12, 10, 32, 20), Box("Human", 40, 40, 48, 48)]),
        ("frame_0002.jpg", [])]
    reasons = [entry.reason for entry in skipped]
    assert reasons[0].startswith("annotations[1].bbox[0]: malformed box dropped (IndexError")
    assert reasons[1].startswith("annotations[1].bbox[1]: dropped box 'Truck': zero-area")
    assert "frame_9999.jpg not found" in reasons[2]
    assert skipped[3].path.endswith("frame_0003.jpg") and "without an annotation entry" in reasons[3]


def test_csv_neon_table_and_non_table_files(shared_data: Path, tmp_path: Path) -> None:
    records, notes = read_source("csv", shared_data / "neon_trees" / "OSBS_029.csv")
    rows = (shared_data / "neon_trees" / "OSBS_029.csv").read_text().splitlines()[1:]
    assert [record.image_path.name for record in records] == ["OSBS_029.tif"]
    assert len(records[0].boxes) == len(rows)
    assert records[0].boxes[0] == Box("Tree", 203, 67, 227, 90)
    assert notes == []
    folder_records, folder_skipped = read_source("csv", shared_data / "neon_trees")
    assert "classes.csv" in {Path(entry.path).name for entry in folder_skipped if "not a box table" in entry.reason}
    assert {record.image_path.name for record in folder_records} >= {"OSBS_029.png", "SOAP_061.png"}


def test_csv_bad_rows(tmp_path: Path) -> None:
    shutil.copy(DATA / "carpk" / "data" / "Images" / "20160331_NTU_00001.png", tmp_path / "a.png")
    (tmp_path / "boxes.csv").write_text(
        "image_path,xmin,ymin,xmax,ymax,label\n"
        "a.png,1,2,10,20,Tree\n"
        "a.png,1,2,ten,20,Tree\n"
        "a.png,1,2,10\n"
        "a.png,0,0,0,0,Tree\n"
        "gone.png,1,2,3,4,Tree\n")
    records, skipped = read_source("csv", tmp_path / "boxes.csv")
    assert records[0].boxes == [Box("Tree", 1, 2, 10, 20)]
    assert [(entry.line, entry.reason.split(":")[0]) for entry in skipped] == [
        (3, "malformed row dropped"), (4, "malformed row dropped"), (5, "dropped box 'Tree'"),
        (6, "rows for a missing image 'gone.png'")]


def test_au_air_missing_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="annotations.json not found"):
        read_source("au_air", tmp_path)
    (tmp_path / "annotations.json").write_text(json.dumps({"annotations": [{"bbox": []}]}))
    _, skipped = read_source("au_air", tmp_path)
    assert [entry.reason for entry in skipped] == ["entry has no 'image_name'"]
