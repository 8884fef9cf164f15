"""The one raster reader (`images.RasterBands`) on GeoTIFFs: one nodata rule for every data type, shared by whole
images (`load_image`) and windows of scenes (`Scene`), and bands chosen by colour interpretation, description or
`--bands` on every command that reads rasters."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from test_scene_windows import dota_pixels, write_geotiff

from rclip_hf import cli
from rclip_hf.images import load_image, select_bands
from rclip_hf.inference.index import EmbeddingIndex
from rclip_hf.inference.windows import PixelWindow, Scene, WindowCounts, scene_windows

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir


def _nodata_scene(shared_data: Path, tmp_path: Path, kind: str) -> Path:
    """P1888 (712 x 557) with its left 456 columns empty: the two left windows of each row of 256 px windows."""
    rgb = dota_pixels(shared_data)
    if kind == "uint8_nodata":
        pixels = rgb.copy()
        pixels[:, :, :456] = 0
        return write_geotiff(tmp_path / f"{kind}.tif", pixels, nodata=0)
    if kind == "uint8_alpha":
        alpha = np.full(rgb.shape[1:], 255, np.uint8)
        alpha[:, :456] = 0
        path = write_geotiff(tmp_path / f"{kind}.tif", np.concatenate([rgb, alpha[None]]))
        with rasterio.open(path, "r+") as dataset:
            dataset.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)
        return path
    pixels = rgb.astype(np.uint16) * 40 + 100  # uint16: stretched
    pixels[:, :, :456] = 0
    return write_geotiff(tmp_path / f"{kind}.tif", pixels, nodata=0)


@pytest.mark.parametrize("kind", ["uint8_nodata", "uint8_alpha", "uint16_nodata"])
def test_mostly_nodata_windows_are_skipped_for_every_dtype(kind: str, shared_data: Path, tmp_path: Path) -> None:
    path = _nodata_scene(shared_data, tmp_path, kind)
    counts = WindowCounts()
    windows = list(scene_windows(path, 256, counts=counts))
    assert (counts.read, counts.nodata) == (3, 6)
    assert [item.window.left for item in windows] == [456, 456, 456]
    whole = np.asarray(load_image(path))  # the same reader and rule for the whole image
    for item in windows:
        left, top, right, bottom = item.window.box
        np.testing.assert_array_equal(np.asarray(item.image)[: bottom - top, : right - left],
                                      whole[top:bottom, left:right])
    with Scene(path) as scene:  # a window read whole, without skipping, is the whole image
        np.testing.assert_array_equal(np.asarray(scene.read_window(PixelWindow(0, 0, 712, 557))), whole)
    if kind == "uint8_nodata":  # 8-bit pixels are used as stored, as Pillow reads them
        np.testing.assert_array_equal(whole, dota_pixels(shared_data).transpose(1, 2, 0) * (np.arange(712) >= 456)[:, None])
    if kind == "uint16_nodata":  # nodata is out of the stretch: the valid part spans 0..255, the empty part is 0
        assert whole[:, 456:].min() == 0 and whole[:, 456:].max() == 255 and not whole[:, :456].any()


def _bgrn(shared_data: Path, tmp_path: Path, described: bool) -> tuple[Path, np.ndarray]:
    """A 4-band uint16 B, G, R, NIR GeoTIFF of real pixels (no colour interpretation), and its true RGB (uint16)."""
    rgb = dota_pixels(shared_data)[:, :256, :320].astype(np.uint16) * 30 + 500
    nir = (rgb.sum(axis=0) // 3).astype(np.uint16)
    path = write_geotiff(tmp_path / f"bgrn{'-described' if described else ''}.tif", np.stack([rgb[2], rgb[1], rgb[0], nir]))
    with rasterio.open(path, "r+") as dataset:
        dataset.colorinterp = [ColorInterp.undefined] * 4
        if described:
            for band, text in enumerate(("B02", "B03 green", "B04 (red)", "B08 nir"), start=1):
                dataset.set_band_description(band, text)
    return path, rgb


def test_band_descriptions_give_true_rgb_without_a_flag(shared_data: Path, tmp_path: Path) -> None:
    assert select_bands(["undefined"] * 4, 4, ["Blue", "Green", "Red", "NIR"]) == [3, 2, 1]
    assert select_bands(["undefined"] * 4, 4, ["B2", "B3", "B4", "B8"]) == [3, 2, 1]
    assert select_bands(["undefined"] * 4, 4, ["near infrared", "red edge", "B8A", None]) == [1, 2, 3]
    described, rgb = _bgrn(shared_data, tmp_path, described=True)
    plain, _ = _bgrn(shared_data, tmp_path, described=False)
    reference = write_geotiff(tmp_path / "rgb.tif", rgb)
    expected = np.asarray(load_image(reference))
    np.testing.assert_array_equal(np.asarray(load_image(described)), expected)
    np.testing.assert_array_equal(np.asarray(load_image(plain, bands=(3, 2, 1))), expected)
    assert not np.array_equal(np.asarray(load_image(plain)), expected)  # bands 1, 2, 3: red is blue
    (window,) = scene_windows(described, 400)
    np.testing.assert_array_equal(np.asarray(window.image)[:256, :320], expected)


def test_bands_not_applying_are_noted_in_one_line(shared_data: Path, tmp_path: Path, caplog) -> None:
    png = shared_data / "dota" / "images" / "P1888.png"
    with caplog.at_level(logging.WARNING, logger="rclip_hf.images"):
        np.testing.assert_array_equal(np.asarray(load_image(png, bands=(3, 2, 1))), np.asarray(load_image(png)))
        (window,) = scene_windows(png, 800, bands=(3, 2, 1))
    assert [record.getMessage() for record in caplog.records] == [
        f"{png}: --bands 3,2,1 not applied (--bands applies to (Geo)TIFF rasters); read as {what} by the image rule"
        for what in ("its colours", "bands 1,2,3")]
    np.testing.assert_array_equal(np.asarray(window.image)[:557, :712], np.asarray(load_image(png)))


def _json(argv: list[str], capsys) -> object:
    code = cli.main([*argv, "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _scores(rows: list[dict]) -> list[float]:
    """classify's scores, or count's probabilities, of the JSON output."""
    return [value for row in rows for value in (row["distribution"].values() if "distribution" in row else [row["score"]])]


def test_bands_flag_on_classify_count_heatmap_and_index(shared_data: Path, tmp_path: Path, tiny_model_dir: Path,
                                                         capsys) -> None:
    plain, rgb = _bgrn(shared_data, tmp_path, described=False)
    reference = write_geotiff(tmp_path / "rgb.tif", rgb)
    model = ["--model", str(tiny_model_dir)]
    for command in (["classify", *model, "--labels", "airport", "harbour", "forest", "--images"],
                    ["count", *model, "--object", "plane", "--image"]):
        swapped = _json([*command, str(plain), "--bands", "3,2,1"], capsys)
        expected = _json([*command, str(reference)], capsys)
        default = _json([*command, str(plain)], capsys)
        assert _scores(swapped) == pytest.approx(_scores(expected), abs=1e-6)
        assert _scores(default) != pytest.approx(_scores(expected), abs=1e-6)
    heat = ["heatmap", *model, "--window", "128", "--queries", "planes"]
    swapped = _json([*heat, "--image", str(plain), "--bands", "3,2,1", "--output_dir", str(tmp_path / "a")], capsys)
    expected = _json([*heat, "--image", str(reference), "--output_dir", str(tmp_path / "b")], capsys)
    np.testing.assert_allclose(np.load(swapped["files"]["scores"]), np.load(expected["files"]["scores"]), atol=1e-6)
    assert cli.main(["heatmap", *model, "--index", "any.index", "--scene", str(plain), "--bands", "3,2,1", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --bands 3,2,1: a map from --index uses the bands its windows")
    for name, path, bands in (("swapped", plain, ["--bands", "3,2,1"]), ("expected", reference, [])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scene.tif").symlink_to(path)
        _json(["index", *model, "--source", str(tmp_path / name), "--output", str(tmp_path / f"{name}.index"), *bands],
              capsys)
    swapped, expected = (EmbeddingIndex.open(tmp_path / f"{name}.index") for name in ("swapped", "expected"))
    np.testing.assert_allclose(swapped.embeddings_of(["scene.tif"]), expected.embeddings_of(["scene.tif"]), atol=1e-6)


def test_bands_on_a_dataset_index_are_noted(shared_data: Path, tmp_path: Path, tiny_model, caplog) -> None:
    import datasets
    from PIL import Image

    from rclip_hf.inference.search import build_index

    model, processor = tiny_model
    rows = datasets.Dataset.from_dict({"image": [Image.open(shared_data / "dota" / "images" / "P1888.png")]},
                                      features=datasets.Features({"image": datasets.Image()}))
    with caplog.at_level(logging.WARNING, logger="rclip_hf.images"):
        report = build_index(rows, tmp_path / "rows.index", model, processor, bands=(3, 2, 1))
    assert report.added == 1 and [record.getMessage() for record in caplog.records] == [
        "dataset: --bands 3,2,1 not applied (a dataset's rows are read as RGB); read as its colours by the image rule"]


def test_heatmap_from_an_index_reads_the_scene_with_the_indexed_bands(shared_data: Path, tmp_path: Path,
                                                                     tiny_model) -> None:
    from rclip_hf.inference.heatmap import heatmap, heatmap_from_index
    from rclip_hf.inference.scenes import WindowOptions, build_scene_index

    model, processor = tiny_model
    plain, rgb = _bgrn(shared_data, tmp_path, described=False)
    reference = write_geotiff(tmp_path / "rgb.tif", rgb)
    build_scene_index([plain], tmp_path / "index", model, processor,
                      options=WindowOptions(window=128, bands=(3, 2, 1)))
    indexed = heatmap_from_index(tmp_path / "index", plain, ["planes"], model=model, processor=processor)
    direct = heatmap(reference, ["planes"], model=model, processor=processor, window=128, overlap=0.0)
    np.testing.assert_array_equal(np.asarray(indexed.overview), np.asarray(direct.overview))
    np.testing.assert_allclose(indexed.scores, direct.scores, atol=1e-5)
