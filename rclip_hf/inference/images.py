"""Reading JPEG/PNG/TIFF/GeoTIFF images, whole or window by window, as 8-bit RGB `PIL.Image`s.

Conversion rule for anything that is not already 8-bit RGB (the same for PIL and rasterio inputs):

- **Bands.** A raster whose colour interpretation names red, green and blue bands uses those; otherwise a raster
  with three or more bands uses bands 1, 2, 3 in file order (alpha bands are never used as colour). One band,
  or two (grey + alpha or grey + an extra band), gives a grey image: band 1 copied to R, G and B.
- **Values.** 8-bit bands are used as they are. Any other type (16-bit, 32-bit, float) is stretched linearly
  per band from its 2nd to its 98th percentile onto 0..255 and clipped; nodata and non-finite values are left
  out of the percentiles and become 0. A window of a large raster uses the percentiles of the whole scene
  (estimated on a decimated read of at most 1024 px on the longer side), so all windows share one mapping.
- **Alpha** is dropped (no compositing): an RGBA PNG gives its RGB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: File suffixes read through rasterio (window by window, with georeference) when it is installed.
TIFF_SUFFIXES = (".tif", ".tiff")
#: File suffixes treated as images when a folder is scanned.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: Percentiles of the linear stretch applied to bands that are not 8-bit.
STRETCH_PERCENTILES = (2.0, 98.0)
#: Longest side of the decimated read used to estimate a whole scene's stretch.
STRETCH_SAMPLE_SIZE = 1024


class ImageReadError(OSError):
    """An image file exists but cannot be decoded; the message names the file and the reason."""


@dataclass(frozen=True)
class Georeference:
    """Where a raster lies on the ground: its CRS and affine pixel-to-map transform (rasterio objects)."""

    crs: Any
    transform: Any


def stretch_limits(bands: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-band (low, high) of the linear stretch: (bands, H, W) values -> (bands, 2) float64 percentiles."""
    limits = np.zeros((bands.shape[0], 2), dtype=np.float64)
    for index, band in enumerate(bands):
        values = band[np.isfinite(band)] if valid is None else band[valid & np.isfinite(band)]
        if values.size:
            limits[index] = np.percentile(values, STRETCH_PERCENTILES)
    return limits


def to_rgb(bands: np.ndarray, limits: np.ndarray | None = None, valid: np.ndarray | None = None) -> Image.Image:
    """(bands, H, W) array of already selected bands (1 or 3) -> 8-bit RGB image, by the module's rule."""
    if bands.ndim != 3 or bands.shape[0] not in (1, 3):
        raise ValueError(f"to_rgb: expected (1 or 3, H, W) bands, got shape {bands.shape}")
    if bands.dtype == np.uint8:
        out = bands.copy()
    else:
        values = bands.astype(np.float64)
        limits = stretch_limits(values, valid) if limits is None else limits
        low, high = limits[:, :1, None], limits[:, 1:, None]
        scaled = (values - low) / np.maximum(high - low, np.finfo(np.float64).eps) * 255.0
        out = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)
    if valid is not None:
        out[:, ~valid] = 0
    if out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    return Image.fromarray(np.ascontiguousarray(out.transpose(1, 2, 0)), mode="RGB")


