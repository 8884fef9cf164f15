"""RemoteCount builder: rebuilt from DOTA-format annotations and converted from a release-layout folder."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import datasets
import pytest

from dataset_builders.build_remotecount import main
from dataset_builders.remotecount import (
    CATEGORIES,
    category_of,
    count_caption,
    from_dota,
    from_release,
    parse_caption,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture
def dota(tmp_path: Path) -> Path:
    """Two 64x64 images: one with 3 planes + 1 soccer-ball-field + 12 small vehicles, one with 11 ships."""
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    shutil.copy(DATA / "bad_images" / "good.png", root / "images" / "P1.png")
    shutil.copy(DATA / "bad_images" / "rgba.png", root / "images" / "P2.png")
    box = "1 1 9 1 9 9 1 9 {} 0\n"
    (root / "labelTxt" / "P1.txt").write_text("imagesource:GoogleEarth\ngsd:0.3\n" + box.format("plane") * 3
                                              + box.format("soccer-ball-field") + box.format("small-vehicle") * 12)
    (root / "labelTxt" / "P2.txt").write_text(box.format("ship") * 11)
    return root


def test_from_dota_one_sample_per_image_and_category(dota: Path, tmp_path: Path) -> None:
    report = from_dota(dota, tmp_path / "remotecount", seed=0)
    test = datasets.load_dataset(str(tmp_path / "remotecount"), split="test")
    assert test.column_names == ["image", "caption", "count", "category"]
    assert [(row["count"], row["category"]) for row in test] == [(3, "plane"), (1, "soccer field")]
    assert "three planes" in test[0]["caption"] and "one soccer field" in test[1]["caption"].lower()
    assert report["rows"] == {"test": 2}
    assert test[0]["image"].size == (64, 64)


def test_captions_are_seeded(dota: Path, tmp_path: Path) -> None:
    assert count_caption("ship", 2, random.Random("x")) == count_caption("ship", 2, random.Random("x"))
    captions = {count_caption("storage tank", 4, random.Random(seed)) for seed in range(40)}
    assert len(captions) > 1 and all("four storage tanks" in caption.lower() for caption in captions)
    with pytest.raises(ValueError, match=r"count=11 must be in \[1, 10\]"):
        count_caption("ship", 11, random.Random(0))


def test_category_mapping() -> None:
    assert len(CATEGORIES) == 13
    assert category_of("soccer-ball-field") == "soccer field"
    assert category_of("Ground_Track_Field") == "ground track field"
    assert category_of("small-vehicle") is None


def test_from_release_jsonl_and_caption_parsing(tmp_path: Path) -> None:
    root = tmp_path / "release"
    (root / "images").mkdir(parents=True)
    shutil.copy(DATA / "bad_images" / "good.png", root / "images" / "P0019.png")
    (root / "remotecount.jsonl").write_text(
        json.dumps({"image": "P0019.png", "caption": "There are 2 tennis courts in the image."}) + "\n"
        + json.dumps({"file_name": "P0019.png", "caption": "Seven ships near the harbor.", "count": 7,
                      "category": "ship"}) + "\n")
    report = from_release(root, tmp_path / "out")
    test = datasets.load_dataset(str(tmp_path / "out"), split="test")
    assert [(row["count"], row["category"]) for row in test] == [(2, "tennis court"), (7, "ship")]
    assert report["rows"] == {"test": 2}
    assert parse_caption("Three storage tanks and a bridge.", "x") == (3, "storage tank")
    with pytest.raises(ValueError, match="x:4: caption 'Nothing here.' states no count"):
        parse_caption("Nothing here.", "x:4")


def test_cli_requires_exactly_one_input(dota: Path, tmp_path: Path, capsys) -> None:
    assert main(["--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "error: pass exactly one of --dota DIR and --release DIR\n"
    assert main(["--dota", str(dota), "--output", str(tmp_path / "o"), "--seed", "2"]) == 0
    assert datasets.load_dataset(str(tmp_path / "o"), split="test").num_rows == 2
