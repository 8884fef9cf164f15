"""Tests of rclip_hf.inference.images: reading PNG/JPEG/(Geo)TIFF into RGB by the documented rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from rclip_hf.inference.images import ImageReadError, RasterSource, as_rgb_image, load_image


def _write_tiff(path: Path, bands: np.ndarray, nodata: float | None = None,
                colorinterp: tuple[ColorInterp, ...] | None = None) -> Path:
    count, height, width = bands.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": bands.dtype.name,
               "crs": "EPSG:32617", "transform": from_origin(400000.0, 3200000.0, 0.5, 0.5), "nodata": nodata}
    with rasterio.open(path, "w", **profile) as destination:
        destination.write(bands)
        if colorinterp is not None:
            destination.colorinterp = colorinterp
    return path


def _three_level_band() -> np.ndarray:
    """(10, 10) uint16: 40 pixels of 1000, 20 of 2000, 40 of 3000 -> 2nd/98th percentiles are 1000 and 3000."""
    return np.array([1000] * 40 + [2000] * 20 + [3000] * 40, dtype=np.uint16).reshape(10, 10)


def test_rgba_png_drops_alpha(shared_data: Path) -> None:
    path = shared_data / "dota_split" / "images" / "P0004__1__0___0.png"
    rgba = np.asarray(Image.open(path))
    rgb = np.asarray(load_image(path))
    assert rgba.shape[2] == 4 and rgb.shape == rgba.shape[:2] + (3,)
    np.testing.assert_array_equal(rgb, rgba[..., :3])


def test_geotiff_matches_png_of_same_scene_and_windows_match_crops(shared_data: Path) -> None:
    tif = shared_data / "neon_trees" / "OSBS_029.tif"
    whole = np.asarray(load_image(tif))
    np.testing.assert_array_equal(whole, np.asarray(Image.open(tif).convert("RGB")))
    with RasterSource(tif) as source:
        assert (source.width, source.height) == (400, 400)
        assert source.georeference is not None and source.georeference.crs.to_epsg() == 32617
        window = np.asarray(source.read(left=37, top=150, width=100, height=60))
        np.testing.assert_array_equal(window, whole[150:210, 37:137])


def test_sixteen_bit_multiband_uses_first_three_bands_stretched(tmp_path: Path) -> None:
    band = _three_level_band()
    bands = np.stack([band, band[::-1], np.full_like(band, 2000), np.full_like(band, 9)])  # 4 bands, no colours
    rgb = np.asarray(load_image(_write_tiff(tmp_path / "four.tif", bands)))
    expected = {1000: 0, 2000: 127, 3000: 255}  # (v - 1000) / 2000 * 255, truncated
    np.testing.assert_array_equal(rgb[..., 0], np.vectorize(expected.get)(band))
    np.testing.assert_array_equal(rgb[..., 1], np.vectorize(expected.get)(band[::-1]))
    assert set(np.unique(rgb[..., 2])) == {0}  # a constant band has low == high -> 0


def test_colour_interpretation_picks_red_green_blue(tmp_path: Path) -> None:
    bands = np.stack([np.full((4, 4), value, dtype=np.uint8) for value in (10, 20, 30)])
    order = (ColorInterp.blue, ColorInterp.red, ColorInterp.green)
    rgb = np.asarray(load_image(_write_tiff(tmp_path / "bgr.tif", bands, colorinterp=order)))
    assert rgb[0, 0].tolist() == [20, 30, 10]


def test_single_band_is_grey_and_nodata_is_black(tmp_path: Path) -> None:
    band = _three_level_band()
    band[0, 0] = 0  # nodata: left out of the percentiles, written as 0
    rgb = np.asarray(load_image(_write_tiff(tmp_path / "grey.tif", band[None], nodata=0)))
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[9, 9].tolist() == [255, 255, 255] and rgb[4, 5].tolist() == [127, 127, 127]


def test_window_of_a_sixteen_bit_scene_uses_the_scene_stretch(tmp_path: Path) -> None:
    path = _write_tiff(tmp_path / "scene.tif", _three_level_band()[None])
    with RasterSource(path) as source:
        middle = np.asarray(source.read(left=0, top=4, width=10, height=2))  # only 2000-valued pixels
    assert set(np.unique(middle)) == {127}


def test_sixteen_bit_png_through_pil(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    Image.fromarray(_three_level_band()).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_image(path))
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[5, 0].tolist() == [127, 127, 127]


def test_errors_name_the_file(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="cannot read image .*broken.jpg"):
        load_image(broken)
    broken_tif = tmp_path / "broken.tif"
    broken_tif.write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match="broken.tif"):
        load_image(broken_tif)
    scene = shutil.copy(shared_data / "neon_trees" / "OSBS_029.png", tmp_path / "scene.png")
    with RasterSource(scene) as source, pytest.raises(ValueError, match=r"outside .*scene.png \(400x400\)"):
        source.read(left=350, top=0, width=100, height=10)
    with pytest.raises(TypeError, match="expected a PIL image or a path"):
        as_rgb_image(42)
