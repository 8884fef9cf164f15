"""Tests of `rclip-hf index --window` and `rclip-hf search` with places: GeoJSON, GeoParquet, merge, bbox, examples,
and the results page rendered in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import geopandas
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
import torch
from PIL import Image
from test_scene_windows import dota_pixels, write_geotiff

from rclip_hf import cli
from rclip_hf.inference.index import EmbeddingIndex
from rclip_hf.inference.results_page import OVERVIEW_SIZE, THUMBNAIL_SIZE
from rclip_hf.inference.windows import PixelWindow, open_scene

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, other_model_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def scene_index(tmp_path: Path, shared_data: Path, tiny_model_dir: Path, capsys) -> Path:
    """An index of 256 px windows (stride 128) of a georeferenced GeoTIFF (EPSG:3857, 5 x 4 windows) and a DOTA PNG (8 x 9)."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_geotiff(scenes / "p1888.tif", dota_pixels(shared_data), origin=(1_000_000.0, 5_000_000.0), gsd=2.0)
    shutil.copy(shared_data / "dota" / "images" / "P0706.png", scenes / "p0706.png")  # 1111 x 1182
    index = tmp_path / "scenes.index"
    code, out, err = _run(["index", "--model", str(tiny_model_dir), "--source", str(scenes / "p1888.tif"),
                           "--source", str(scenes / "p0706.png"), "--output", str(index), "--window", "256", "--stride", "128",
                           "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["scenes"] == 2 and report["added"] == 5 * 4 + 8 * 9 == report["total"]
    assert report["processes"] == 1 and report["threads"] == torch.get_num_threads()  # one process: torch's own
    return index


def test_search_formats_geojson_parquet_merge_and_examples(scene_index: Path, tiny_model_dir: Path, tmp_path: Path,
                                                            capsys) -> None:
    base = ["search", "--model", str(tiny_model_dir), "--index", str(scene_index), "--text", "many airplanes",
            "--top_k", "10"]
    every = [*base[:-1], "92"]  # all 5 x 4 georeferenced and 8 x 9 pixel windows
    code, out, err = _run(every + ["--format", "geojson"], capsys)  # pixel hits have no place in EPSG:4326 GeoJSON
    assert code == 2 and out == "" and "Traceback" not in err
    assert re.fullmatch(r"error: --format geojson: 72 hit\(s\) lie on scenes without a CRS, .*NAME\.pixel\.geojson\)",
                        err.splitlines()[-1])
    code, out, err = _run(every + ["--format", "geojson", "--output", str(tmp_path / "all.geojson")], capsys)
    assert code == 0 and out == "" and str(tmp_path / "all.pixel.geojson") in err
    placed = geopandas.read_file(tmp_path / "all.geojson")  # RFC 7946: EPSG:4326, georeferenced hits only
    assert placed.crs == "EPSG:4326" and len(placed) == 20 and set(placed["coordinates"]) == {"EPSG:4326"}
    assert placed.geometry.is_valid.all() and placed.total_bounds[3] < 90 and placed.total_bounds[1] > -90
    assert all(shapely.LinearRing(polygon.exterior.coords).is_ccw for polygon in placed.geometry)
    pixels = json.loads((tmp_path / "all.pixel.geojson").read_text())["features"]
    assert len(pixels) == 72 and {f["properties"]["scene"] for f in pixels} == {str(scene_index.parent / "scenes" / "p0706.png")}
    assert all(shapely.LinearRing(f["geometry"]["coordinates"][0]).is_ccw for f in pixels)
    assert sorted(placed["rank"].tolist() + [f["properties"]["rank"] for f in pixels]) == list(range(1, 93))

    code, out, _ = _run(base + ["--format", "geojson", "--output", str(tmp_path / "hits.geojson")], capsys)
    collection = json.loads((tmp_path / "hits.geojson").read_text())
    placed_ranks = [feature["properties"]["rank"] for feature in collection["features"]]
    assert code == 0 and out == "" and placed_ranks == sorted(placed_ranks) and len(placed_ranks) <= 10
    if collection["features"]:
        first = collection["features"][0]["properties"]
        assert first["query"] == "many airplanes" and len(first["window"]) == 4

    code, _, _ = _run(base + ["--format", "parquet", "--output", str(tmp_path / "hits.parquet")], capsys)
    table = pq.read_table(tmp_path / "hits.parquet")
    assert code == 0 and table.num_rows == 10 and b"geo" in table.schema.metadata
    assert [item for item in table.column("id").to_pylist()
            if not item.startswith(str(scene_index.parent / "scenes" / "p0706.png"))] == [
        f["properties"]["id"] for f in collection["features"]]

    code, out, _ = _run(base + ["--merge", "--format", "json"], capsys)
    regions = json.loads(out)
    assert code == 0 and sum(region["merged"] for region in regions) == 10 and len(regions) < 10
    assert [region["rank"] for region in regions] == list(range(1, len(regions) + 1))

    ids = table.column("id").to_pylist()
    code, out, _ = _run(["search", "--model", str(tiny_model_dir), "--index", str(scene_index), "--positive", ids[0],
                         ids[1], "--negative", ids[-1], "--top-k", "3", "--format", "csv"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("query,rank,score,id,path,left,top,width,height,crs") and len(lines) == 4
    assert not {ids[0], ids[1], ids[-1]} & {line.split(",")[3] for line in lines[1:]}


def test_bbox_filters_and_a_bbox_with_no_scene_is_empty(scene_index: Path, tiny_model_dir: Path, capsys) -> None:
    base = ["search", "--model", str(tiny_model_dir), "--index", str(scene_index), "--text", "a harbour",
            "--top_k", "50", "--format", "json"]
    bbox = "1000000,4999700,1000200,5000000"  # EPSG:3857: top-left 100 x 150 px of the GeoTIFF
    code, out, _ = _run(base + ["--bbox", bbox, "--bbox-crs", "EPSG:3857"], capsys)
    hits = json.loads(out)
    assert code == 0 and sorted((hit["left"], hit["top"]) for hit in hits) == [(0, 0), (0, 128)]
    code, out, err = _run(base + ["--bbox=-10,-10,-9,-9"], capsys)
    assert code == 0 and json.loads(out) == [] and "no indexed window meets --bbox -10,-10,-9,-9" in err
    code, _, err = _run(base + ["--bbox", "3,2,1"], capsys)
    assert code == 2 and "--bbox '3,2,1': give minx,miny,maxx,maxy" in err


def test_bad_input(scene_index: Path, tiny_model_dir: Path, other_model_dir: Path, tmp_path: Path, capsys) -> None:
    search = ["search", "--model", str(tiny_model_dir), "--index", str(scene_index)]
    code, _, err = _run(search + ["--text", "x", "--format", "parquet"], capsys)
    assert code == 2 and "--format parquet writes a file: give --output" in err
    code, _, err = _run(search + ["--negative", "a"], capsys)
    assert code == 2 and "give at least one query" in err
    code, _, err = _run(search + ["--positive", "nope"], capsys)
    assert code == 2 and "no item with id 'nope'" in err
    code, _, err = _run(["search", "--model", str(other_model_dir), "--index", str(scene_index), "--text", "x"], capsys)
    assert code == 2 and "cannot be mixed or compared" in err
    code, _, err = _run(["index", "--model", str(tiny_model_dir), "--source", str(scene_index.parent / "scenes"),
                         "--output", str(tmp_path / "x"), "--num-processes", "2"], capsys)
    assert code == 2 and "--num-processes works on windows of scenes" in err
    code, _, err = _run(["index", "--model", str(tiny_model_dir), "--source", str(scene_index.parent / "scenes"),
                         "--source", str(scene_index.parent / "scenes"), "--output", str(tmp_path / "x")], capsys)
    assert code == 2 and "--source: 2 sources given; whole images are indexed from one folder" in err
    code, _, err = _run(["index", "--model", str(tiny_model_dir), "--source", str(scene_index.parent / "scenes"),
                         "--output", str(tmp_path / "x"), "--window", "64", "--bands", "1,2"], capsys)
    assert code == 2 and "--bands '1,2'" in err


def test_results_page_renders_thumbnails_and_boxes_offline(scene_index: Path, tiny_model_dir: Path,
                                                           tmp_path: Path, capsys) -> None:
    if CHROMIUM is None:
        message = "needs Debian's chromium package (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    page = tmp_path / "results.html"
    code, _, err = _run(["search", "--model", str(tiny_model_dir), "--index", str(scene_index), "--text",
                         "many airplanes", "a harbour", "--top_k", "6", "--html", str(page)], capsys)
    assert code == 0, err
    text = page.read_text()
    assert not re.search(r"(src|href)=['\"](https?:)?//", text)  # nothing from the network
    assert text.count("class='thumbnail'") == 12 and text.count("<rect class='hit'") == 12
    hits = EmbeddingIndex.open(scene_index)
    assert len(hits) == 92
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-extensions", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rendered = json.loads(re.search(r'data-rendered="([^"]*)"', dom)[1].replace("&quot;", '"'))
    overviews = text.count("class='overview-image'")
    assert rendered == {"thumbnails": 12, "overviews": overviews, "boxes": 12} and overviews >= 2


def _page_images(page: str) -> tuple[list[Image.Image], dict[tuple[int, int, int, int], Image.Image]]:
    """(the page's scene overviews, its window thumbnails by their window (left, top, width, height))."""
    def decode(uri: str) -> Image.Image:
        return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")

    overviews = [decode(uri) for uri in re.findall(r"class='overview-image' alt='overview' src='([^']+)'", page)]
    thumbnails = {tuple(int(value) for value in window): decode(uri) for uri, *window in re.findall(
        r"class='thumbnail' alt='hit \d+' src='([^']+)'><figcaption>[^<]*<br>[^<]* \((\d+), (\d+), (\d+)&times;(\d+)\)",
        page)}
    return overviews, thumbnails


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two images at 1/8 of their size (where JPEG's noise averages out)."""
    assert a.size == b.size
    size = (max(1, a.width // 8), max(1, a.height // 8))
    a, b = (np.asarray(image.resize(size, Image.BOX), dtype=np.float32) for image in (a, b))
    return float(np.abs(a - b).mean())


def test_results_page_draws_scenes_with_the_indexed_bands(tmp_path: Path, shared_data: Path, tiny_model_dir: Path,
                                                           capsys) -> None:
    """A B,G,R GeoTIFF indexed with `--bands 3,2,1`: the page's overview and thumbnails are the true-colour ones."""
    pixels = dota_pixels(shared_data)  # (3, H, W) R,G,B
    scene = write_geotiff(tmp_path / "bgr.tif", pixels[::-1].copy(), origin=(1_000_000.0, 5_000_000.0))
    true_colour = write_geotiff(tmp_path / "rgb.tif", pixels, origin=(1_000_000.0, 5_000_000.0))
    index = tmp_path / "bgr.index"
    code, _, err = _run(["index", "--model", str(tiny_model_dir), "--source", str(scene), "--output", str(index),
                         "--window", "256", "--bands", "3,2,1"], capsys)
    assert code == 0, err
    page = tmp_path / "results.html"
    code, _, err = _run(["search", "--model", str(tiny_model_dir), "--index", str(index), "--text", "airplanes",
                         "--top_k", "9", "--html", str(page)], capsys)
    assert code == 0, err
    overviews, thumbnails = _page_images(page.read_text())
    assert len(overviews) == 1 and len(thumbnails) == 9  # 3 x 3 windows
    with open_scene(true_colour) as expected, open_scene(scene) as swapped:
        pairs = [(overviews[0], expected.overview(OVERVIEW_SIZE), swapped.overview(OVERVIEW_SIZE))]
        for (left, top, width, height), thumbnail in thumbnails.items():
            window = PixelWindow(left, top, width, height)
            pairs.append((thumbnail, expected.read_window(window, THUMBNAIL_SIZE),
                          swapped.read_window(window, THUMBNAIL_SIZE)))
    for shown, right, wrong in pairs:  # JPEG's error (< 1.5 of 255), not red for blue (> 4)
        assert _difference(shown, right) < 1.5 and _difference(shown, wrong) > 4
