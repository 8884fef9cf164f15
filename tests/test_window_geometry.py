"""Window options checked and resolved in one place (`windows.WindowGeometry`), for scene indexes and heat maps:
pixels and metres never mixed, and the ground sample distance right for rotated transforms, CRSs in feet and
geographic CRSs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.transform import Affine
from test_scene_windows import dota_pixels

from rclip_hf import cli
from rclip_hf.inference.heatmap import heatmap
from rclip_hf.inference.scenes import WindowOptions
from rclip_hf.inference.windows import Scene, WindowGeometry, scene_windows

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model, tiny_model_dir


def _scene(path: Path, pixels: np.ndarray, crs: str, transform: Affine) -> Path:
    bands, height, width = pixels.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=pixels.dtype.name,
                       crs=crs, transform=transform) as destination:
        destination.write(pixels)
    return path


@pytest.mark.parametrize(("flags", "named"), [
    ({"window_metres": 200.0, "stride": 128}, "--stride 128 and --window-metres 200"),
    ({"window": 256, "stride_metres": 100.0}, "--window 256 and --stride-metres 100"),
    ({"window": 256, "window_metres": 200.0}, "--window 256 and --window-metres 200"),
])
def test_pixel_and_metre_flags_are_not_mixed(flags: dict, named: str, tiny_model_dir: Path, tmp_path: Path,
                                             shared_data: Path, capsys) -> None:
    with pytest.raises(ValueError, match=f"^{named}: give sizes all in pixels"):
        WindowGeometry(**flags)
    with pytest.raises(ValueError, match=f"^{named}: "):
        WindowOptions(**flags)
    argv = [f"--{name.replace('_', '-')}={value}" for name, value in flags.items()]
    scene = str(shared_data / "dota" / "images" / "P1888.png")
    for command in (["index", "--model", str(tiny_model_dir), "--source", scene, "--output", str(tmp_path / "i")],
                    ["heatmap", "--model", str(tiny_model_dir), "--image", scene, "--queries", "x"]):
        assert cli.main([*command, *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {named}: give sizes all in pixels")


def test_a_stride_without_a_window_size_is_refused(tiny_model_dir: Path, tmp_path: Path, shared_data: Path,
                                                   capsys) -> None:
    source = str(shared_data / "dota" / "images")
    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", source, "--output", str(tmp_path / "i"),
                     "--stride", "128"]) == 2  # not a whole-image index with the stride dropped
    assert capsys.readouterr().err == "error: --stride 128 needs a window size: give --window PX too\n"
    with pytest.raises(ValueError, match="^--stride-metres 50 needs a window size: give --window-metres M too$"):
        WindowGeometry(stride_metres=50.0)


def test_ground_sample_distance_of_rotated_feet_and_geographic_scenes(shared_data: Path, tmp_path: Path) -> None:
    pixels = dota_pixels(shared_data)[:, :64, :96]
    angle = math.radians(30)  # 2 m pixels, rotated by 30 degrees
    rotated = Affine(2 * math.cos(angle), -2 * math.sin(angle), 500_000.0,
                     2 * math.sin(angle), -2 * math.cos(angle), 4_000_000.0)
    feet = Affine(2.0, 0, 2_000_000.0, 0, -2.0, 600_000.0)  # 2 US survey feet a pixel
    degrees = Affine(1e-5, 0, 10.0, 0, -1e-5, 45.0)  # 0.00001 degree pixels at 45 N
    lon, lat = degrees * (48, 32)  # the scene's centre; pyproj's geodesics on WGS 84, independently
    east, north = (pyproj.Geod(ellps="WGS84").inv(lon, lat, lon + dx, lat + dy)[2] for dx, dy in ((1e-5, 0), (0, 1e-5)))
    cases = {"rotated": ("EPSG:32633", rotated, 2.0), "feet": ("EPSG:2227", feet, 2 * 1200 / 3937),
             "degrees": ("EPSG:4326", degrees, (east + north) / 2)}
    for name, (crs, transform, gsd) in cases.items():
        path = _scene(tmp_path / f"{name}.tif", pixels, crs, transform)
        with Scene(path) as scene:
            assert scene.gsd == pytest.approx(gsd, rel=1e-6), name
            assert WindowGeometry(window_metres=20 * gsd, stride_metres=10 * gsd).resolve(scene) == (20, 10)
        assert len(list(scene_windows(path, None, window_metres=32 * gsd))) == 3 * 2  # 96 x 64 px
    with pytest.raises(ValueError, match=r"--window-metres needs a georeferenced scene; .*P1888.png"):
        list(scene_windows(shared_data / "dota" / "images" / "P1888.png", None, window_metres=10.0))


def test_heatmap_takes_the_index_window_terms(tiny_model, shared_data: Path, tmp_path: Path) -> None:
    model, processor = tiny_model
    scene = _scene(tmp_path / "scene.tif", dota_pixels(shared_data), "EPSG:32633",
                   Affine(0.5, 0, 500_000.0, 0, -0.5, 4_000_000.0))
    by_metres = heatmap(scene, ["planes"], model=model, processor=processor, window_metres=100.0, stride_metres=50.0)
    by_pixels = heatmap(scene, ["planes"], model=model, processor=processor, window=200, stride=100)
    assert (by_metres.grid.window, by_metres.grid.stride) == (200, 100) and by_metres.grid == by_pixels.grid
    np.testing.assert_allclose(by_metres.scores, by_pixels.scores, atol=1e-6)
    assert heatmap(scene, ["planes"], model=model, processor=processor, window=200).grid.stride == 133  # overlap 1/3
