"""Tests of text heat maps: window geometry, window scores equal to the model's scores of the crops, outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from rclip_hf.inference import heatmap, window_grid
from rclip_hf.inference.heatmap import pixel_maps

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model

QUERIES = ["many airplanes", "a river"]


def test_window_geometry_by_pixels_and_by_grid() -> None:
    by_pixels = window_grid(400, 300, window=100, overlap=1 / 3)
    assert (by_pixels.window, by_pixels.stride) == (100, 67)
    assert by_pixels.lefts == (0, 67, 134, 201, 268, 300) and by_pixels.tops == (0, 67, 134, 200)
    by_grid = window_grid(1300, 430)  # the paper's 64 x 64 grid, 1/3 overlap: 430 / (1 + 63 * 2/3) = 10 px
    assert (by_grid.window, by_grid.stride, by_grid.shape[0]) == (10, 7, 61)
    assert by_grid.tops[-1] == 420 and by_grid.lefts[-1] == 1290
    assert window_grid(50, 40, window=100).window == 40  # clipped to the shorter side
    with pytest.raises(ValueError, match=r"overlap=1.0 must be in \[0, 1\)"):
        window_grid(100, 100, overlap=1.0)


def test_pixel_maps_average_overlapping_windows() -> None:
    geometry = window_grid(3, 2, window=2, overlap=0.5)  # windows at x = 0 and 1, y = 0
    assert geometry.lefts == (0, 1) and geometry.tops == (0,)
    maps = pixel_maps(np.array([[[1.0, 3.0]]]), geometry, (3, 2))
    np.testing.assert_allclose(maps[0], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])


def test_window_scores_equal_the_models_scores_of_the_crops(tiny_model, shared_data: Path, tmp_path: Path) -> None:
    model, processor = tiny_model
    path = shared_data / "dota" / "images" / "P1888.png"  # 712 x 557
    result = heatmap(path, QUERIES, model=model, processor=processor, window=200, batch_size=5,
                     output_dir=tmp_path / "maps")
    assert result.scores.shape == (2, *result.grid.shape) == (2, 4, 5)
    image = Image.open(path).convert("RGB")
    crops = [image.crop(box) for box in result.grid.boxes()]
    inputs = processor(text=QUERIES, images=crops, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**inputs)
        cosine = (output.logits_per_image / model.logit_scale.exp()).T.reshape(2, 4, 5)  # (Q, rows, cols)
    np.testing.assert_allclose(result.scores, cosine.numpy(), atol=1e-5)

    np.testing.assert_array_equal(np.load(tmp_path / "maps" / "scores.npy"), result.scores)
    metadata = json.loads((tmp_path / "maps" / "heatmap.json").read_text())
    assert metadata["window"] == 200 and metadata["tops"] == list(result.grid.tops)
    overlay = Image.open(result.files["png:many airplanes"])
    assert overlay.size == (712, 557) and overlay.mode == "RGB"
    assert not any(key.startswith("geotiff") for key in result.files)


def test_an_image_in_memory_gives_the_maps_of_its_file(tiny_model, shared_data: Path) -> None:
    model, processor = tiny_model
    path = shared_data / "dota" / "images" / "P1888.png"
    from_file = heatmap(path, QUERIES, model=model, processor=processor, window=200, batch_size=5)
    with Image.open(path) as image:
        from_memory = heatmap(image, QUERIES, model=model, processor=processor, window=200, batch_size=7)
    assert from_memory.grid == from_file.grid and from_memory.georeference is None
    np.testing.assert_allclose(from_memory.scores, from_file.scores, atol=1e-6)


def test_geotiff_scene_gives_a_georeferenced_score_map(tiny_model, shared_data: Path, tmp_path: Path) -> None:
    model, processor = tiny_model
    scene = shutil.copy(shared_data / "neon_trees" / "OSBS_029.tif", tmp_path / "scene.tif")
    from_tif = heatmap(scene, QUERIES[:1], model=model, processor=processor, window=120, overlay_size=200,
                       output_dir=tmp_path / "maps")
    from_png = heatmap(shared_data / "neon_trees" / "OSBS_029.png", QUERIES[:1], model=model, processor=processor,
                       window=120, overlay_size=200)
    np.testing.assert_allclose(from_tif.scores, from_png.scores, atol=1e-6)
    with rasterio.open(scene) as source, rasterio.open(from_tif.files["geotiff:many airplanes"]) as scores:
        assert scores.count == 1 and scores.dtypes == ("float32",) and (scores.width, scores.height) == (200, 200)
        assert scores.crs == source.crs
        assert scores.transform.almost_equals(source.transform @ rasterio.Affine.scale(2.0, 2.0))
        assert scores.bounds == pytest.approx(source.bounds)
        np.testing.assert_allclose(scores.read(1), from_tif.maps[0])


def test_bad_queries(tiny_model, shared_data: Path) -> None:
    model, processor = tiny_model
    with pytest.raises(ValueError, match="queries must be non-empty strings"):
        heatmap(shared_data / "neon_trees" / "OSBS_029.png", [], model=model, processor=processor)
    with pytest.raises(FileNotFoundError, match="image file not found"):
        heatmap(shared_data / "missing.png", QUERIES, model=model, processor=processor)


def test_score_map_geotiff_is_a_valid_cog_with_overviews_and_nodata(tiny_model, shared_data: Path, tmp_path: Path):
    from rio_cogeo.cogeo import cog_validate

    model, processor = tiny_model
    scene = shutil.copy(shared_data / "neon_trees" / "OSBS_029.tif", tmp_path / "scene.tif")
    result = heatmap(scene, QUERIES[:1], model=model, processor=processor, window=200, overlay_size=600,
                     output_dir=tmp_path / "maps")
    path = result.files["geotiff:many airplanes"]
    valid, errors, warnings = cog_validate(path, strict=True)
    assert valid and errors == [] and warnings == []
    with rasterio.open(path) as scores:
        assert scores.profile["tiled"] and scores.block_shapes == [(256, 256)]
        assert scores.compression == rasterio.enums.Compression.deflate
        assert (scores.width, scores.overviews(1)) == (400, [2]) and np.isnan(scores.nodata)  # down to one tile
        assert scores.descriptions == ("cosine similarity (mean of covering windows)",)
        np.testing.assert_allclose(scores.read(1), result.maps[0])
