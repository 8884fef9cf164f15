"""Reading JPEG/PNG/TIFF/GeoTIFF images, whole or window by window, as 8-bit `PIL.Image`s.

The one conversion rule of the package: the training corpus (`dataset_builders`), evaluation and inference all
read images through this module, so one file gives the same pixels everywhere. For anything that is not already
8-bit RGB it follows the display conventions of rasterio, QGIS and torchgeo's plots:

- **Bands.** A raster whose colour interpretation names red, green and blue bands uses those; else one whose band
  descriptions name them (`COLOUR_DESCRIPTIONS`: "red", "B04", ...); otherwise a raster with three or more bands
  uses bands 1, 2, 3 in file order (alpha bands are never used as colour). One band, or two (grey + alpha or grey
  + an extra band), gives a grey image: band 1 copied to R, G and B. Explicit `bands` (`--bands`) apply to a
  (Geo)TIFF that has them all; any other file is read by the default, with a one-line note (`colour_bands`).
- **Values.** 8-bit bands are used as they are. Any other type (16-bit, 32-bit, float) is stretched linearly *per
  band* from its 2nd to its 98th percentile onto 0..255, rounded to the nearest integer and clipped (each band of a
  multispectral sensor has its own gain, so one range for all bands would tint the image). Nodata (GDAL's dataset
  mask: the nodata value, an alpha band or a mask band, for every data type; `RasterBands`) and non-finite values are
  left out of the percentiles and become 0 (8-bit pixels are kept as stored). A constant band becomes 0. A window of a
  large raster uses the percentiles of the whole scene (estimated on a decimated read of at most 1024 px on the longer
  side), so all windows share one mapping and a window equals the same crop of the whole image.
- **Alpha** is dropped without compositing, as open_clip's `_convert_to_rgb` (`Image.convert("RGB")`) drops it.
  Palette, CMYK, YCbCr, 1-bit and grey images go through `Image.convert("RGB")`.
- **What the model sees.** open_clip converts to RGB *after* its resize and crop, and Pillow resizes an image with
  alpha premultiplied, a palette or 1-bit image with nearest neighbour, CMYK in CMYK. So every path to a model
  (classify, count, search and index, heat maps, evaluation, training) takes the image in its own 8-bit mode
  (`open_image`, `as_model_image`, `open_dataset_image`, `model_image`) and leaves the conversion to the processor,
  which resizes, crops, then converts (`processing_remoteclip.open_clip_rgb`): a file gives open_clip's
  `preprocess(Image.open(file))` exactly. Only data that is not 8-bit (16-bit, 32-bit, float, multi-band) is
  converted before, by the stretch above, since `convert("RGB")` would clip it at 255. `load_image`,
  `as_rgb_image` and `decode_dataset_image` give the RGB image, for pixels read outside the model (windows of
  scenes, thumbnails, hashes).
- **Readers.** `.tif`/`.tiff` files are read with rasterio (window by window, with georeference) when it is
  installed (`pip install rclip-hf[geo]`), everything else with Pillow. Search and heat maps read scenes of any
  format by rows of windows through `inference/windows.py`'s `Scene`. Both read rasterio datasets through the one
  `RasterBands` (bands, nodata, stretch), so a window equals the same crop of the whole image (tested).
- **Huge scenes.** One pixel limit for every reader, Pillow's `PIL.Image.MAX_IMAGE_PIXELS` (default 89,478,485;
  the CLI's `--max-pixels` sets it): an image over it is refused with `ImageTooLargeError`, naming its size, the
  limit and `--max-pixels`, unless it is opened for windows (`RasterSource(path, windowed=True)`, as the dataset
  builders' crops of large scenes are): a (Geo)TIFF is then read window by window (memory bounded by a window and the stretch's decimated
  sample), a PNG/JPEG is decoded whole. `image_size` reads headers only and never refuses a size.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

#: File suffixes read through rasterio (window by window, with georeference) when it is installed.
TIFF_SUFFIXES = (".tif", ".tiff")
#: File suffixes treated as images when a folder is scanned.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: Percentiles of the linear stretch applied to bands that are not 8-bit.
STRETCH_PERCENTILES = (2.0, 98.0)
#: Longest side of the decimated read used to estimate a whole scene's stretch.
STRETCH_SAMPLE_SIZE = 1024
#: Words of band descriptions read as colours (a description's words, lower case): names and the band names of
#: Sentinel-2 and Landsat 8/9 (B02/B2 blue, B03/B3 green, B04/B4 red).
COLOUR_DESCRIPTIONS = {"red": ("red", "b04", "b4"), "green": ("green", "b03", "b3"), "blue": ("blue", "b02", "b2")}
#: Pillow modes of 8-bit data, converted with `Image.convert("RGB")`; other modes (16/32-bit, float) are stretched.
EIGHT_BIT_MODES = frozenset({"RGB", "1", "L", "LA", "La", "P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
#: Pillow's errors for a file that is not a readable image (UnidentifiedImageError is an OSError).
_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageReadError(OSError):
    """An image file exists but cannot be decoded; the message names the file and the reason."""


class ImageTooLargeError(ImageReadError):
    """An image over the pixel limit, opened to be read whole; the message names its size, the limit and the flag."""


#: Serialises the moments Pillow's own (global) bomb check is lifted to read a header: the limit is applied here
_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_header(path: Path) -> tuple[Image.Image, int | None]:
    """(the lazily opened image, the pixel limit in force) without Pillow's bomb check, which refuses a large file
    before its size is known; the caller applies the limit."""
    with _PILLOW_LIMIT_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path), limit
        finally:
            Image.MAX_IMAGE_PIXELS = limit


@contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, the pixel limit is `max_pixels` (None: unchanged); restored after it."""
    previous = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        if max_pixels < 1:
            raise ValueError(f"--max-pixels {max_pixels}: must be at least 1")
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_pixels(path: Path, width: int, height: int, limit: int | None) -> None:
    """Raise `ImageTooLargeError` when a `width` x `height` image is over the pixel `limit` (None: no limit)."""
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(
            f"{path}: cannot read image: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{limit:,} (the decompression bomb guard) (pass --max-pixels {width * height} if you trust the file "
            "and have the memory, or use rclip-hf heatmap, which reads it window by window)")


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
        finite = np.isfinite(values)
        scaled = (np.where(finite, values, low) - low) / np.maximum(high - low, np.finfo(np.float64).eps) * 255.0
        out = np.where(finite, np.clip(np.rint(scaled), 0, 255), 0).astype(np.uint8)
    if valid is not None:
        out[:, ~valid] = 0
    if out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    return Image.fromarray(np.ascontiguousarray(out.transpose(1, 2, 0)), mode="RGB")


