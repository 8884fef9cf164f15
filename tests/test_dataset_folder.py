"""Dataset folders as index sources: Parquet/Arrow data files and folders written by `save_to_disk`, for image
indexes and windows of scenes alike."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from rclip_hf import cli
from rclip_hf.inference.dataset_folder import ROW_BATCH, load_dataset_folder, numbered_rows
from rclip_hf.inference.scenes import scene_files
from rclip_hf.inference.search import EmbeddingIndex

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir


def _rows(count: int, seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
        images.append({"bytes": buffer.getvalue(), "path": None})
    return datasets.Dataset.from_dict({"image": images, "name": [f"n{seed}-{i}" for i in range(count)]},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "name": datasets.Value("string")}))


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """The same train split (3 rows) as Parquet files, as a saved `DatasetDict` (with a 2-row validation split) and
    as a saved single `Dataset`."""
    train = _rows(3, seed=0)
    parquet = tmp_path / "parquet"
    train.to_parquet(str(parquet / "data" / "train-00000.parquet"))
    datasets.DatasetDict({"train": train, "validation": _rows(2, seed=1)}).save_to_disk(str(tmp_path / "saved_dict"))
    train.save_to_disk(str(tmp_path / "saved_one"))
    return {"parquet": parquet, "saved_dict": tmp_path / "saved_dict", "saved_one": tmp_path / "saved_one"}


def test_every_layout_gives_the_same_rows(folders: dict[str, Path]) -> None:
    expected = _rows(3, seed=0)
    for name, folder in folders.items():
        loaded = load_dataset_folder(folder, "train")
        assert loaded["name"] == expected["name"], name
        assert [cell["bytes"] for cell in loaded.cast_column("image", datasets.Image(decode=False))["image"]] == [
            cell["bytes"] for cell in expected.cast_column("image", datasets.Image(decode=False))["image"]], name
    assert load_dataset_folder(folders["saved_dict"], "validation")["name"] == ["n1-0", "n1-1"]


def test_a_missing_split_is_one_line_naming_the_folder_and_the_splits(folders: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"^dataset .*saved_dict: no split 'test' \(splits: train, validation\): "
                                         r"give --split$"):
        load_dataset_folder(folders["saved_dict"], "test")
    with pytest.raises(ValueError, match=r"^dataset .*parquet: .*test"):
        load_dataset_folder(folders["parquet"], "test")


def test_a_saved_dataset_is_indexed_as_images_and_as_scenes(folders: dict[str, Path], tmp_path: Path,
                                                             tiny_model_dir: Path, capsys) -> None:
    saved = folders["saved_dict"]
    code = cli.main(["index", "--model", str(tiny_model_dir), "--source", str(saved), "--output",
                     str(tmp_path / "images.index"), "--split", "validation"])
    assert code == 0, capsys.readouterr().err
    index = EmbeddingIndex.open(tmp_path / "images.index")
    assert sorted(index.ids()) == ["0", "1"] and len(index) == 2
    assert scene_files([saved]) == [f"{saved}?split=train&image=image&row={row}" for row in range(3)]
    code = cli.main(["index", "--model", str(tiny_model_dir), "--source", str(saved), "--output",
                     str(tmp_path / "scenes.index"), "--window", "32"])
    assert code == 0, capsys.readouterr().err
    assert len(EmbeddingIndex.open(tmp_path / "scenes.index")) == 3 * 4  # 64 x 48 rows: 2 x 2 windows of 32 px


def test_numbered_rows_count_on_across_batches() -> None:
    count = 2 * ROW_BATCH + 7
    dataset = datasets.Dataset.from_dict({"a": list(range(count)), "b": [f"v{i}" for i in range(count)]})
    rows = list(numbered_rows(dataset))
    assert [row for row, _ in rows] == list(range(count))
    assert all(values == {"a": row, "b": f"v{row}"} for row, values in rows)
