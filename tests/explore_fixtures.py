"""Fixtures of the explore tests (`pytest_plugins = ("inference_fixtures", "explore_fixtures")`): a small real scene
index of a georeferenced GeoTIFF, a DOTA PNG whose file name is HTML, and a dataset row."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import datasets
import pytest
from PIL import Image
from test_scene_windows import dota_pixels, write_geotiff

#: The PNG scene's file name: HTML that would run if any page rendered names as markup.
HTML_NAME = "<img src=x onerror=document.title='pwned'>.png"


@pytest.fixture(scope="session")
def explore_scenes(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A folder of scenes: p1888.tif (DOTA P1888, 712 x 557, EPSG:3857, 2 m/px), DOTA P0706 (1111 x 1182) as a PNG
    named `HTML_NAME`, and `aerial/` a Parquet dataset folder of one row (a 300 x 200 crop of P1888)."""
    scenes = tmp_path_factory.mktemp("explore") / "scenes"
    scenes.mkdir()
    write_geotiff(scenes / "p1888.tif", dota_pixels(shared_data), origin=(1_000_000.0, 5_000_000.0), gsd=2.0)
    shutil.copy(shared_data / "dota" / "images" / "P0706.png", scenes / HTML_NAME)
    crop = Image.open(shared_data / "dota" / "images" / "P1888.png").convert("RGB").crop((100, 200, 400, 400))
    buffer = io.BytesIO()
    crop.save(buffer, format="PNG")
    dataset = datasets.Dataset.from_dict({"image": [{"bytes": buffer.getvalue(), "path": None}]},
                                         features=datasets.Features({"image": datasets.Image()}))
    dataset.to_parquet(str(scenes / "aerial" / "data" / "train-00000.parquet"))
    return scenes


def build_explore_index(scenes: Path, output: Path, model_dir: Path) -> Path:
    """Index 256 px windows (stride 256) of the scenes: 3 x 3 of the GeoTIFF, 5 x 5 of the PNG, 2 x 1 of the row."""
    from rclip_hf.inference import WindowOptions, build_scene_index

    report = build_scene_index([scenes / "p1888.tif", scenes / HTML_NAME, scenes / "aerial"], output, model_dir,
                               options=WindowOptions(window=256, stride=256))
    assert report.added == 9 + 25 + 2 == report.total and not report.failures
    return output


@pytest.fixture(scope="session")
def explore_index(explore_scenes: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The index of `explore_scenes` made with `tiny_model_dir` (shared: tests copy it before writing labels)."""
    return build_explore_index(explore_scenes, tmp_path_factory.mktemp("explore-index") / "scenes.index",
                               tiny_model_dir)


@pytest.fixture
def index_copy(explore_index: Path, tmp_path: Path) -> Path:
    """A copy of `explore_index` of the test's own, so that its labels start empty."""
    return Path(shutil.copytree(explore_index, tmp_path / "scenes.index"))
