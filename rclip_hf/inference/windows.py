"""Windows of large scenes (GeoTIFF/COG, PNG, JPEG mosaics), read strip by strip as 8-bit RGB images.

A scene is opened with rasterio (GDAL), which decodes GeoTIFF/COG by tiles and PNG by scanlines, so the whole scene
is never decoded at once. (Pillow cannot: its PNG and JPEG decoders fill one image of the full size.) GDAL's PNG
pixels are Pillow's; its JPEG pixels differ by a few levels, so a JPEG within Pillow's pixel limit is decoded whole
by Pillow (as the training images are), and only larger ones by GDAL's scanline decoder. The
windows of a scene are read one row of windows at a time: one read of a `scene width x window height` strip, cut into
windows, so memory is bounded by one strip plus the batch of windows, whatever the scene's height.

A row of a Hugging Face dataset folder is a scene too (`DatasetRowScene`, named by `dataset_row_scene`): its size
comes from the image's header, and its image is decoded whole by the image rule at the first read, one row at a time;
it has no CRS and no nodata.

Window geometry, per scene (`WindowGeometry`, the one place it is checked and resolved): square windows of `window`
px (or `window_metres` over the scene's ground sample distance in metres, `Scene.gsd`) at left edges 0, s, 2s, ...
along each axis (`s` = stride), plus one aligned with the far edge, so the scene is
covered (the heat maps' tiling). Along an axis shorter than the window there is one window, the whole axis; such a
window is padded with zeros on the right and bottom to a square, so the model sees it at the scale of the others.

Pixels become RGB through the package's one raster reader (`images.RasterBands`): the selected bands (`bands`,
1-based, one or three, for a (Geo)TIFF that has them; default: by colour interpretation, else band descriptions,
else the first three, else the first), non-8-bit data stretched with percentiles of the whole scene, nodata black
(8-bit data is used as it is, alpha dropped). Palette images are expanded through their colour table. A window whose
pixels are mostly nodata (the image rule's one nodata rule, for every data type: GDAL's dataset mask, from the
nodata value, an alpha band or a mask band) is skipped and counted.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..images import (
    ImageReadError,
    RasterBands,
    as_rgb_image,
    dataset_image_size,
    decode_dataset_image,
    load_image,
    note_bands,
    to_rgb,
)
from .dataset_folder import load_dataset_folder
from .remote import RemoteSceneError, download, gdal_options, head, is_cog, is_remote, not_cog_message

#: A window is skipped when more than this share of its pixels is nodata (by default).
MAX_NODATA_FRACTION = 0.5
#: GDAL's block cache while scenes are read (MiB): enough for a strip of PNG scanlines, small next to the batch.
GDAL_CACHE_MB = 64
#: A scene that is one row of a Hugging Face dataset folder: `<folder>?split=<split>&image=<column>&row=<n>`.
_DATASET_ROW = re.compile(r"^(?P<source>.+)\?split=(?P<split>[^&?]+)&image=(?P<column>[^&?]+)&row=(?P<row>\d+)$")


@dataclass(frozen=True)
class PixelWindow:
    """A window of a scene in pixels: (`left`, `top`) and its size, clipped to the scene."""

    left: int
    top: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom)."""
        return self.left, self.top, self.left + self.width, self.top + self.height


@dataclass(frozen=True)
class SceneWindow:
    """A window read from a scene: where it is, and its RGB image (`window` x `window` px, padded if needed)."""

    scene: str
    window: PixelWindow
    image: Image.Image


@dataclass
class WindowCounts:
    """What reading the windows of scenes did: windows read, windows skipped as mostly nodata."""

    read: int = 0
    nodata: int = 0


def window_starts(length: int, window: int, stride: int) -> tuple[int, ...]:
    """Left (or top) edges of windows of `window` px every `stride` px along `length` px, the last at the far edge."""
    if window < 1 or stride < 1:
        raise ValueError(f"window={window} and stride={stride} must be >= 1 pixel")
    if length <= window:
        return (0,)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return tuple(starts)


