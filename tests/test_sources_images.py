"""Decoding rule of the readers: corrupt/truncated files fail with the file named; other layouts become 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_builders.sources.images import ImageReadError, decode_rgb, image_size

BAD = Path(__file__).parent / "data" / "bad_images"


def test_rgb_png_is_passed_through() -> None:
    decoded = decode_rgb(BAD / "good.png")
    assert decoded.passthrough and decoded.converted_from == "" and decoded.image.mode == "RGB"


@pytest.mark.parametrize("name", ["corrupt.jpg", "truncated.png"])
def test_corrupt_and_truncated_images_raise_naming_the_file(name: str) -> None:
    with pytest.raises(ImageReadError, match=rf"{name}: corrupt or truncated image"):
        decode_rgb(BAD / name)


def test_corrupt_header_raises_in_image_size() -> None:
    with pytest.raises(ImageReadError, match=r"corrupt\.jpg: not a readable image"):
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


def test_multiband_tiff_takes_first_three_bands() -> None:
    import rasterio

    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(BAD / "multiband.tif") as dataset:
        bands = dataset.read().astype(np.float64)  # (5, 64, 64)
    assert image_size(BAD / "multiband.tif") == (64, 64)
    decoded = decode_rgb(BAD / "multiband.tif")
    assert decoded.converted_from == "5-band uint16"
    rgb = bands[:3].transpose(1, 2, 0)
    low, high = np.percentile(rgb, [2, 98])
    expected = np.clip(np.rint((rgb - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(decoded.image), expected)