class RasterSource:
    """An image file opened for reading windows as RGB; `width`, `height`, `georeference` (None if not geo)."""

    def __init__(self, path: str | Path | Image.Image):
        self._dataset = None
        self._image: Image.Image | None = None
        self.georeference: Georeference | None = None
        if isinstance(path, Image.Image):
            self.path = Path(getattr(path, "filename", "") or "<in-memory image>")
            self._image = _pil_to_rgb(path)
            self.width, self.height = self._image.size
            return
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"image file not found: {self.path}")
        if self.path.suffix.lower() in TIFF_SUFFIXES and _rasterio() is not None:
            self._open_rasterio()
        else:
            self._open_pil()

    def _open_pil(self) -> None:
        try:
            with Image.open(self.path) as image:
                image.load()
                self._image = _pil_to_rgb(image)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            raise ImageReadError(f"cannot read image {self.path}: {error}") from None
        self.width, self.height = self._image.size

    def _open_rasterio(self) -> None:
        rasterio = _rasterio()
        try:
            self._dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioError as error:
            raise ImageReadError(f"cannot read image {self.path}: {error}") from None
        dataset = self._dataset
        self.width, self.height = dataset.width, dataset.height
        self._bands = _select_bands(dataset.colorinterp, dataset.count)
        self._limits = None
        if dataset.dtypes[self._bands[0] - 1] != "uint8":
            scale = max(1, -(-max(self.width, self.height) // STRETCH_SAMPLE_SIZE))
            out_shape = (len(self._bands), max(1, self.height // scale), max(1, self.width // scale))
            sample = self._read_bands(None, out_shape)
            self._limits = stretch_limits(sample, self._valid(sample))
        if dataset.crs is not None and not dataset.transform.is_identity:
            self.georeference = Georeference(crs=dataset.crs, transform=dataset.transform)

    def _read_bands(self, window: Any, out_shape: tuple[int, int, int] | None = None) -> np.ndarray:
        try:
            return self._dataset.read(self._bands, window=window, out_shape=out_shape)
        except _rasterio().errors.RasterioError as error:
            raise ImageReadError(f"cannot read image {self.path} (window {window}): {error}") from None

    def _valid(self, bands: np.ndarray) -> np.ndarray | None:
        nodata = self._dataset.nodata
        if nodata is None or self._dataset.dtypes[self._bands[0] - 1] == "uint8":
            return None
        return ~np.all(bands == nodata, axis=0)

    def read(self, left: int = 0, top: int = 0, width: int | None = None, height: int | None = None) -> Image.Image:
        """The window of `width` x `height` pixels at (`left`, `top`) (default: the whole image) as RGB."""
        width = self.width - left if width is None else width
        height = self.height - top if height is None else height
        if left < 0 or top < 0 or width < 1 or height < 1 or left + width > self.width or top + height > self.height:
            raise ValueError(f"window (left={left}, top={top}, width={width}, height={height}) is outside "
                             f"{self.path} ({self.width}x{self.height})")
        if self._image is not None:
            return self._image.crop((left, top, left + width, top + height))
        window = _rasterio().windows.Window(left, top, width, height)
        bands = self._read_bands(window)
        return to_rgb(bands, self._limits, self._valid(bands))

    def overview(self, max_side: int) -> Image.Image:
        """The whole image resized so that its longer side is at most `max_side` (decimated read for rasters)."""
        scale = min(1.0, max_side / max(self.width, self.height))
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        if self._image is not None:
            return self._image.resize(size, Image.Resampling.BILINEAR) if scale < 1 else self._image.copy()
        bands = self._read_bands(None, (len(self._bands), size[1], size[0]))
        return to_rgb(bands, self._limits, self._valid(bands))

    def close(self) -> None:
        """Release the file handle."""
        if self._dataset is not None:
            self._dataset.close()

    def __enter__(self) -> RasterSource:  # noqa: PYI034 (final class in practice)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load_image(path: str | Path) -> Image.Image:
    """The whole image file at `path` as 8-bit RGB (see the module docstring for the conversion rule)."""
    with RasterSource(path) as source:
        return source.read()


def as_rgb_image(image: Image.Image | str | Path) -> Image.Image:
    """A PIL image converted to RGB by the module's rule, or the image file at a path read as RGB."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    raise TypeError(f"expected a PIL image or a path, got {type(image).__name__}")


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return to_rgb(np.asarray(image)[None])
    return image.convert("RGB")


def _select_bands(colorinterp: tuple[Any, ...], count: int) -> list[int]:
    names = [getattr(interp, "name", str(interp)) for interp in colorinterp]
    if all(colour in names for colour in ("red", "green", "blue")):
        return [names.index(colour) + 1 for colour in ("red", "green", "blue")]
    colour_bands = [index + 1 for index, name in enumerate(names) if name != "alpha"]
    return colour_bands[:3] if len(colour_bands) >= 3 else colour_bands[:1] or [1]


def _rasterio() -> Any:
    try:
        import rasterio
        import rasterio.errors
        import rasterio.windows
    except ImportError:
        return None
    return rasterio


__all__ = ["IMAGE_SUFFIXES", "Georeference", "ImageReadError", "RasterSource", "as_rgb_image", "load_image",
           "stretch_limits", "to_rgb"]