@dataclass(frozen=True)
class WindowGeometry:
    """The side and stride of square windows, in pixels or in metres (by each scene's ground sample distance): the
    one place where window options are checked and resolved, for scene indexes and heat maps alike.

    Pixels and metres are not mixed: `window` goes with `stride`, `window_metres` with `stride_metres`; a missing
    stride is the window's side less the caller's overlap."""

    window: int | None = None
    stride: int | None = None
    window_metres: float | None = None
    stride_metres: float | None = None

    def __post_init__(self) -> None:
        for name in ("window", "stride", "window_metres", "stride_metres"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} {value}: must be > 0")
        given = [name for name in ("window", "window_metres", "stride", "stride_metres") if getattr(self, name)]
        metres, pixels = [name for name in given if name.endswith("metres")], [name for name in given
                                                                                if not name.endswith("metres")]
        if metres and pixels or len([name for name in given if name.startswith("window")]) > 1:
            first, second = (pixels[0], metres[0]) if metres and pixels else ("window", "window_metres")
            raise ValueError(f"--{first.replace('_', '-')} {getattr(self, first):g} and --{second.replace('_', '-')} "
                             f"{getattr(self, second):g}: give sizes all in pixels (--window, --stride) or all in "
                             "metres (--window-metres, --stride-metres)")
        if not self.given and given:
            flag = given[0]
            raise ValueError(f"--{flag.replace('_', '-')} {getattr(self, flag):g} needs a window size: give "
                             f"{'--window-metres M' if flag.endswith('metres') else '--window PX'} too")

    @property
    def given(self) -> bool:
        """Whether a window size is given (else the caller's default applies, e.g. the heat map's grid)."""
        return self.window is not None or self.window_metres is not None

    def resolve(self, scene: Scene, overlap: float = 0.0) -> tuple[int, int]:
        """(side, stride) in pixels on `scene`; without a stride, `round(side * (1 - overlap))`, at least 1."""
        if not self.given:
            raise ValueError("give a window size: --window PX or --window-metres M")
        side = self.window or _metre_pixels(scene, self.window_metres, "--window-metres")
        stride = (self.stride if self.window_metres is None
                  else _metre_pixels(scene, self.stride_metres, "--stride-metres") if self.stride_metres else None)
        return side, window_stride(side, stride, overlap)


