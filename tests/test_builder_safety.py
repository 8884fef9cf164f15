"""Builder safety: paths read from annotation files stay in their folder, class names are plain, annotation text
is decoded by rule, the corpus "up to date" check verifies its shards, and killed builds' leftovers are removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from dataset_builders.benchmark_datasets import build_retrieval
from dataset_builders.corpus import REPORT_NAME, CorpusConfig, build_corpus
from dataset_builders.remotecount import from_release
from dataset_builders.sources import read_source
from dataset_builders.sources.base import path_inside

DATA = Path(__file__).parent / "data"
GOOD = DATA / "bad_images" / "good.png"
BOX = "4 4 40 4 40 40 4 40 plane 0\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every source folder that no row may reach."""
    path = tmp_path / "secret.png"
    shutil.copy(GOOD, path)
    return path


def _escapes(secret: Path) -> list[str]:
    return ["../secret.png", "../../secret.png", str(secret), "images/../../secret.png"]


def test_path_inside_refuses_dotdot_absolute_and_symlinks_out(tmp_path: Path, secret: Path) -> None:
    folder = tmp_path / "root"
    (folder / "sub").mkdir(parents=True)
    (folder / "out").symlink_to(secret)
    assert path_inside(folder, "sub/a.png") == folder / "sub" / "a.png"
    assert path_inside(folder, "sub/../a.png") == folder / "sub" / "../a.png"
    for name in ["../secret.png", str(secret), "sub/../../secret.png", "out", ""]:
        assert path_inside(folder, name) is None, name


@pytest.mark.parametrize("name", range(4))
def test_caption_json_filename_outside_the_image_folder_is_skipped_and_recorded(tmp_path: Path, secret: Path,
                                                                               name: int) -> None:
    root = tmp_path / "data" / "rsitmd"
    (root / "images").mkdir(parents=True)
    shutil.copy(GOOD, root / "images" / "ok.png")
    filename = _escapes(secret)[name]
    images = [{"filename": "ok.png", "split": "train", "sentences": [{"raw": "a plane"}]},
              {"filename": filename, "split": "train", "sentences": [{"raw": "stolen"}]}]
    (root / "dataset_rsitmd.json").write_text(json.dumps({"images": images}))
    records, skipped = read_source("captions", root)
    assert [record.image_path.name for record in records] == ["ok.png"]
    assert [(entry.path, entry.reason) for entry in skipped] == [
        (f"{root / 'dataset_rsitmd.json'}#images[1]",
         f"path {filename!r} leaves the source folder {root / 'images'}: row skipped")]


def test_voc_filename_outside_is_skipped_with_its_line(tmp_path: Path, secret: Path) -> None:
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "a.xml").write_text(
        "<annotation>\n<filename>../../secret.png</filename>\n<size><width>64</width><height>64</height></size>\n"
        "<object><name>plane</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
        "</object>\n</annotation>\n")
    records, skipped = read_source("voc", root)
    assert records == []
    assert [(Path(entry.path).name, entry.line) for entry in skipped] == [("a.xml", 2)]
    assert "leaves the annotation's folder" in skipped[0].reason


def test_csv_and_au_air_rows_outside_are_skipped(tmp_path: Path, secret: Path) -> None:
    table = tmp_path / "csv" / "boxes.csv"
    table.parent.mkdir()
    table.write_text(f"image_path,xmin,ymin,xmax,ymax,label\n{secret},1,1,9,9,tree\n../secret.png,1,1,9,9,tree\n")
    records, skipped = read_source("csv", table)
    assert records == [] and [(entry.line, "leaves the source folder" in entry.reason) for entry in skipped] == [
        (2, True), (3, True)]
    root = tmp_path / "au_air"
    (root / "images").mkdir(parents=True)
    (root / "annotations.json").write_text(json.dumps({"annotations": [
        {"image_name": "../../secret.png", "bbox": []}]}))
    records, skipped = read_source("au_air", root)
    assert records == [] and skipped[0].path.endswith("#annotations[0]")


def test_dota_class_names_must_be_plain(tmp_path: Path) -> None:
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    shutil.copy(GOOD, root / "images" / "a.png")
    (root / "labelTxt" / "a.txt").write_text(
        "4 4 40 4 40 40 4 40 ../../etc/passwd 0\n4 4 40 4 40 40 4 40 <script> 0\n4 4 40 4 40 40 4 40 storage-tank 0\n")
    records, skipped = read_source("dota", root)
    assert [box.label for box in records[0].boxes] == ["storage-tank"]
    assert [(entry.line, "is not a plain name" in entry.reason) for entry in skipped] == [(1, True), (2, True)]


