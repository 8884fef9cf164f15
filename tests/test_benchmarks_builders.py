"""Benchmark builders: retrieval test splits from Karpathy JSON and folder-per-class ClassLabel sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_builders.benchmark_datasets import (
    build_classification,
    build_retrieval,
    find_class_root,
    splits_by_fraction,
)
from dataset_builders.build_benchmarks import main

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def local_sets(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rsscn7 and aid150 built once from the real samples through the CLI."""
    data_dir = tmp_path_factory.mktemp("benchmarks")
    assert main(["--classification", f"rsscn7={shared_data / 'rsscn7'}", "--classification",
                 f"aid150={shared_data / 'aid150'}", "--output", str(data_dir)]) == 0
    return data_dir


def test_rsscn7_classlabel_names_and_stratified_split(local_sets: Path, shared_data: Path) -> None:
    loaded = datasets.load_dataset(str(local_sets / "rsscn7"))
    names = sorted(path.name for path in (shared_data / "rsscn7").iterdir())
    assert names == ["aGrass", "bField", "cIndustry", "dRiverLake", "eForest", "fResident", "gParking"]
    assert loaded["test"].features["label"].names == names
    assert (loaded["train"].num_rows, loaded["test"].num_rows) == (175, 175)
    assert np.bincount(loaded["test"]["label"]).tolist() == [25] * 7
    assert not set(loaded["train"]["filename"]) & set(loaded["test"]["filename"])
    first = loaded["test"][0]
    label_name = names[first["label"]]
    assert first["filename"].startswith(label_name + "/")
    assert first["image"].size == (400, 400)
    original = np.asarray(Image.open(shared_data / "rsscn7" / first["filename"]))
    np.testing.assert_array_equal(np.asarray(first["image"]), original)


def test_aid150_thirty_classes(local_sets: Path) -> None:
    test = datasets.load_dataset(str(local_sets / "aid150"), split="test")
    assert test.features["label"].num_classes == 30
    assert test.features["label"].names[:3] == ["Airport", "BareLand", "BaseballField"]
    assert test.num_rows == 600
    report = json.loads((local_sets / "aid150" / "build_report.json").read_text())
    assert report["rows"] == {"train": 600, "test": 600} and report["skipped"] == []


def test_retrieval_test_split_groups_captions(tmp_path: Path) -> None:
    report = build_retrieval(DATA / "captions", tmp_path / "rsitmd", "rsitmd")
    test = datasets.load_dataset(str(tmp_path / "rsitmd"), split="test")
    assert test.column_names == ["image", "captions", "filename"]
    assert test["filename"] == ["farm_3.png"]
    assert test[0]["captions"] == ["Green farmland in rectangles.", "Fields of crops."]
    assert report["rows"] == {"test": 1}