def select_bands(colorinterp: tuple[Any, ...], count: int, descriptions: Sequence[str | None] = ()) -> list[int]:
    """1-based band numbers used as colour: red/green/blue by colour interpretation, else by band description
    (`COLOUR_DESCRIPTIONS`: "red", "B04", ...), else the first 3 non-alpha bands (or the first)."""
    names = [getattr(interp, "name", str(interp)) for interp in colorinterp]
    if all(colour in names for colour in ("red", "green", "blue")):
        return [names.index(colour) + 1 for colour in ("red", "green", "blue")]
    described = [[index + 1 for index, text in enumerate(descriptions)
                  if set(re.split(r"[^a-z0-9]+", (text or "").lower())) & set(COLOUR_DESCRIPTIONS[colour])]
                 for colour in ("red", "green", "blue")]
    if all(len(matches) == 1 for matches in described) and len({matches[0] for matches in described}) == 3:
        return [matches[0] for matches in described]
    not_alpha = [index + 1 for index, name in enumerate(names) if name != "alpha"]
    return not_alpha[:3] if len(not_alpha) >= 3 else not_alpha[:1] or [1]


def colour_bands(dataset: Any, path: str | Path, bands: Sequence[int] | None = None) -> list[int]:
    """The bands of an open rasterio `dataset` read as colour: `bands` (1-based, one or three) for a (Geo)TIFF that
    has them all, else `select_bands`' default; `bands` that do not apply are noted in one line (`note_bands`)."""
    default = select_bands(dataset.colorinterp, dataset.count, dataset.descriptions)
    if not bands:
        return default
    if Path(path).suffix.lower() not in TIFF_SUFFIXES:
        note_bands(path, bands, "--bands applies to (Geo)TIFF rasters", default)
        return default
    if max(bands) > dataset.count:
        note_bands(path, bands, f"it has {dataset.count} band(s)", default)
        return default
    return list(bands)


def note_bands(path: str | Path, bands: Sequence[int], reason: str, used: Sequence[int] | None = None) -> None:
    """Log the one line saying that `bands` were not applied to the image at `path`, why, and what was read."""
    read_as = f"bands {','.join(map(str, used))}" if used else "its colours"
    logger.warning("%s: --bands %s not applied (%s); read as %s by the image rule", path, ",".join(map(str, bands)),
                   reason, read_as)


