"""Image decoding for the source readers: any raster the sources ship, as 8-bit RGB.

Conversion rule (applied only when a file is not already 8-bit RGB):
- grayscale (``L``, ``1``) and palette (``P``) images are expanded to RGB;
- RGBA / LA: the alpha band is discarded (remote-sensing tiles use it as a no-data mask; the colour
  values under it are kept as they are);
- 16-bit, 32-bit integer and float rasters: the bands are stretched jointly (one range for all bands, so
  colour balance is kept) from their 2nd to 98th percentile to 0..255, clipped;
- multi-band TIFFs (more than 4 bands, or any TIFF Pillow cannot read) are read with rasterio; the first
  three bands are taken as R, G, B (the band order of RGB-NIR aerial tiles), a single band is repeated.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

TIFF_SUFFIXES = (".tif", ".tiff")
#: formats whose original bytes are stored unchanged in the corpus when the image is 8-bit RGB
PASSTHROUGH_FORMATS = ("JPEG", "PNG")


class ImageReadError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated or of an unsupported layout)."""


@dataclass
class DecodedImage:
    """A decoded image as 8-bit RGB, with whether the original file bytes can be stored unchanged."""

    image: Image.Image
    passthrough: bool
    converted_from: str  # "" when stored as is, else what was converted (e.g. "RGBA", "TIFF", "5-band uint16")


def _stretch_to_uint8(array: np.ndarray) -> np.ndarray:
    """Stretch an (H, W, C) array of any numeric dtype jointly from its 2nd-98th percentile to uint8."""
    values = array.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(array.shape, dtype=np.uint8)
    low, high = np.percentile(finite, [2.0, 98.0])
    if high <= low:
        high = low + 1.0
    scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) raster of any dtype -> (H, W, 3) uint8 by the module's rule."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 2:  # gray + alpha
        array = array[:, :, :1]
    if array.shape[2] >= 3:
        array = array[:, :, :3]
    if array.dtype != np.uint8:
        array = _stretch_to_uint8(array)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def _read_with_rasterio(path: Path) -> np.ndarray:
    """Read every band of a GeoTIFF as an (H, W, C) array."""
    import rasterio

    try:
        with warnings.catch_warnings():  # plain (non-geo) TIFFs are fine here
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as dataset:
                bands = dataset.read()  # (C, H, W)
    except rasterio.errors.RasterioError as error:
        raise ImageReadError(f"{path}: cannot read raster: {error}") from error
    return np.moveaxis(bands, 0, -1)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header only (rasterio for TIFFs Pillow cannot open)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = _read_with_rasterio(path)
            return int(array.shape[1]), int(array.shape[0])
        raise ImageReadError(f"{path}: not a readable image: {error}") from error


@functools.lru_cache(maxsize=2)
def decoded_whole(path: Path, decode: Callable[[Path], Any]) -> Any:
    """``decode(path)``, kept for the next calls: the windows of one large tile (and of its mask), taken one
    after the other, decode it once. ``decoded_whole.cache_clear()`` frees it."""
    return decode(path)


def decode_rgb(path: Path, window: tuple[int, int, int, int] | None = None) -> DecodedImage:
    """Fully decode an image file (or the ``window`` (x0, y0, x1, y1) of it, stored as PNG) as 8-bit RGB; raises
    ImageReadError naming the file when it cannot."""
    if window is not None:
        whole: DecodedImage = decoded_whole(path, decode_rgb)
        width, height = whole.image.size
        if window[2] > width or window[3] > height:
            raise ImageReadError(f"{path}: window {window} is outside the {width}x{height} image")
        source = whole.converted_from or (whole.image.format or "image")
        return DecodedImage(whole.image.crop(window), passthrough=False,
                            converted_from=f"{source} window {','.join(map(str, window))}")
    try:
        image = Image.open(path)
        file_format, mode = image.format, image.mode
        try:
            image.load()  # full decode (truncated files fail here); Pillow closes a file it opened itself after load
        except BaseException:
            image.close()
            raise
        if mode == "RGB":
            passthrough = file_format in PASSTHROUGH_FORMATS
            return DecodedImage(image, passthrough=passthrough, converted_from="" if passthrough else str(file_format))
        if mode in ("L", "1", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "RGBX"):
            return DecodedImage(image.convert("RGB"), passthrough=False, converted_from=mode)
        array = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise ImageReadError(f"{path}: corrupt or truncated image: {error}") from error
        array = _read_with_rasterio(path)
        mode = f"{array.shape[2]}-band {array.dtype}"
    return DecodedImage(Image.fromarray(_array_to_rgb(array)), passthrough=False, converted_from=mode)


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG bytes of an image (used for converted images)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_cell(path: Path, name: str) -> dict[str, bytes | str]:
    """An ``Image()`` feature value for a file: its original bytes when 8-bit RGB JPEG/PNG, else converted PNG."""
    decoded = decode_rgb(path)
    data = path.read_bytes() if decoded.passthrough else encode_png(decoded.image)
    return {"bytes": data, "path": name}
