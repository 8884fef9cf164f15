"""Map tiles and thumbnails of the index's scenes.

Georeferenced scenes (GeoTIFF/COG) are web-mercator XYZ tiles made by rio-tiler. The others (PNG, JPEG, dataset
rows, whole images of an image index) are tiles in pixel space: at zoom `z` one screen pixel is `2**-z` scene
pixels, tile (x, y) starts at scene pixel (256 x / 2**z, 256 y / 2**z), as Leaflet's `CRS.Simple` asks, read with the
package's image rule (`rclip_hf.inference.windows`). A scene whose file is gone raises `SceneUnavailable` naming it.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from ..inference.windows import PixelWindow, Scene, open_scene, parse_dataset_row
from .catalog import SceneInfo

TILE_SIZE = 256
#: Scenes kept open for pixel tiles and thumbnails.
OPEN_SCENES = 8


class SceneUnavailable(LookupError):
    """A tile or thumbnail cannot be made: the scene's file is gone or unreadable, or the tile lies outside it."""


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _check_file(info: SceneInfo) -> None:
    row = parse_dataset_row(info.path)
    file = Path(row[0] if row else info.path)
    if not file.exists():
        raise SceneUnavailable(f"scene {info.name}: its file {file} is gone (moved or deleted since it was indexed)")


def mercator_tile(path: str, z: int, x: int, y: int) -> bytes:
    """The web-mercator tile (z, x, y) of a georeferenced raster as PNG, by rio-tiler (first three bands, or one);
    data that is not 8-bit is stretched from each band's 2nd-98th percentile (of the whole scene) to 0-255."""
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

    with Reader(path) as source:
        indexes = (1, 2, 3) if source.dataset.count >= 3 else (1,)
        try:
            image = source.tile(x, y, z, indexes=indexes)
        except TileOutsideBounds:
            raise SceneUnavailable(f"tile {z}/{x}/{y} lies outside the scene") from None
        if image.data.dtype != np.uint8:
            key = (path, Path(path).stat().st_mtime_ns)
            if key not in _STRETCH:
                statistics = source.statistics(indexes=indexes, percentiles=[2, 98])
                _STRETCH[key] = [(band.percentile_2, band.percentile_98) for band in statistics.values()]
            image = image.rescale(in_range=_STRETCH[key])
    return image.render(img_format="PNG")


#: (path, mtime) of a scene that is not 8-bit -> the 2nd and 98th percentiles of its bands.
_STRETCH: dict[tuple[str, int], list[tuple[float, float]]] = {}


class TileReader:
    """Tiles and thumbnails of scenes, with the last few pixel-space scenes kept open (reads are serialised)."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, Scene] = OrderedDict()
        self._lock = threading.Lock()

    def tile(self, info: SceneInfo, z: int, x: int, y: int) -> bytes:
        _check_file(info)
        if info.crs is not None:
            from rasterio.errors import RasterioError
            from rio_tiler.errors import RioTilerError

            try:
                return mercator_tile(info.path, z, x, y)
            except (RasterioError, RioTilerError, OSError) as error:  # a damaged or unreadable file
                raise SceneUnavailable(f"scene {info.name}: cannot read tile {z}/{x}/{y} ({error})") from None
        with self._lock:
            scene = self._scene(info)
            scale = 2.0 ** z  # screen pixels per scene pixel
            span = TILE_SIZE / scale
            left, top = x * span, y * span
            if x < 0 or y < 0 or left >= scene.width or top >= scene.height:
                raise SceneUnavailable(f"tile {z}/{x}/{y} lies outside the scene")
            right, bottom = min(left + span, scene.width), min(top + span, scene.height)
            box = PixelWindow(int(left), int(top), math.ceil(right) - int(left), math.ceil(bottom) - int(top))
            side = max(1, math.ceil(max(box.width, box.height) * min(scale, 1.0)))
            image = scene.read_window(box, max_side=side)
        size = (max(1, round(box.width * scale)), max(1, round(box.height * scale)))
        image = image.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
        tile = Image.new("RGBA", (TILE_SIZE, TILE_SIZE))
        tile.paste(image, (0, 0))
        return _png(tile)

    def thumbnail(self, info: SceneInfo, window: list[int] | None, max_side: int = 128) -> bytes:
        """The window [left, top, width, height] (None: the whole scene) at most `max_side` px, as PNG."""
        _check_file(info)
        with self._lock:
            scene = self._scene(info)
            box = PixelWindow(0, 0, scene.width, scene.height) if window is None else PixelWindow(*window)
            image = scene.read_window(box, max_side=max_side)
        return _png(image)

    def size(self, info: SceneInfo) -> tuple[int, int]:
        """(width, height) of the scene."""
        if info.width is not None:
            return info.width, info.height
        _check_file(info)
        with self._lock:
            scene = self._scene(info)
            return scene.width, scene.height

    def _scene(self, info: SceneInfo) -> Scene:
        if info.id in self._open:
            self._open.move_to_end(info.id)
            return self._open[info.id]
        try:
            scene = open_scene(info.path)
        except (OSError, ValueError) as error:
            raise SceneUnavailable(f"scene {info.name}: cannot open it ({error})") from None
        self._open[info.id] = scene
        while len(self._open) > OPEN_SCENES:
            self._open.popitem(last=False)[1].close()
        return scene

    def close(self) -> None:
        with self._lock:
            while self._open:
                self._open.popitem()[1].close()


__all__ = ["TILE_SIZE", "SceneUnavailable", "TileReader", "mercator_tile"]
