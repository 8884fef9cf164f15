"""Potsdam / Vaihingen tiles cut into patches (mmsegmentation's layout): windows, M2B per patch, corpus rows."""

from __future__ import annotations

import io
import math
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_builders import m2b
from dataset_builders.corpus import CorpusConfig, build_corpus
from dataset_builders.records import Box
from dataset_builders.sources import get_reader, read_source
from dataset_builders.sources.base import patch_windows
from dataset_builders.sources.images import decoded_whole

BUILDING, CAR, IMPERVIOUS = (0, 0, 255), (255, 255, 0), (255, 255, 255)


def mmseg_windows(width: int, height: int, clip: int = 512, stride: int = 256) -> list[tuple[int, ...]]:
    """The crops of mmsegmentation's tools/dataset_converters/{potsdam,vaihingen}.py (``clip_big_image``); crops
    with the same corners are written to the same file name there, so they count once."""
    def count(length: int) -> int:
        steps = math.ceil((length - clip) / stride)
        return steps if steps * stride + clip >= length else steps + 1

    x, y = np.meshgrid(np.arange(count(width) + 1), np.arange(count(height) + 1))
    xmin, ymin = (x * clip).ravel(), (y * clip).ravel()
    xmin = xmin + np.where(xmin + clip > width, width - xmin - clip, 0)
    ymin = ymin + np.where(ymin + clip > height, height - ymin - clip, 0)
    boxes = np.stack([xmin, ymin, np.minimum(xmin + clip, width), np.minimum(ymin + clip, height)], axis=1)
    return sorted({tuple(int(v) for v in box) for box in boxes})


@pytest.mark.parametrize(("width", "height"), [(6000, 6000), (1919, 2569), (2428, 2767), (512, 512), (513, 1024),
                                               (1887, 2566), (1100, 700)])
def test_windows_are_those_of_mmsegmentation(width: int, height: int) -> None:
    windows = patch_windows(width, height, 512)
    assert sorted(windows) == mmseg_windows(width, height)
    assert all(x1 - x0 == 512 and y1 - y0 == 512 for x0, y0, x1, y1 in windows)
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_windows_of_a_potsdam_tile_and_of_small_images() -> None:
    assert len(patch_windows(6000, 6000, 512)) == 144  # x 38 tiles = 5,472 (the paper kept 5,421)
    assert patch_windows(1100, 700, 512) == [(0, 0, 512, 512), (512, 0, 1024, 512), (588, 0, 1100, 512),
                                             (0, 188, 512, 700), (512, 188, 1024, 700), (588, 188, 1100, 700)]
    assert patch_windows(300, 200, 512) == [(0, 0, 300, 200)]
    assert patch_windows(300, 700, 512) == [(0, 0, 300, 512), (0, 188, 300, 700)]
    with pytest.raises(ValueError, match="patch_size must be >= 1"):
        patch_windows(10, 10, 0)


@pytest.fixture
def potsdam(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 1100 x 700 Potsdam tile (noise) and its label tile: a building across four patches, a car, roads."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (700, 1100, 3), dtype=np.uint8)
    labels = np.zeros((700, 1100, 3), np.uint8)
    labels[:] = IMPERVIOUS
    labels[100:300, 400:700] = BUILDING  # spans the windows starting at x = 0, 512 and 588, y = 0 (and 188)
    labels[600:620, 1000:1040] = CAR
    root = tmp_path / "potsdam"
    (root / "2_Ortho_RGB").mkdir(parents=True)
    (root / "5_Labels_all").mkdir()
    Image.fromarray(image).save(root / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tif")
    Image.fromarray(labels).save(root / "5_Labels_all" / "top_potsdam_2_10_label.tif")
    return root, image, labels


def test_each_patch_is_a_record_with_m2b_on_its_crop(potsdam: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, _, labels = potsdam
    records, skipped = read_source("potsdam", root)
    assert skipped == []
    assert decoded_whole.cache_info().currsize == 0  # the label tile cut into windows is not kept afterwards
    assert [record.provenance["window"] for record in records] == [
        "0,0,512,512", "512,0,1024,512", "588,0,1100,512", "0,188,512,700", "512,188,1024,700", "588,188,1100,700"]
    assert {(record.width, record.height) for record in records} == {(512, 512)}
    for record in records:
        x0, y0, x1, y1 = map(int, record.provenance["window"].split(","))
        expected, _ = m2b.boxes_from_color_mask(labels[y0:y1, x0:x1], m2b.ISPRS_PALETTE, ignore=("clutter",))
        assert record.boxes == expected
    assert Box("building", 400, 100, 512, 300) in records[0].boxes  # cut at the window's right edge
    assert Box("building", 0, 100, 112, 300) in records[2].boxes  # x 588..700 of the tile
    assert Box("car", 412, 412, 452, 432) in records[5].boxes  # tile (1000, 600) - window (588, 188)


def test_whole_tiles_with_patch_size_0_and_bad_patch_size(potsdam: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, _, _ = potsdam
    records, _ = read_source("potsdam", root, patch_size=0)
    assert [(record.width, record.height, "window" in record.provenance) for record in records] == [(1100, 700, False)]
    with pytest.raises(ValueError, match="patch_size must be an integer >= 0"):
        list(get_reader("potsdam", root, patch_size=-5).scan())


@pytest.mark.parametrize("num_proc", [1, 2])
def test_corpus_rows_are_the_patches_pixel_for_pixel(potsdam: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path,
                                                     num_proc: int) -> None:
    root, image, _ = potsdam
    report = build_corpus(CorpusConfig(source=[f"potsdam={root}"], output=str(tmp_path / "corpus"), num_proc=num_proc))
    stats = report["sources"]["potsdam"]
    assert (stats["read"], stats["kept"]) == (6, 6)
    assert stats["converted"][0] == {"image": "potsdam/2_Ortho_RGB/top_potsdam_2_10_RGB.tif#0_0_512_512",
                                     "from": "TIFF window 0,0,512,512"}
    rows = datasets.load_dataset(str(tmp_path / "corpus"), split="train")
    for row in rows.cast_column("image", datasets.Image(decode=False)):
        x0, y0, x1, y1 = map(int, row["image"]["path"].rsplit("#", 1)[1].split("_"))
        with Image.open(io.BytesIO(row["image"]["bytes"])) as patch:
            assert np.array_equal(np.asarray(patch), image[y0:y1, x0:x1])