class RasterBands:
    """The colour bands of an open rasterio dataset read by the image rule: the package's one raster reader, used
    for whole images (`RasterSource`) and for windows of scenes (`inference/windows.py`'s `Scene`).

    The one nodata rule: a pixel is nodata where GDAL's dataset mask says so (the nodata value, an alpha band or a
    mask band), for every data type. Nodata is left out of the stretch's percentiles, makes a window "mostly
    nodata" (skipped by scene readers), and becomes 0 in data that is stretched; 8-bit pixels are used as stored
    (as Pillow reads them). `has_mask` is False when every pixel is valid.
    """

    def __init__(self, dataset: Any, path: str | Path, bands: Sequence[int] | None = None):
        self.dataset, self.path = dataset, Path(path)
        self.bands = colour_bands(dataset, path, bands)
        self.eight_bit = dataset.dtypes[self.bands[0] - 1] == "uint8"
        flags = {flag.name for band_flags in dataset.mask_flag_enums for flag in band_flags}
        self.has_mask = bool(flags & {"alpha", "per_dataset", "nodata"})
        self.limits: np.ndarray | None = None
        if not self.eight_bit:
            scale = max(1, -(-max(dataset.width, dataset.height) // STRETCH_SAMPLE_SIZE))
            shape = (len(self.bands), max(1, dataset.height // scale), max(1, dataset.width // scale))
            self.limits = stretch_limits(self.read(None, shape), self.valid(None, shape[1:]))

    def read(self, window: Any = None, out_shape: tuple[int, int, int] | None = None) -> np.ndarray:
        """(bands, h, w) values of the selected bands in a rasterio `window` (None: all), resampled to `out_shape`."""
        try:
            return self.dataset.read(self.bands, window=window, out_shape=out_shape)
        except _rasterio().errors.RasterioError as error:
            raise ImageReadError(f"{self.path}: cannot read image (window {window}): {error}") from None

    def valid(self, window: Any = None, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """Bool (h, w): the pixels that are not nodata; None when the raster has no nodata."""
        if not self.has_mask:
            return None
        return self.dataset.dataset_mask(window=window, out_shape=shape) > 0

    def to_rgb(self, bands: np.ndarray, valid: np.ndarray | None) -> Image.Image:
        """Values read by `read` (palette bands already expanded) and their `valid` mask -> 8-bit RGB."""
        return to_rgb(bands, self.limits, None if self.eight_bit else valid)

    def read_rgb(self, window: Any = None, out_shape: tuple[int, int, int] | None = None) -> Image.Image:
        """`read` as 8-bit RGB (the mask is read only for data that is stretched)."""
        valid = None if self.eight_bit else self.valid(window, None if out_shape is None else out_shape[1:])
        return self.to_rgb(self.read(window, out_shape), valid)


class RasterSource:
    """An image file opened for reading windows as RGB.

    Attributes: `width`, `height`; `georeference` (None if not geo-referenced); `format` (Pillow's format name:
    "JPEG", "PNG", "TIFF" also for files read with rasterio); `converted_from` ("" when the file's pixels are 8-bit RGB as stored,
    else the layout converted by the module's rule, e.g. "RGBA", "I;16", "5-band uint16").
    """

    def __init__(self, path: str | Path | Image.Image, windowed: bool = False, bands: Sequence[int] | None = None):
        self.windowed = windowed
        self._dataset = None
        self._raster: RasterBands | None = None
        self._image: Image.Image | None = None
        self.georeference: Georeference | None = None
        if isinstance(path, Image.Image):
            self.path = Path(getattr(path, "filename", "") or "<in-memory image>")
            self.format, self.converted_from = path.format or "", "" if path.mode == "RGB" else path.mode
            self._image = _pil_to_rgb(path)
            self.width, self.height = self._image.size
            return
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"image file not found: {self.path}")
        if self.path.suffix.lower() in TIFF_SUFFIXES and _rasterio() is not None:
            self._open_rasterio(bands)
        else:
            if bands:
                note_bands(self.path, bands, "--bands applies to (Geo)TIFF rasters")
            self._open_pil()

    def _open_pil(self) -> None:
        image = _read_pil(self.path, check_size=not self.windowed)
        self.format, self.converted_from = str(image.format), "" if image.mode == "RGB" else image.mode
        self._image = _pil_to_rgb(image)
        self.width, self.height = self._image.size

    def _open_rasterio(self, bands: Sequence[int] | None) -> None:
        rasterio = _rasterio()
        try:
            with warnings.catch_warnings():  # a plain (non-geo) TIFF is fine: georeference stays None
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioError as error:
            raise ImageReadError(f"{self.path}: cannot read image: {error}") from None
        dataset = self._dataset
        self.width, self.height = dataset.width, dataset.height
        try:
            if not self.windowed:
                check_pixels(self.path, self.width, self.height, Image.MAX_IMAGE_PIXELS)
            self._raster = RasterBands(dataset, self.path, bands)
        except BaseException:
            dataset.close()
            raise
        self.format = "TIFF"
        dtype = dataset.dtypes[self._raster.bands[0] - 1]
        rgb_as_stored = dtype == "uint8" and len(self._raster.bands) == 3 and dataset.count == 3
        self.converted_from = "" if rgb_as_stored else f"{dataset.count}-band {dtype}"
        if dataset.crs is not None and not dataset.transform.is_identity:
            self.georeference = Georeference(crs=dataset.crs, transform=dataset.transform)

    def read(self, left: int = 0, top: int = 0, width: int | None = None, height: int | None = None) -> Image.Image:
        """The window of `width` x `height` pixels at (`left`, `top`) (default: the whole image) as RGB."""
        width = self.width - left if width is None else width
        height = self.height - top if height is None else height
        if left < 0 or top < 0 or width < 1 or height < 1 or left + width > self.width or top + height > self.height:
            raise ValueError(f"window (left={left}, top={top}, width={width}, height={height}) is outside "
                             f"{self.path} ({self.width}x{self.height})")
        if self._image is not None:
            if (left, top, width, height) == (0, 0, self.width, self.height):
                return self._image
            return self._image.crop((left, top, left + width, top + height))
        window = _rasterio().windows.Window(left, top, width, height)
        return self._raster.read_rgb(window)

    def overview(self, max_side: int) -> Image.Image:
        """The whole image resized so that its longer side is at most `max_side` (decimated read for rasters)."""
        scale = min(1.0, max_side / max(self.width, self.height))
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        if self._image is not None:
            return self._image.resize(size, Image.Resampling.BILINEAR) if scale < 1 else self._image.copy()
        return self._raster.read_rgb(None, (len(self._raster.bands), size[1], size[0]))

    def close(self) -> None:
        """Release the file handle."""
        if self._dataset is not None:
            self._dataset.close()

    def __enter__(self) -> RasterSource:  # noqa: PYI034 (final class in practice)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load_image(path: str | Path, bands: Sequence[int] | None = None) -> Image.Image:
    """The whole image file at `path` as 8-bit RGB (see the module docstring for the conversion rule); `bands`
    (1-based, one or three) picks a (Geo)TIFF's bands instead of its colour interpretation."""
    with RasterSource(path, bands=bands) as source:
        return source.read()


def model_image(image: Image.Image) -> Image.Image:
    """`image` as a model's processor takes it: 8-bit images in their own mode (the processor resizes and crops,
    then converts to RGB, as open_clip does), other data (16-bit, 32-bit, float) stretched to RGB by the rule."""
    if image.mode in EIGHT_BIT_MODES:
        return image
    return to_rgb(np.asarray(image)[None])  # I;16, I, F: one band, stretched


def open_image(path: str | Path, bands: Sequence[int] | None = None) -> Image.Image:
    """The whole image file at `path` as a model's processor takes it (`model_image`): `Image.open(path)` for
    8-bit files Pillow reads, loaded; (Geo)TIFFs read with rasterio (`bands`: as `load_image`'s) and non-8-bit
    data as RGB by the rule."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES and _rasterio() is not None:
        return load_image(path, bands)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if bands:
        note_bands(path, bands, "--bands applies to (Geo)TIFF rasters")
    return model_image(_read_pil(path))


def as_model_image(image: Image.Image | str | Path, bands: Sequence[int] | None = None) -> Image.Image:
    """A PIL image (`model_image`) or the image file at a path (`open_image`, `bands` as its) as a model's
    processor takes it."""
    if isinstance(image, (str, Path)):
        return open_image(image, bands)
    if isinstance(image, Image.Image):
        return model_image(image)
    raise TypeError(f"expected a PIL image or a path, got {type(image).__name__}")


def as_rgb_image(image: Image.Image | str | Path, bands: Sequence[int] | None = None) -> Image.Image:
    """A PIL image converted to RGB by the module's rule, or the image file at a path read as RGB (`bands`: as
    `load_image`'s)."""
    if isinstance(image, (str, Path)):
        return load_image(image, bands)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    raise TypeError(f"expected a PIL image or a path, got {type(image).__name__}")


def open_dataset_image(encoded: dict[str, Any] | None) -> Image.Image:
    """A Hugging Face dataset's undecoded image cell (`{"bytes", "path"}`) as a model's processor takes it
    (`model_image`)."""
    if not encoded or (encoded.get("bytes") is None and not encoded.get("path")):
        raise ImageReadError("the row has no image (empty cell)")
    if encoded.get("bytes") is not None:
        try:
            with Image.open(io.BytesIO(encoded["bytes"])) as image:
                image.load()
                return model_image(image)
        except _PIL_ERRORS as error:
            raise ImageReadError(f"cannot decode image bytes: {error}") from None
    return open_image(encoded["path"])


def decode_dataset_image(encoded: dict[str, Any] | None) -> Image.Image:
    """A Hugging Face dataset's undecoded image cell (`{"bytes", "path"}`) as 8-bit RGB by the module's rule."""
    return _as_rgb(open_dataset_image(encoded))


def dataset_image_size(encoded: dict[str, Any] | None) -> tuple[int, int]:
    """(width, height) of a dataset's undecoded image cell, from the image's header only."""
    if not encoded or (encoded.get("bytes") is None and not encoded.get("path")):
        raise ImageReadError("the row has no image (empty cell)")
    if encoded.get("bytes") is None:
        return image_size(encoded["path"])
    try:
        with Image.open(io.BytesIO(encoded["bytes"])) as image:
            return image.size
    except _PIL_ERRORS as error:
        raise ImageReadError(f"cannot decode image bytes: {error}") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header only; ImageReadError naming the file when unreadable."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES and _rasterio() is not None:
        with RasterSource(path) as source:
            return source.width, source.height
    try:
        image, _ = _open_header(path)
        with image:
            return image.size
    except _PIL_ERRORS as error:
        raise ImageReadError(f"{path}: cannot read image: {error}") from None


def image_mode(path: str | Path) -> str:
    """Pillow's mode of the image file at `path` ("RGB", "RGBA", "P", "I;16", ...) from its header only;
    ImageReadError naming the file when Pillow cannot read it."""
    try:
        image, _ = _open_header(Path(path))
        with image:
            return image.mode
    except _PIL_ERRORS as error:
        raise ImageReadError(f"{path}: cannot read image: {error}") from None


def image_files(folder: str | Path) -> list[Path]:
    """The image files (by `IMAGE_SUFFIXES`, any case) under `folder` and its sub-folders, sorted by path."""
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def printable_path(path: str | Path) -> str:
    """`path` as text; bytes of a file name that are not UTF-8 (held as surrogates) shown as `\\udcXX`."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _read_pil(path: Path, check_size: bool = True) -> Image.Image:
    """The image file at `path` decoded by Pillow in its own mode; over the pixel limit refused when `check_size`."""
    try:
        image, limit = _open_header(path)
        with image:
            if check_size:
                check_pixels(path, *image.size, limit)
            image.load()
            return image
    except ImageTooLargeError:
        raise
    except _PIL_ERRORS as error:
        hint = " (multi-band TIFFs need rasterio: pip install rclip-hf[geo])" if (
            path.suffix.lower() in TIFF_SUFFIXES) else ""
        raise ImageReadError(f"{path}: cannot read image: {error}{hint}") from None


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else _as_rgb(model_image(image))


def _as_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _rasterio() -> Any:
    try:
        import rasterio
        import rasterio.errors
        import rasterio.windows
    except ImportError:
        return None
    return rasterio


__all__ = ["COLOUR_DESCRIPTIONS", "EIGHT_BIT_MODES", "IMAGE_SUFFIXES", "TIFF_SUFFIXES", "Georeference",
           "ImageReadError", "ImageTooLargeError", "RasterBands", "RasterSource", "as_model_image", "as_rgb_image",
           "check_pixels", "colour_bands", "dataset_image_size", "decode_dataset_image", "image_files", "image_mode",
           "image_size", "load_image", "model_image", "note_bands", "open_dataset_image", "open_image", "pixel_limit",
           "select_bands", "stretch_limits", "to_rgb"]