def test_annotation_text_utf8_then_recorded_latin1(tmp_path: Path) -> None:
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    shutil.copy(GOOD, root / "images" / "a.png")
    (root / "labelTxt" / "a.txt").write_bytes("\ufeffimagesource:Ségou\n".encode() + BOX.encode())
    records, skipped = read_source("dota", root)
    assert records[0].provenance["imagesource"] == "Ségou" and skipped == []
    (root / "labelTxt" / "a.txt").write_bytes("imagesource:Ségou\n".encode("latin-1") + BOX.encode())
    records, skipped = read_source("dota", root)
    assert records[0].provenance["imagesource"] == "Ségou" and len(records[0].boxes) == 1
    assert [entry.reason for entry in skipped] == ["not UTF-8 (byte 13: 0xe9), decoded as latin-1"]


def test_remotecount_release_rows_outside_skipped_and_jsonl_errors_name_the_line(tmp_path: Path,
                                                                                secret: Path) -> None:
    root = tmp_path / "release"
    (root / "images").mkdir(parents=True)
    shutil.copy(GOOD, root / "images" / "a.png")
    lines = [{"image": "a.png", "caption": "There are two planes in the image."},
             {"image": "../../secret.png", "caption": "There is one ship in the image."},
             {"image": str(secret), "caption": "There is one ship in the image."}]
    (root / "counts.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    report = from_release(root, tmp_path / "out")
    assert report["rows"] == {"test": 1}
    assert [entry["path"] for entry in report["reader_skipped"]] == [f"{root / 'counts.jsonl'}:2",
                                                                    f"{root / 'counts.jsonl'}:3"]
    assert json.loads((tmp_path / "out" / REPORT_NAME).read_text())["reader_skipped"] == report["reader_skipped"]
    assert datasets.load_dataset(str(tmp_path / "out"), split="test")["caption"] == [lines[0]["caption"]]
    (root / "counts.jsonl").write_text(json.dumps(lines[0]) + "\n\n{broken\n")
    with pytest.raises(ValueError, match=r"counts\.jsonl:3: not valid JSON"):
        from_release(root, tmp_path / "out2")


def test_retrieval_benchmark_filename_outside_is_skipped(tmp_path: Path, secret: Path) -> None:
    root = tmp_path / "rsitmd"
    (root / "images").mkdir(parents=True)
    shutil.copy(GOOD, root / "images" / "ok.png")
    images = [{"filename": "ok.png", "split": "test", "sentences": [{"raw": "a plane"}]},
              {"filename": "../../secret.png", "split": "test", "sentences": [{"raw": "stolen"}]}]
    (root / "dataset_rsitmd.json").write_text(json.dumps({"images": images}))
    report = build_retrieval(root, tmp_path / "out", "rsitmd")
    assert report["rows"] == {"test": 1} and "leaving" in report["skipped"][0]["reason"]


@pytest.fixture
def dota(tmp_path: Path) -> Path:
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    shutil.copy(GOOD, root / "images" / "a.png")
    (root / "labelTxt" / "a.txt").write_text(BOX)
    return root


def test_up_to_date_check_verifies_the_shards(dota: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    config = CorpusConfig(source=[f"dota={dota}"], output=str(output))
    first = build_corpus(config)
    (shard,) = first["shards"]
    assert build_corpus(config) == first  # up to date: nothing rebuilt
    (output / shard).unlink()
    rebuilt = build_corpus(config)
    assert (output / shard).is_file() and rebuilt["shards"] == first["shards"]
    (output / shard).write_bytes(b"PAR1 damaged")
    assert build_corpus(config)["shards"] == first["shards"]
    assert datasets.load_dataset(str(output), split="train").num_rows == 1


def test_partial_folders_of_dead_builds_are_removed_and_reported(dota: Path, tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          check=True, capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.partial-{dead_pid}"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "train-00000.parquet").write_bytes(b"x" * 1000)
    running = tmp_path / f".out.partial-{os.getppid()}"  # a live process: its build is left alone
    running.mkdir()
    report = build_corpus(CorpusConfig(source=[f"dota={dota}"], output=str(tmp_path / "out")))
    assert report["stale_partials_removed"] == [str(stale)]
    assert not stale.exists() and running.is_dir()
