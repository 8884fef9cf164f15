"""Tests of rclip_hf.images, the one image rule: PNG/JPEG/(Geo)TIFF into RGB, the same for training and inference."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from dataset_builders.sources.images import decode_rgb, image_cell
from rclip_hf.images import ImageReadError, RasterSource, as_rgb_image, image_files, image_size, load_image

BAD = Path(__file__).parent / "data" / "bad_images"


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
    expected = {1000: 0, 2000: 128, 3000: 255}  # (v - 1000) / 2000 * 255, rounded to nearest
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
    assert rgb[9, 9].tolist() == [255, 255, 255] and rgb[4, 5].tolist() == [128, 128, 128]


def test_window_of_a_sixteen_bit_scene_uses_the_scene_stretch(tmp_path: Path) -> None:
    path = _write_tiff(tmp_path / "scene.tif", _three_level_band()[None])
    with RasterSource(path) as source:
        middle = np.asarray(source.read(left=0, top=4, width=10, height=2))  # only 2000-valued pixels
    assert set(np.unique(middle)) == {128}


def test_sixteen_bit_png_through_pil(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    Image.fromarray(_three_level_band()).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_image(path))
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[5, 0].tolist() == [128, 128, 128]


def test_errors_name_the_file(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg: cannot read image"):
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


def test_per_band_stretch_keeps_each_band_range_and_non_finite_is_black(tmp_path: Path) -> None:
    band = _three_level_band().astype(np.float32)
    bands = np.stack([band, band * 10, band / 1000])  # three gains: per band, each spans 0..255
    bands[1, 0, 0] = np.nan
    bands[2, 0, 1] = np.inf
    rgb = np.asarray(load_image(_write_tiff(tmp_path / "float.tif", bands)))
    assert rgb[9, 9].tolist() == [255, 255, 255] and rgb[4, 5].tolist() == [128, 128, 128]
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [0, 0, 0]


def test_palette_cmyk_and_grey_alpha_convert_as_pil(tmp_path: Path) -> None:
    rgb = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    for mode in ("P", "CMYK", "LA"):
        image = rgb.convert(mode)
        np.testing.assert_array_equal(np.asarray(as_rgb_image(image)), np.asarray(image.convert("RGB")))
    path = tmp_path / "palette.png"
    rgb.convert("P").save(path)
    decoded = decode_rgb(path)
    assert decoded.converted_from == "P" and not decoded.passthrough


def test_decompression_bomb_is_an_image_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 * 64 > 2 * 1000: Pillow would refuse it
    with pytest.raises(ImageReadError, match=r"big.png: cannot read image: 64x64 = 4,096 pixels is over the limit "
                                             r"of 1,000 \(the decompression bomb guard\) \(pass --max-pixels 4096"):
        load_image(path)
    assert image_size(path) == (64, 64)  # headers are read whatever the size; the limit applies to decoding
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own limit is left as it was


def test_training_corpus_and_inference_give_the_same_pixels_for_a_sixteen_bit_geotiff(tmp_path: Path) -> None:
    generator = np.random.default_rng(0)
    bands = generator.integers(1, 4000, size=(4, 48, 64)).astype(np.uint16) * np.array([1, 2, 3, 4], np.uint16)[:, None, None]
    bands[:, :3, :3] = 0  # nodata corner
    order = (ColorInterp.undefined, ColorInterp.blue, ColorInterp.green, ColorInterp.red)
    path = _write_tiff(tmp_path / "scene.tif", bands, nodata=0, colorinterp=order)
    served = np.asarray(load_image(path))
    trained = np.asarray(Image.open(io.BytesIO(image_cell(path, "scene.tif")["bytes"])))
    np.testing.assert_array_equal(trained, served)
    window = (8, 4, 40, 36)
    with RasterSource(path) as source:
        served_window = np.asarray(source.read(left=8, top=4, width=32, height=32))
    np.testing.assert_array_equal(np.asarray(decode_rgb(path, window).image), served_window)
    assert served[0, 0].tolist() == [0, 0, 0]  # nodata
    red = bands[3].astype(np.float64)
    low, high = np.percentile(red[bands[3] != 0], [2, 98])
    expected_red = np.clip(np.rint((red - low) / (high - low) * 255), 0, 255)
    expected_red[:3, :3] = 0
    np.testing.assert_array_equal(served[..., 0], expected_red)  # red is band 4, by colour interpretation


def test_image_files_scans_recursively_by_suffix(tmp_path: Path) -> None:
    for name in ("b/2.WEBP", "a.jpg", "b/1.tif", "notes.txt", "c.png/x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [path.relative_to(tmp_path).as_posix() for path in image_files(tmp_path)] == ["a.jpg", "b/1.tif", "b/2.WEBP"]


def test_rgb_png_is_stored_as_is_in_the_corpus() -> None:
    decoded = decode_rgb(BAD / "good.png")
    assert decoded.passthrough and decoded.converted_from == "" and decoded.image.mode == "RGB"


@pytest.mark.parametrize("name", ["corrupt.jpg", "truncated.png"])
def test_corrupt_and_truncated_images_raise_naming_the_file(name: str) -> None:
    with pytest.raises(ImageReadError, match=rf"{name}: cannot read image"):
        decode_rgb(BAD / name)


def test_corrupt_header_raises_in_image_size() -> None:
    with pytest.raises(ImageReadError, match=r"corrupt\.jpg: cannot read image"):
        image_size(BAD / "corrupt.jpg")


def test_rgba_drops_alpha_keeping_colours() -> None:
    decoded = decode_rgb(BAD / "rgba.png")
    original = np.asarray(Image.open(BAD / "rgba.png"))
    assert decoded.converted_from == "RGBA" and not decoded.passthrough
    np.testing.assert_array_equal(np.asarray(decoded.image), original[..., :3])


def test_grayscale_is_replicated() -> None:
    decoded = decode_rgb(BAD / "gray.png")
    gray = np.asarray(Image.open(BAD / "gray.png"))
    assert decoded.converted_from == "L"
    np.testing.assert_array_equal(np.asarray(decoded.image), np.repeat(gray[..., None], 3, axis=2))


def test_16_bit_is_stretched_from_2nd_to_98th_percentile() -> None:
    raw = np.asarray(Image.open(BAD / "gray16.png")).astype(np.float64)
    low, high = np.percentile(raw, [2, 98])
    expected = np.clip(np.rint((raw - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)
    decoded = np.asarray(decode_rgb(BAD / "gray16.png").image)
    assert decoded.dtype == np.uint8 and decoded.shape == (64, 64, 3)
    np.testing.assert_array_equal(decoded[..., 0], expected)
    np.testing.assert_array_equal(decoded[..., 2], expected)


def test_multiband_tiff_takes_first_three_bands_each_stretched() -> None:
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(BAD / "multiband.tif") as dataset:
        bands = dataset.read().astype(np.float64)  # (5, 64, 64)
    assert image_size(BAD / "multiband.tif") == (64, 64)
    decoded = decode_rgb(BAD / "multiband.tif")
    assert decoded.converted_from == "5-band uint16"
    low, high = np.percentile(bands[:3], [2, 98], axis=(1, 2))[:, :, None, None]
    expected = np.clip(np.rint((bands[:3] - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(decoded.image), expected.transpose(1, 2, 0))


def test_exclude_near_hashes_a_sixteen_bit_test_image_as_its_corpus_twin() -> None:
    from dataset_builders import dedup

    path = BAD / "multiband.tif"
    assert dedup.phash_image(path) == dedup.phash_value(decode_rgb(path).image)
