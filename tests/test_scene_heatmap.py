"""Tests of heat maps drawn from an index of scene windows (no re-encoding) and through the shared window reader."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from test_scene_windows import dota_pixels, write_geotiff

from rclip_hf import cli
from rclip_hf.inference import heatmap
from rclip_hf.inference.heatmap import heatmap_from_index
from rclip_hf.inference.scenes import WindowOptions, build_scene_index

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model

QUERIES = ["many airplanes", "a river"]


@pytest.fixture
def geotiff(shared_data: Path, tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "p1888.tif", dota_pixels(shared_data), origin=(1_000_000.0, 5_000_000.0), gsd=2.0)


def test_heatmap_from_the_index_equals_the_heatmap_of_the_scene(geotiff: Path, tmp_path: Path, tiny_model,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor = tiny_model
    direct = heatmap(geotiff, QUERIES, model=model, processor=processor, window=200, batch_size=7)
    assert direct.grid.stride == 133 and direct.scores.shape == (2, 4, 5)
    build_scene_index([geotiff], tmp_path / "index", model, processor, options=WindowOptions(window=200, stride=133))

    def no_encoding(*args, **kwargs):
        raise AssertionError("a heat map from the index must not encode images")

    monkeypatch.setattr(importlib.import_module("rclip_hf.inference.heatmap"), "encode_images", no_encoding)
    indexed = heatmap_from_index(tmp_path / "index", geotiff, QUERIES, model=model, processor=processor,
                                 output_dir=tmp_path / "maps")
    assert (indexed.grid.lefts, indexed.grid.tops) == (direct.grid.lefts, direct.grid.tops)
    np.testing.assert_allclose(indexed.scores, direct.scores, atol=1e-5)
    np.testing.assert_allclose(indexed.maps, direct.maps, atol=1e-5)
    with rasterio.open(indexed.files["geotiff:many airplanes"]) as score_map:
        assert score_map.crs.to_epsg() == 3857 and score_map.bounds.left == 1_000_000.0
    with pytest.raises(ValueError, match=r"scene other.tif has no windows in the index at .* \(indexed scenes: .*p1888"):
        heatmap_from_index(tmp_path / "index", "other.tif", QUERIES, model=model, processor=processor)


def test_heatmap_command_from_an_index(geotiff: Path, tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", str(geotiff), "--output",
                     str(tmp_path / "index"), "--window", "256"]) == 0
    capsys.readouterr()
    code = cli.main(["heatmap", "--model", str(tiny_model_dir), "--index", str(tmp_path / "index"), "--scene",
                     str(geotiff), "--output-dir", str(tmp_path / "maps"), "--format", "json", "many airplanes"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["windows"] == [3, 3] and document["queries"][0]["query"] == "many airplanes"
    assert Path(document["queries"][0]["overlay"]).is_file()
    code = cli.main(["heatmap", "--model", str(tiny_model_dir), "--index", str(tmp_path / "index"), "x"])
    assert code == 2 and "give either --image SCENE, or --index INDEX --scene SCENE" in capsys.readouterr().err