def window_stride(side: int, stride: int | None = None, overlap: float = 0.0) -> int:
    """The stride of windows of `side` px: `stride` when given, else `round(side * (1 - overlap))`, at least 1."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap} must be in [0, 1)")
    return stride or max(1, round(side * (1 - overlap)))


def _metre_pixels(scene: Scene, metres: float, flag: str) -> int:
    """`metres` on the ground as a whole number of pixels of `scene` (at least 1)."""
    if scene.gsd is None:
        raise ValueError(f"{flag} needs a georeferenced scene; {scene.path} has no CRS or transform (use --window PX)")
    return max(1, round(metres / scene.gsd))


def ground_sample_distance(transform: Any, crs: Any, width: int, height: int, path: str = "") -> float:
    """Metres per pixel of a raster (the mean of the lengths of a pixel's two sides); ValueError naming `path` for a
    CRS whose unit is not a length or degrees."""
    from rasterio.errors import CRSError

    x_side, y_side = (transform.a, transform.d), (transform.b, transform.e)  # map vectors of a pixel's sides
    if crs.is_geographic:
        _, latitude = transform * (width / 2, height / 2)
        east, north = _metres_per_degree(latitude)
        return (math.hypot(x_side[0] * east, x_side[1] * north) + math.hypot(y_side[0] * east, y_side[1] * north)) / 2
    try:
        _, metres_per_unit = crs.linear_units_factor
    except CRSError as error:
        raise ValueError(f"--window-metres: scene {path}: its CRS has no length unit ({error}); use --window PX") from None
    return (math.hypot(*x_side) + math.hypot(*y_side)) / 2 * metres_per_unit


def _metres_per_degree(latitude: float) -> tuple[float, float]:
    """(east, north) metres per degree of longitude and latitude at `latitude` on the WGS 84 ellipsoid."""
    a, e2 = 6378137.0, 0.00669437999014
    phi = math.radians(latitude)
    w = math.sqrt(1 - e2 * math.sin(phi) ** 2)
    return math.radians(a * math.cos(phi) / w), math.radians(a * (1 - e2) / w**3)


def parse_bands(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """`"3,2,1"` (or a sequence of ints) -> (3, 2, 1): 1-based band numbers, one or three of them."""
    if text is None or text == "":
        return None
    try:
        bands = tuple(int(part) for part in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise ValueError(f"--bands {text!r}: give 1-based band numbers separated by commas, e.g. 3,2,1") from None
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise ValueError(f"--bands {text!r}: give one band (grey) or three (red,green,blue), numbered from 1")
    return bands


class Scene:
    """A raster opened for window reads: `width`, `height`, `crs` and `transform` (None when not georeferenced).

    `path` may be an HTTP(S) URL of a COG (`remote.py`), read window by window with range requests; another remote
    raster is read only with `allow_full_download` (downloaded to a temporary file)."""

    def __init__(self, path: str | Path, bands: Sequence[int] | None = None, allow_full_download: bool = False):
        try:
            import rasterio
            import rasterio.errors
        except ImportError:
            raise ImportError("reading windows of scenes needs rasterio: pip install rasterio (or rclip-hf[geo])") from None

        self.path = str(path)
        self.remote, self._download = is_remote(self.path), None
        if self.remote:
            head(self.path)  # a 404 or a timeout is one line here, not GDAL's message
        elif not Path(path).is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        self._gdal_options = {"GDAL_CACHEMAX": GDAL_CACHE_MB, **(gdal_options(self.path) if self.remote else {})}
        with self._gdal():
            try:
                with warnings.catch_warnings():  # PNG/JPEG have no georeference: expected, recorded as crs None
                    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                    self._dataset = rasterio.open(path)
            except rasterio.errors.RasterioError as error:
                raise ImageReadError(f"cannot read scene {path}: {error}") from None
            if self.remote and not is_cog(self._dataset):
                self._open_downloaded(allow_full_download)
            dataset = self._dataset
            self.width, self.height = dataset.width, dataset.height
            self._whole = _decoded_whole(self._download or self.path, self.width, self.height)
            try:
                self._raster = RasterBands(dataset, self.path, bands)  # the image rule's bands, nodata and stretch
                self.bands = self._raster.bands
                self._palette = _palette(dataset, self.bands)
            except BaseException:
                self.close()
                raise
        self._decoded: np.ndarray | None = None  # (3, H, W) of a scene decoded whole, at its first read
        georeferenced = dataset.crs is not None and not dataset.transform.is_identity
        self.crs = dataset.crs if georeferenced else None
        self.transform = dataset.transform if georeferenced else None
        #: Rows of pixels that the file stores (and decompresses) together: a tile's height, a strip's, or 1.
        self.block_height = self.height if self._whole else dataset.block_shapes[self.bands[0] - 1][0]

    def _open_downloaded(self, allow_full_download: bool) -> None:
        """Replace the remote dataset (not a COG) by a downloaded copy, or refuse without `allow_full_download`."""
        import rasterio

        self._dataset.close()
        if not allow_full_download:
            raise RemoteSceneError(not_cog_message(self.path))
        self._download = download(self.path)
        self._dataset = rasterio.open(self._download)

    @property
    def gsd(self) -> float | None:
        """Ground sample distance in metres per pixel (the mean of the pixel's two sides), None when not
        georeferenced: rotated transforms are measured along the pixel's sides, a CRS in feet (or any linear unit)
        is converted by its unit, a geographic CRS by the WGS 84 ellipsoid's metres per degree at the scene's
        centre."""
        if self.transform is None:
            return None
        return ground_sample_distance(self.transform, self.crs, self.width, self.height, self.path)

    def grid(self, window: int, stride: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(lefts, tops) of the windows of this scene."""
        return window_starts(self.width, window, stride), window_starts(self.height, window, stride)

    def read_row(self, top: int, lefts: Sequence[int], window: int,
                 max_nodata: float = MAX_NODATA_FRACTION) -> tuple[list[SceneWindow], int]:
        """The windows at `lefts` of the row of windows at `top` (one strip read), and how many were mostly nodata."""
        from rasterio.windows import Window

        height = min(window, self.height - top)
        if self.remote:  # over HTTP, each window is read on its own: only its tiles are fetched
            reads = (Window(left, top, min(window, self.width - left), height) for left in lefts)
            parts = ((int(area.col_off), self._read(area), self._valid(area)) for area in reads)
        else:  # one read of the strip (bands, height, width), cut into windows
            strip_window = Window(0, top, self.width, height)
            strip, strip_valid = self._read(strip_window), self._valid(strip_window)  # valid: None without nodata
            parts = ((left, strip[:, :, left : left + window],
                      None if strip_valid is None else strip_valid[:, left : left + window]) for left in lefts)
        windows, skipped = [], 0
        for left, pixels, valid in parts:
            width = pixels.shape[2]
            if valid is not None and 1.0 - valid.mean() > max_nodata:
                skipped += 1
                continue
            image = self._rgb(pixels, valid)
            windows.append(SceneWindow(self.path, PixelWindow(left, top, width, height), _pad(image, window)))
        return windows, skipped

    def read_window(self, window: PixelWindow, max_side: int | None = None) -> Image.Image:
        """One window as RGB (no padding), decimated to at most `max_side` px on its longer side when given."""
        from rasterio.windows import Window

        scale = 1.0 if max_side is None else min(1.0, max_side / max(window.width, window.height))
        shape = (len(self.bands), max(1, round(window.height * scale)), max(1, round(window.width * scale)))
        area = Window(window.left, window.top, window.width, window.height)
        return self._rgb(self._read(area, shape), self._valid(area, shape[1:]))

    def overview(self, max_side: int) -> Image.Image:
        """The whole scene at most `max_side` px on its longer side (a decimated read)."""
        scale = min(1.0, max_side / max(self.width, self.height))
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        return self._rgb(self._read(None, (len(self.bands), size[1], size[0])), self._valid(None, (size[1], size[0])))

    def _read(self, window: Any, out_shape: tuple[int, int, int] | None = None) -> np.ndarray:
        if self._whole:
            if self._decoded is None:
                self._decoded = np.asarray(load_image(self._download or self.path)).transpose(2, 0, 1)
            return _crop(self._decoded[[band - 1 for band in self.bands]], window, out_shape)
        with self._gdal():
            return self._raster.read(window, out_shape)

    def _valid(self, window: Any, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """Bool (h, w): the pixels that are not nodata (the image rule's `RasterBands.valid`), None without nodata."""
        if self._whole:
            return None
        with self._gdal():
            return self._raster.valid(window, shape)

    def _gdal(self) -> Any:
        """GDAL's settings for this scene (block cache; a remote scene's HTTP options), as a `rasterio.Env` entered
        around each call into GDAL rather than for the scene's life, so that scenes open together close in any
        order."""
        import rasterio

        return rasterio.Env(**self._gdal_options)

    def _rgb(self, bands: np.ndarray, valid: np.ndarray | None) -> Image.Image:
        """Values read by `_read` -> RGB by the image rule (palette indices through the colour table first)."""
        if self._palette is not None:
            bands = self._palette[bands[0]].transpose(2, 0, 1)
        return self._raster.to_rgb(bands, valid)

    def close(self) -> None:
        """Release the file (and a downloaded copy)."""
        with self._gdal():
            self._dataset.close()
        if self._download is not None:
            Path(self._download).unlink(missing_ok=True)

    def __enter__(self) -> Scene:  # noqa: PYI034
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ImageScene(Scene):
    """A decoded image (8-bit RGB by the package's image rule) as a scene: no CRS, no bands to choose, no mask."""

    def __init__(self, image: Image.Image):
        self._init_rgb(getattr(image, "filename", "") or "<in-memory image>", *image.size)
        self._decoded = np.asarray(as_rgb_image(image)).transpose(2, 0, 1)  # (3, H, W)

    def _init_rgb(self, path: str, width: int, height: int) -> None:
        self.path, self.width, self.height = path, width, height
        self.remote, self._download = False, None
        self.bands, self._palette, self._whole = [1, 2, 3], None, True
        self.crs = self.transform = None
        self.block_height = height  # decoded whole: all its rows of windows go to one process
        self._decoded: np.ndarray | None = None

    def _decode(self) -> np.ndarray:
        """(3, H, W) uint8 pixels, for subclasses that decode at the first read."""
        raise NotImplementedError

    def _read(self, window: Any, out_shape: tuple[int, int, int] | None = None) -> np.ndarray:
        if self._decoded is None:
            self._decoded = self._decode()
        return _crop(self._decoded, window, out_shape)

    def _rgb(self, bands: np.ndarray, valid: np.ndarray | None) -> Image.Image:
        return to_rgb(bands)  # 8-bit RGB already

    def close(self) -> None:
        """Nothing to release: the pixels are the caller's image."""


class DatasetRowScene(ImageScene):
    """The image of one row of a Hugging Face dataset folder as a scene (`dataset_row_scene` names it): its size
    from the image's header, its pixels decoded by the package's image rule at the first read; no CRS."""

    def __init__(self, path: str, bands: Sequence[int] | None = None):
        parsed = parse_dataset_row(path)
        if parsed is None:
            raise ValueError(f"{path} does not name a dataset row (<folder>?split=S&image=COLUMN&row=N)")
        source, split, column, row = parsed
        if bands:
            note_bands(path, bands, "a dataset row is read as RGB by the image rule")
        rows = dataset_rows(source, split, column)
        if row >= len(rows):
            raise ValueError(f"{path}: the dataset has {len(rows)} rows in split {split!r}")
        self._encoded = rows[row][column]
        self._init_rgb(path, *dataset_image_size(self._encoded))

    def _decode(self) -> np.ndarray:
        return np.asarray(decode_dataset_image(self._encoded)).transpose(2, 0, 1)  # (3, H, W)

    def close(self) -> None:
        """Drop the decoded pixels."""
        self._decoded = None


def dataset_row_scene(source: str | Path, split: str, column: str, row: int) -> str:
    """The scene name of row `row` of the dataset folder `source` (its `split`, images in `column`)."""
    return f"{source}?split={split}&image={column}&row={row}"


def parse_dataset_row(scene: str) -> tuple[str, str, str, int] | None:
    """(folder, split, image column, row) of a dataset-row scene name; None for a file."""
    match = _DATASET_ROW.match(scene)
    return None if match is None else (match["source"], match["split"], match["column"], int(match["row"]))


def dataset_rows(source: str, split: str, column: str, check: bool = False) -> Any:
    """The `split` of the dataset folder `source`, only its image `column`, undecoded (`{"bytes", "path"}` cells):
    rows are decoded one at a time. Loaded once per process; `check`: loaded again when the folder's files changed."""
    key = (source, split, column)
    if key in _LOADED and not check:
        return _LOADED[key][1]
    stamp = tuple((str(file), file.stat().st_size, file.stat().st_mtime_ns)
                  for file in sorted(Path(source).rglob("*")) if file.is_file())
    if key not in _LOADED or _LOADED[key][0] != stamp:
        _LOADED.pop(key, None)
        while len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = stamp, _load_dataset_rows(source, split, column)
    return _LOADED[key][1]


#: Datasets loaded by `dataset_rows`: (folder, split, column) -> (the folder's file stamps, the dataset).
_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def _load_dataset_rows(source: str, split: str, column: str) -> Any:
    import datasets

    dataset = load_dataset_folder(source, split)
    if column not in dataset.column_names:
        raise ValueError(f"dataset {source} has no column {column!r} (columns: {', '.join(dataset.column_names)}): "
                         "give --image-column")
    return dataset.select_columns([column]).cast_column(column, datasets.Image(decode=False))


def open_scene(path: str | Path, bands: Sequence[int] | None = None, allow_full_download: bool = False) -> Scene:
    """A scene opened for window reads: a dataset row (`dataset_row_scene`), a raster file or a remote COG."""
    if parse_dataset_row(str(path)):
        return DatasetRowScene(str(path), bands)
    return Scene(path, bands, allow_full_download)


def _palette(dataset: Any, bands: Sequence[int]) -> np.ndarray | None:
    """A (256, 3) uint8 lookup table when the one selected band is a palette band, else None."""
    if len(bands) != 1 or getattr(dataset.colorinterp[bands[0] - 1], "name", "") != "palette":
        return None
    table = np.zeros((256, 3), dtype=np.uint8)
    for index, colour in dataset.colormap(bands[0]).items():
        if 0 <= index < 256:
            table[index] = colour[:3]
    return table


def _decoded_whole(path: str, width: int, height: int) -> bool:
    """Whether the scene is a JPEG within Pillow's pixel limit, decoded whole by the package's image rule.

    GDAL's and Pillow's JPEG decoders differ by a few levels (chroma upsampling), and training images are decoded by
    Pillow: a JPEG is decoded once, whole, by Pillow (at its first read, so that a process with none of its windows
    does not decode it), so its windows are exactly the crops of `load_image`. Larger JPEGs (which Pillow refuses)
    are read by GDAL's scanline decoder, with bounded memory."""
    return Path(path).suffix.lower() in (".jpg", ".jpeg") and width * height <= (Image.MAX_IMAGE_PIXELS or 0)


def _crop(pixels: np.ndarray, window: Any, out_shape: tuple[int, int, int] | None) -> np.ndarray:
    """(bands, h, w) of decoded `pixels` (bands, H, W) in a rasterio `window` (None: all), resized to `out_shape`."""
    if window is not None:
        top, left = int(window.row_off), int(window.col_off)
        pixels = pixels[:, top : top + int(window.height), left : left + int(window.width)]
    if out_shape is None or out_shape[1:] == pixels.shape[1:]:
        return pixels
    size = (out_shape[2], out_shape[1])
    return np.stack([np.asarray(Image.fromarray(band).resize(size, Image.Resampling.BILINEAR)) for band in pixels])


def _pad(image: Image.Image, window: int) -> Image.Image:
    if image.size == (window, window):
        return image
    padded = Image.new("RGB", (window, window))
    padded.paste(image, (0, 0))
    return padded


def scene_windows(path: str | Path, window: int | None, stride: int | None = None, *,
                  window_metres: float | None = None, stride_metres: float | None = None,
                  bands: Sequence[int] | None = None, max_nodata: float = MAX_NODATA_FRACTION,
                  counts: WindowCounts | None = None) -> Iterator[SceneWindow]:
    """Every window of the scene at `path`, row by row (see the module docstring); `counts` is updated as it goes."""
    geometry = WindowGeometry(window, stride, window_metres, stride_metres)
    with open_scene(path, bands) as scene:
        side, step = geometry.resolve(scene)
        lefts, tops = scene.grid(side, step)
        for top in tops:
            windows, skipped = scene.read_row(top, lefts, side, max_nodata)
            if counts is not None:
                counts.read += len(windows)
                counts.nodata += skipped
            yield from windows


__all__ = ["GDAL_CACHE_MB", "MAX_NODATA_FRACTION", "DatasetRowScene", "ImageScene", "PixelWindow", "Scene",
           "SceneWindow", "WindowCounts", "WindowGeometry", "dataset_row_scene", "dataset_rows",
           "ground_sample_distance", "open_scene", "parse_bands", "parse_dataset_row", "scene_windows",
           "window_starts", "window_stride"]
