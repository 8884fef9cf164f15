"""Fixtures of the explore tests (`pytest_plugins = ("inference_fixtures", "explore_fixtures")`): a small real scene
index of a georeferenced GeoTIFF, a DOTA PNG whose file name is HTML, and a dataset row; and a small index of a scene
read through STAC beside a plain one."""

from __future__ import annotations

import io
import json
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


def build_explore_index(scenes: Path, output: Path | str, model_dir: Path,
                        storage_options: dict[str, str] | None = None) -> Path | str:
    """Index 256 px windows (stride 256) of the scenes: 3 x 3 of the GeoTIFF, 5 x 5 of the PNG, 2 x 1 of the row."""
    from rclip_hf.inference import WindowOptions, build_scene_index

    report = build_scene_index([scenes / "p1888.tif", scenes / HTML_NAME, scenes / "aerial"], output, model_dir,
                               options=WindowOptions(window=256, stride=256), storage_options=storage_options)
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


#: The STAC item of `stac_explore_index`: an id that is HTML (it must show as text), its collection and datetime.
STAC_ITEM = {"stac_item": "<img src=x onerror=document.title='stac'>", "stac_collection": "dota-demo",
             "stac_datetime": "2024-05-01T10:30:00Z"}


@pytest.fixture(scope="session")
def stac_explore_index(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, tiny_model_dir: Path) -> Path:
    """An index of 256 px windows of two 512 x 512 GeoTIFF crops of DOTA P1888: `item.tif` read through a STAC
    ItemCollection (one item, `STAC_ITEM`) and `plain.tif` read as a file; 4 + 4 windows."""
    pystac = pytest.importorskip("pystac")
    from rclip_hf.inference import WindowOptions, build_scene_index

    folder = tmp_path_factory.mktemp("stac-explore")
    pixels = dota_pixels(shared_data)[:, :512, :512].copy()
    for name, origin in (("item.tif", (1_000_000.0, 5_000_000.0)), ("plain.tif", (1_002_000.0, 5_000_000.0))):
        write_geotiff(folder / name, pixels, origin=origin, gsd=2.0)
    item = pystac.Item(id=STAC_ITEM["stac_item"], geometry={"type": "Point", "coordinates": [9.0, 41.0]},
                       bbox=[9.0, 41.0, 9.0, 41.0], properties={}, collection=STAC_ITEM["stac_collection"],
                       datetime=pystac.utils.str_to_datetime(STAC_ITEM["stac_datetime"]))
    item.add_asset("visual", pystac.Asset(href="item.tif", media_type=pystac.MediaType.COG, roles=["data"]))
    (folder / "search.json").write_text(json.dumps(pystac.ItemCollection([item]).to_dict(transform_hrefs=False)))
    output = tmp_path_factory.mktemp("stac-explore-index") / "stac.index"
    report = build_scene_index([folder / "search.json", folder / "plain.tif"], output, tiny_model_dir,
                               options=WindowOptions(window=256, stride=256))
    assert report.added == 4 + 4 == report.total and not report.failures
    return output
