"""Tests of the window reader and the geometry of windows: grids, strips, padding, bands, nodata, polygons, WKB."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

from rclip_hf.inference import geo
from rclip_hf.inference.windows import (
    PixelWindow,
    Scene,
    WindowCounts,
    WindowGeometry,
    parse_bands,
    scene_windows,
    window_starts,
)

MERCATOR_RADIUS = 6378137.0


def write_geotiff(path: Path, pixels: np.ndarray, crs: str = "EPSG:3857", origin: tuple[float, float] = (0.0, 0.0),
                  gsd: float = 2.0, nodata: float | None = None) -> Path:
    """Write (bands, H, W) `pixels` as a tiled GeoTIFF whose top-left corner is `origin` with `gsd` map units/px."""
    bands, height, width = pixels.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": pixels.dtype.name,
               "crs": crs, "transform": from_origin(*origin, gsd, gsd), "tiled": True, "blockxsize": 128,
               "blockysize": 128, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as destination:
        destination.write(pixels)
    return path


def dota_pixels(shared_data: Path) -> np.ndarray:
    """P1888 (712 x 557 RGB) as (3, H, W) uint8."""
    return np.asarray(Image.open(shared_data / "dota" / "images" / "P1888.png").convert("RGB")).transpose(2, 0, 1)


def test_window_starts_cover_the_axis_and_end_at_the_far_edge() -> None:
    assert window_starts(712, 256, 256) == (0, 256, 456)
    assert window_starts(557, 256, 128) == (0, 128, 256, 301)
    assert window_starts(100, 256, 256) == (0,)
    with pytest.raises(ValueError, match="stride=0 must be >= 1"):
        window_starts(100, 10, 0)


def test_parse_bands() -> None:
    assert parse_bands("3,2,1") == (3, 2, 1) and parse_bands("2") == (2,) and parse_bands(None) is None
    with pytest.raises(ValueError, match=r"--bands '1,2': give one band \(grey\) or three"):
        parse_bands("1,2")
    with pytest.raises(ValueError, match="--bands 'red'"):
        parse_bands("red")


def test_png_windows_equal_crops_of_the_scene(shared_data: Path) -> None:
    path = shared_data / "dota" / "images" / "P1888.png"  # not georeferenced
    counts = WindowCounts()
    windows = list(scene_windows(path, 256, 256, counts=counts))
    assert [item.window.box for item in windows[:4]] == [(0, 0, 256, 256), (256, 0, 512, 256), (456, 0, 712, 256),
                                                         (0, 256, 256, 512)]
    assert len(windows) == 9 and counts.read == 9 and counts.nodata == 0
    whole = Image.open(path).convert("RGB")
    for item in windows:
        assert item.image.size == (256, 256)
        np.testing.assert_array_equal(np.asarray(item.image), np.asarray(whole.crop(item.window.box)))


def test_window_larger_than_the_scene_gives_one_padded_window(shared_data: Path) -> None:
    path = shared_data / "dota" / "images" / "P1888.png"
    (item,) = scene_windows(path, 1000)
    assert item.window == PixelWindow(0, 0, 712, 557) and item.image.size == (1000, 1000)
    pixels = np.asarray(item.image)
    np.testing.assert_array_equal(pixels[:557, :712], np.asarray(Image.open(path).convert("RGB")))
    assert not pixels[557:].any() and not pixels[:, 712:].any()


def test_scenes_open_together_close_in_any_order(shared_data: Path, tmp_path: Path) -> None:
    from rasterio.env import local

    path = write_geotiff(tmp_path / "p1888.tif", dota_pixels(shared_data))
    first, second = Scene(path), Scene(shared_data / "dota" / "images" / "P1888.png")
    first.close()  # the first opened closes first, as the scene index's scenes opened ahead do
    (window,), _ = second.read_row(0, (0,), 256)
    second.close()
    np.testing.assert_array_equal(np.asarray(window.image), dota_pixels(shared_data)[:, :256, :256].transpose(1, 2, 0))
    assert local._env is None  # no scene's GDAL settings are left behind


def test_band_selection_and_16_bit_stretch(shared_data: Path, tmp_path: Path, caplog) -> None:
    rgb = dota_pixels(shared_data)
    path = write_geotiff(tmp_path / "bgr.tif", rgb[::-1].copy())  # stored as B, G, R
    (item,) = scene_windows(path, 800, bands=(3, 2, 1))
    np.testing.assert_array_equal(np.asarray(item.image)[:557, :712], rgb.transpose(1, 2, 0))
    wide = write_geotiff(tmp_path / "wide.tif", rgb.astype(np.uint16) * 200)
    with Scene(wide) as scene:
        (window,), _ = scene.read_row(0, (0,), 800)
    pixels = np.asarray(window.image)[:557, :712].astype(int)
    assert pixels.max() == 255 and pixels.min() == 0  # stretched 2nd..98th percentile, clipped
    with caplog.at_level(logging.WARNING, logger="rclip_hf.images"), Scene(path, (4, 2, 1)) as scene:
        assert scene.bands == [1, 2, 3]  # a scene with fewer bands is read by its default, with one note
    assert [record.getMessage() for record in caplog.records] == [
        f"{path}: --bands 4,2,1 not applied (it has 3 band(s)); read as bands 1,2,3 by the image rule"]


def test_mostly_nodata_windows_are_skipped_and_counted(shared_data: Path, tmp_path: Path) -> None:
    pixels = dota_pixels(shared_data).astype(np.float32)
    pixels[:, :, :456] = -9999.0  # the two left windows of each row are nodata
    path = write_geotiff(tmp_path / "nodata.tif", pixels, nodata=-9999.0)
    counts = WindowCounts()
    windows = list(scene_windows(path, 256, counts=counts))
    assert (counts.read, counts.nodata) == (3, 6)
    assert [item.window.left for item in windows] == [456, 456, 456]


def test_window_polygons_and_lonlat_corners_of_a_mercator_geotiff(shared_data: Path, tmp_path: Path) -> None:
    origin = (1_000_000.0, 5_000_000.0)
    path = write_geotiff(tmp_path / "mercator.tif", dota_pixels(shared_data), origin=origin, gsd=2.0)
    with Scene(path) as scene:
        assert scene.crs == CRS.from_epsg(3857) and scene.gsd == 2.0
        assert WindowGeometry(window_metres=512.0).resolve(scene) == (256, 256)
        window = PixelWindow(256, 256, 256, 256)
        ring = geo.window_ring(window, scene.transform)
        assert ring == [(1_000_512.0, 4_999_488.0), (1_001_024.0, 4_999_488.0), (1_001_024.0, 4_998_976.0),
                        (1_000_512.0, 4_998_976.0), (1_000_512.0, 4_999_488.0)]
        lonlat = geo.to_lonlat(ring, scene.crs, scene.path)
    for (x, y), (lon, lat) in zip(ring, lonlat):  # spherical Mercator, inverted by hand
        assert lon == pytest.approx(math.degrees(x / MERCATOR_RADIUS), abs=1e-9)
        assert lat == pytest.approx(math.degrees(math.atan(math.sinh(y / MERCATOR_RADIUS))), abs=1e-9)
    assert geo.crs_string(CRS.from_epsg(3857)) == "EPSG:3857"


def test_utm_central_meridian_is_its_zones_longitude() -> None:
    ((lon, lat),) = geo.to_lonlat([(500_000.0, 0.0)], CRS.from_epsg(32633))
    assert lon == pytest.approx(15.0, abs=1e-9) and lat == pytest.approx(0.0, abs=1e-9)


def test_a_crs_that_cannot_be_reprojected_names_the_scene_and_the_crs() -> None:
    local = CRS.from_wkt('LOCAL_CS["site grid",LOCAL_DATUM["arbitrary",0],UNIT["metre",1],'
                         'AXIS["X",EAST],AXIS["Y",NORTH]]')
    with pytest.raises(geo.ReprojectionError, match=r"scene site\.tif: cannot reproject from CRS LOCAL_CS\[\"site grid"):
        geo.to_lonlat([(0.0, 0.0)], local, "site.tif")


def test_window_metres_needs_a_georeferenced_scene(shared_data: Path) -> None:
    with Scene(shared_data / "dota" / "images" / "P1888.png") as scene:
        assert scene.crs is None and scene.gsd is None
        with pytest.raises(ValueError, match=r"--window-metres needs a georeferenced scene; .*P1888.png"):
            WindowGeometry(window_metres=100.0).resolve(scene)


def test_wkb_round_trip_and_bbox_parsing() -> None:
    ring = [(0.5, 1.0), (2.0, 1.0), (2.0, -3.25), (0.5, 1.0)]
    data = geo.polygon_wkb(ring)
    assert data[:9] == bytes([1, 3, 0, 0, 0, 1, 0, 0, 0]) and len(data) == 13 + 16 * 4
    assert geo.wkb_ring(data) == ring
    assert geo.parse_bbox("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="--bbox '3,2,1,4': give minx,miny,maxx,maxy"):
        geo.parse_bbox("3,2,1,4")
    assert geo.intersects((0, 0, 1, 1), (1, 1, 2, 2)) and not geo.intersects((0, 0, 1, 1), (1.5, 0, 2, 1))


@pytest.mark.parametrize("kind", ["rgba_png", "jpeg", "palette_png", "grey_alpha_png", "sixteen_bit_png"])
def test_windows_follow_the_package_image_rule(kind: str, shared_data: Path, tmp_path: Path) -> None:
    """A window read through GDAL equals the same crop of `load_image` (the package's one image rule)."""
    from rclip_hf.images import load_image

    rgba = shared_data / "dota_split" / "images" / "P0004__1__0___0.png"  # 285 x 294 RGBA
    path = {"rgba_png": rgba, "jpeg": shared_data / "aid150" / "Airport" / "airport_1.jpg"}.get(kind)
    if path is None:
        image = Image.open(rgba)
        path = tmp_path / f"{kind}.png"
        if kind == "palette_png":
            image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
        elif kind == "grey_alpha_png":
            image.convert("LA").save(path)
        else:
            grey = np.asarray(image.convert("L"), dtype=np.uint16) * 180 + 300
            Image.fromarray(grey).save(path)  # 16-bit greyscale PNG
    whole = np.asarray(load_image(path))
    windows = list(scene_windows(path, 128, 100, max_nodata=1.0))
    assert len(windows) > 1
    for item in windows:
        left, top, right, bottom = item.window.box
        np.testing.assert_array_equal(np.asarray(item.image)[: bottom - top, : right - left],
                                      whole[top:bottom, left:right], err_msg=f"{kind} window {item.window}")
    with Scene(path) as scene:
        assert scene.overview(64).size[0] == 64 or scene.overview(64).size[1] == 64
        crop = scene.read_window(PixelWindow(10, 20, 100, 50))
        np.testing.assert_array_equal(np.asarray(crop), whole[20:70, 10:110])
        assert scene.read_window(PixelWindow(10, 20, 100, 50), max_side=50).size == (50, 25)