def test_retrieval_without_test_images_raises(tmp_path: Path) -> None:
    shutil.copytree(DATA / "captions", tmp_path / "c")
    path = tmp_path / "c" / "dataset_rsitmd.json"
    data = json.loads(path.read_text())
    data["images"] = [entry for entry in data["images"] if entry["split"] != "test"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no usable image with split == 'test'"):
        build_retrieval(tmp_path / "c", tmp_path / "out", "rsitmd")


def test_official_train_test_folders_wrapper_dirs_and_bad_images(tmp_path: Path) -> None:
    bad = DATA / "bad_images"
    for split, files in (("train", {"Beach": ["good.png"], "Forest": ["gray.png"]}),
                         ("test", {"Beach": ["rgba.png", "corrupt.jpg"], "Forest": ["multiband.tif"]})):
        for label, names in files.items():
            folder = tmp_path / "src" / split / label
            folder.mkdir(parents=True)
            for name in names:
                shutil.copy(bad / name, folder / name)
    report = build_classification(tmp_path / "src", tmp_path / "out", "rsc11")
    assert report["split_definition"] == {"kind": "source_folders", "description": "the source's own train/test folders"}
    assert report["rows"] == {"train": 2, "test": 2}
    assert [Path(entry["path"]).name for entry in report["skipped"]] == ["corrupt.jpg"]
    test = datasets.load_dataset(str(tmp_path / "out"), split="test")
    assert test["filename"] == ["Beach/rgba.png", "Forest/multiband.tif"] and test["label"] == [0, 1]
    assert {image.mode for image in test["image"]} == {"RGB"}
    wrapper = tmp_path / "EuroSAT" / "2750"
    shutil.copytree(tmp_path / "src" / "train", wrapper)
    assert find_class_root(tmp_path / "EuroSAT") == wrapper


def test_split_rules_and_name_errors(tmp_path: Path, capsys) -> None:
    per_class = {"a": [Path(f"a{i}.png") for i in range(5)], "b": [Path("b0.png")]}
    split = splits_by_fraction(per_class, 0.4, seed=1)
    assert [len(split["test"]["a"]), len(split["train"]["a"]), len(split["test"]["b"]), len(split["train"]["b"])] == [2, 3, 1, 0]
    assert splits_by_fraction(per_class, 0.4, seed=1) == split
    with pytest.raises(ValueError, match="must be lower-case"):
        build_classification(tmp_path, tmp_path / "o", "RSSCN7")
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\]"):
        build_classification(tmp_path, tmp_path / "o", "rsscn7", test_fraction=0.0)
    assert main(["--classification", "rsscn7", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --classification 'rsscn7': expected NAME=PATH\n"


def tiny_classes(root: Path, per_class: dict[str, list[str]]) -> Path:
    """A folder-per-class source of 8x8 PNGs (each a different colour)."""
    for index, (label, names) in enumerate(per_class.items()):
        (root / label).mkdir(parents=True)
        for offset, name in enumerate(names):
            Image.new("RGB", (8, 8), (index * 40, offset * 40, 7)).save(root / label / name, format="PNG")
    return root


def test_split_files_as_torchgeo_reads_them(tmp_path: Path) -> None:
    tiny_classes(tmp_path / "UCMerced_LandUse" / "Images", {
        "agricultural": ["agricultural00.png", "agricultural01.png", "agricultural02.png"],
        "beach": ["beach00.png", "beach01.png", "beach02.png", "beach03.png"]})
    lists = tmp_path / "splits"
    lists.mkdir()
    (lists / "uc_merced-train.txt").write_text("agricultural00.png\nbeach00.png\n\n")
    (lists / "uc_merced-val.txt").write_text("agricultural01.tif\nbeach/beach01.png\n")  # by stem, by class/name
    (lists / "uc_merced-test.txt").write_text("agricultural02.png\nbeach02.png\n")
    assert main(["--classification", f"ucmerced={tmp_path / 'UCMerced_LandUse'}", "--split-files", str(lists),
                 "--output", str(tmp_path / "out")]) == 0
    loaded = datasets.load_dataset(str(tmp_path / "out" / "ucmerced"))
    assert {split: loaded[split]["filename"] for split in loaded} == {
        "train": ["agricultural/agricultural00.png", "beach/beach00.png"],
        "validation": ["agricultural/agricultural01.png", "beach/beach01.png"],
        "test": ["agricultural/agricultural02.png", "beach/beach02.png"]}
    report = json.loads((tmp_path / "out" / "ucmerced" / "build_report.json").read_text())
    assert report["split_definition"]["kind"] == "split_files"
    assert report["split_definition"]["files"] == ["uc_merced-test.txt", "uc_merced-train.txt", "uc_merced-val.txt"]
    assert report["unlisted"] == ["beach/beach03.png"]  # in the source, in no list: named, not silently dropped
    card = (tmp_path / "out" / "ucmerced" / "README.md").read_text()
    assert "Split definition: the published split lists `uc_merced-train.txt`, `uc_merced-val.txt`" in card
    assert "1 source images in no list" in card


def test_split_file_errors_name_file_and_line_and_fallback_is_named(tmp_path: Path) -> None:
    source = tiny_classes(tmp_path / "src", {"a": ["a0.png", "a1.png"], "b": ["b0.png", "b1.png"]})
    lists = tmp_path / "splits"
    lists.mkdir()
    (lists / "rsscn7-test.txt").write_text("a0.png\nnope.png\n")
    with pytest.raises(ValueError, match=r"rsscn7-test.txt:2: 'nope.png' is not an image of the source"):
        build_classification(source, tmp_path / "out", "rsscn7", split_files=lists)
    (lists / "rsscn7-test.txt").write_text("a0.png\nb0.png\n")
    (lists / "rsscn7-train.txt").write_text("a1.png\na/a0.png\n")
    with pytest.raises(ValueError, match=r"rsscn7-test.txt:1: 'a0.png' is already listed at .*rsscn7-train.txt:2"):
        build_classification(source, tmp_path / "out", "rsscn7", split_files=lists)
    (lists / "rsscn7-test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="but no rsscn7-test.txt"):
        build_classification(source, tmp_path / "out", "rsscn7", split_files=lists)
    with pytest.raises(FileNotFoundError, match="--split-files .*missing: no such folder"):
        build_classification(source, tmp_path / "out", "rsscn7", split_files=tmp_path / "missing")
    report = build_classification(source, tmp_path / "out", "rsc11", split_files=lists)  # no rsc11 lists there
    assert report["split_definition"] == {
        "kind": "seeded_fallback", "seed": 0, "test_fraction": 0.5,
        "description": "the seeded fallback split (no published split lists given): seed 0, 0.5 of each class in "
                       "`test`, the rest in `train`"}
    assert "Split definition: the seeded fallback split" in (tmp_path / "out" / "README.md").read_text()
