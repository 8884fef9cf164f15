"""Text heat maps over scenes of any size (the paper's Fig. 10 as a tool): overlapping windows scored by queries.

The scene is tiled into square, overlapping windows, read row by row with the window reader of `windows.py` (one
strip of the scene at a time, so memory is bounded by a strip and the batch, not the scene), embedded, and compared
with each text query. A scene indexed with `rclip-hf index --window` can also be mapped from the index's window
embeddings, without reading or embedding it again (`heatmap_from_index`). Window geometry:

- `window=None` (default, as in the paper): a `grid` x `grid` tiling (64 x 64) with `overlap` (1/3) along the
  shorter side: window side `w = round(short_side / (1 + (grid - 1) * (1 - overlap)))`; the longer side gets as
  many windows as the same stride needs;
- `window=W` (or `window_metres=M`, by the scene's ground sample distance): windows of W x W pixels (clipped to
  the shorter side), as `rclip-hf index --window` cuts them (`windows.WindowGeometry`, the same flags);
- stride `s = stride` (or `stride_metres`), else `max(1, round(w * (1 - overlap)))`; along each axis the windows
  start at 0, s, 2s, ... and a last window is aligned with the far edge, so the whole scene is covered.

Each window reaches the model as open_clip's `preprocess(Image.open(file).crop(box))` would take it: a scene that
Pillow reads in an 8-bit mode other than RGB and grey (alpha, palette, 1-bit, CMYK), and any in-memory image, is
cropped in its own mode and the processor resizes, then drops alpha (resizing premultiplied, a palette by nearest
neighbour, as open_clip does), so a window of a transparent PNG equals open_clip's transform of that crop. RGB and
grey scenes give the same pixels either way and are read by the window reader; (Geo)TIFFs follow the raster rule
(bands, nodata, stretch; alpha as a mask) and scenes over Pillow's pixel limit are read window by window as RGB.

Outputs (`HeatmapResult.save`): `scores.npy` (queries, rows, cols) float32 cosine similarities of the windows,
`heatmap.json` (queries, window geometry, file names), per query a PNG overlay of the scene (at most
`overlay_size` px) with the per-pixel mean score of the windows covering each pixel, and, for a georeferenced
input, a single-band float32 Cloud Optimized GeoTIFF of that per-pixel map with the input's CRS and (rescaled)
transform: tiled, DEFLATE-compressed, with overviews, NaN (pixels no window covers) as nodata.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import CLIPModel, ProcessorMixin

from ..embeddings import class_embeddings, encode_images
from ..images import (
    EIGHT_BIT_MODES,
    TIFF_SUFFIXES,
    Georeference,
    ImageReadError,
    as_model_image,
    image_mode,
    open_image,
)
from ..loading import resolve_model
from ..progress import progress_bar
from ..staging import replaced_file
from .index import EmbeddingIndex
from .windows import ImageScene, Scene, WindowGeometry, open_scene, window_starts, window_stride

logger = logging.getLogger(__name__)

#: The paper's tiling: a 64 x 64 grid of windows overlapping by one third.
DEFAULT_GRID = 64
DEFAULT_OVERLAP = 1 / 3
#: Windows smaller than this are allowed but warned about (the model sees them upsampled).
MIN_USEFUL_WINDOW = 32
#: Creation options of the score-map GeoTIFFs (GDAL's COG driver): 256 px tiles, DEFLATE with the floating-point
#: predictor, overviews (averaged) down to one tile; nodata NaN.
COG_OPTIONS = {"blocksize": 256, "compress": "DEFLATE", "predictor": 3, "overviews": "AUTO",
               "overview_resampling": "AVERAGE"}


@dataclass(frozen=True)
class WindowGrid:
    """Square windows of `window` px at every (left, top) of `lefts` x `tops` over a `width` x `height` scene."""

    width: int
    height: int
    window: int
    stride: int
    lefts: tuple[int, ...]
    tops: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the score grid."""
        return len(self.tops), len(self.lefts)

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """(left, top, right, bottom) of every window, row-major."""
        return [(left, top, left + self.window, top + self.window) for top in self.tops for left in self.lefts]


def window_grid(width: int, height: int, grid: int = DEFAULT_GRID, window: int | None = None,
                overlap: float = DEFAULT_OVERLAP, stride: int | None = None) -> WindowGrid:
    """The window tiling of a `width` x `height` scene (see the module docstring); `window` and `stride` in pixels
    (`WindowGeometry.resolve` turns metres into them)."""
    if width < 1 or height < 1:
        raise ValueError(f"scene size must be positive, got {width}x{height}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap} must be in [0, 1)")
    short_side = min(width, height)
    if window is None:
        if grid < 1:
            raise ValueError(f"grid={grid} must be >= 1")
        side = round(short_side / (1 + (grid - 1) * (1 - overlap)))
    else:
        if window < 1:
            raise ValueError(f"window={window} must be >= 1 pixel")
        side = window
    side = max(1, min(side, short_side))
    if side < MIN_USEFUL_WINDOW:
        logger.warning("heat-map windows are %d px (scene %dx%d, grid %s): the model sees them heavily upsampled; "
                       "pass a window size in pixels or a smaller grid", side, width, height, grid)
    stride = window_stride(side, stride, overlap)
    return WindowGrid(width=width, height=height, window=side, stride=stride,
                      lefts=window_starts(width, side, stride), tops=window_starts(height, side, stride))


@dataclass
class HeatmapResult:
    """Window scores (Q, rows, cols), per-pixel maps (Q, h, w) at overview scale, the overview image, geometry."""

    queries: list[str]
    grid: WindowGrid
    scores: np.ndarray
    maps: np.ndarray
    overview: Image.Image
    georeference: Georeference | None = None
    files: dict[str, str] = field(default_factory=dict)

    def save(self, output_dir: str | Path, alpha: float = 0.5, colormap: str = "jet") -> dict[str, str]:
        """Write scores.npy, heatmap.json, one PNG overlay per query (+ a GeoTIFF per query when georeferenced)."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        files = {"scores": str(output_dir / "scores.npy")}
        with replaced_file(files["scores"]) as handle:
            np.save(handle, self.scores)
        for query, score_map, slug in zip(self.queries, self.maps, _slugs(self.queries)):
            png = output_dir / f"{slug}.png"
            with replaced_file(png) as handle:
                overlay(self.overview, score_map, alpha=alpha, colormap=colormap).save(handle, format="PNG")
            files[f"png:{query}"] = str(png)
            if self.georeference is not None:
                tif = output_dir / f"{slug}.tif"
                _write_geotiff(tif, score_map, self.georeference, self.grid.width, self.grid.height)
                files[f"geotiff:{query}"] = str(tif)
        files["metadata"] = str(output_dir / "heatmap.json")
        metadata = {"queries": self.queries, "scores_shape": list(self.scores.shape),
                    "score": "cosine similarity of window and query embeddings",
                    "scene": [self.grid.width, self.grid.height], "window": self.grid.window,
                    "stride": self.grid.stride, "lefts": list(self.grid.lefts), "tops": list(self.grid.tops),
                    "map_size": [self.maps.shape[2], self.maps.shape[1]], "files": files}
        with replaced_file(files["metadata"]) as handle:
            handle.write(json.dumps(metadata, indent=2).encode())
        self.files = files
        return files


def heatmap(
    image: str | Path | Image.Image,
    queries: str | Sequence[str],
    *,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    grid: int = DEFAULT_GRID,
    window: int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    templates: Sequence[str] = ("{}",),
    batch_size: int = 64,
    overlay_size: int = 1024,
    output_dir: str | Path | None = None,
    bands: Sequence[int] | None = None,
    stride: int | None = None,
    window_metres: float | None = None,
    stride_metres: float | None = None,
) -> HeatmapResult:
    """Score every window of `image` against each query; `scores[q, r, c]` is the cosine similarity of window
    (row r, column c) and query q (its templates' mean embedding). With `output_dir`, the files are written too;
    `bands` (1-based, one or three) picks the bands of a (Geo)TIFF scene, as `load_image` does. The windows are
    those of `rclip-hf index --window` in the same terms (`WindowGeometry`: `window`/`stride` in pixels or
    `window_metres`/`stride_metres`); without a size, the `grid`; without a stride, `overlap` sets it."""
    queries = _query_list(queries)
    sizes = WindowGeometry(window, stride, window_metres, stride_metres)
    model, processor = resolve_model(model, processor)
    text_embeds = class_embeddings(model, processor, queries, tuple(templates)).float()  # (Q, D)
    with _open(image, bands) as source:
        side, step = sizes.resolve(source, overlap) if sizes.given else (None, None)
        geometry = window_grid(source.width, source.height, grid=grid, window=side, overlap=overlap, stride=step)
        scores = np.empty((len(geometry.boxes()), len(queries)), dtype=np.float32)  # (windows, Q), row-major
        progress = progress_bar(total=len(scores), desc="heat map", unit="window", disable=len(scores) <= batch_size)
        done = 0
        for crops in _batches(source, geometry, batch_size, _own_mode_image(image)):
            embeds = encode_images(model, processor, crops, batch_size=len(crops), show_progress=False)  # (n, D)
            scores[done : done + len(crops)] = (embeds @ text_embeds.T).numpy()
            done += len(crops)
            progress.update(len(crops))
        progress.close()
        grid_scores = scores.T.reshape(len(queries), *geometry.shape)  # (Q, rows, cols)
        return _result(source, queries, geometry, grid_scores, overlay_size, output_dir)


def _query_list(queries: str | Sequence[str]) -> list[str]:
    """`queries` as a list of non-empty strings; raises naming the bad value."""
    queries = [queries] if isinstance(queries, str) else list(queries)
    if not queries or not all(isinstance(query, str) and query.strip() for query in queries):
        raise ValueError(f"heatmap: queries must be non-empty strings, got {queries!r}")
    return queries


def _result(source: Scene, queries: list[str], geometry: WindowGrid, scores: np.ndarray,
            overlay_size: int, output_dir: str | Path | None) -> HeatmapResult:
    """The heat map of `scores` (Q, rows, cols) over an overview of the open `source`; written to `output_dir` when
    given."""
    overview = source.overview(overlay_size)
    result = HeatmapResult(queries=queries, grid=geometry, scores=scores,
                           maps=pixel_maps(scores, geometry, overview.size), overview=overview,
                           georeference=_georeference(source))
    if output_dir is not None:
        result.save(output_dir)
    return result


def _open(image: str | Path | Image.Image, bands: Sequence[int] | None = None) -> Scene:
    """A file through the window reader; an in-memory image as an `ImageScene` (crops of the decoded image)."""
    return ImageScene(image) if isinstance(image, Image.Image) else Scene(image, bands)


def _own_mode_image(image: str | Path | Image.Image) -> Image.Image | None:
    """The image whose crops are the windows when they keep a mode of their own (see the module docstring): an
    in-memory image, or a file Pillow decodes whole in an 8-bit mode other than RGB and grey; else None."""
    if isinstance(image, Image.Image):
        return as_model_image(image)
    if Path(image).suffix.lower() in TIFF_SUFFIXES:
        return None
    try:
        return open_image(image) if image_mode(image) in EIGHT_BIT_MODES - {"RGB", "L"} else None
    except ImageReadError:  # over the pixel limit (read window by window as RGB), or a format only GDAL reads
        return None


def _batches(source: Scene, geometry: WindowGrid, batch_size: int,
             image: Image.Image | None = None) -> Iterator[list[Image.Image]]:
    """The window images in row-major order, `batch_size` at a time, read one row of windows at a time (crops of
    `image` in its own mode when given)."""
    crops: list[Image.Image] = []
    for top in geometry.tops:
        if image is not None:
            crops.extend(image.crop((left, top, left + geometry.window, top + geometry.window))
                         for left in geometry.lefts)
        else:
            row, _ = source.read_row(top, geometry.lefts, geometry.window, max_nodata=1.0)  # keep every window
            crops.extend(item.image for item in row)
        while len(crops) >= batch_size:
            yield crops[:batch_size]
            crops = crops[batch_size:]
    if crops:
        yield crops


def _georeference(source: Scene) -> Georeference | None:
    return None if source.crs is None else Georeference(crs=source.crs, transform=source.transform)


def heatmap_from_index(
    index: str | Path | EmbeddingIndex,
    scene: str | Path,
    queries: str | Sequence[str],
    *,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    templates: Sequence[str] = ("{}",),
    overlay_size: int = 1024,
    output_dir: str | Path | None = None,
) -> HeatmapResult:
    """The heat map of a scene indexed with `rclip-hf index --window`, from the embeddings of its windows in the
    index (nothing is embedded again; only an overview of the scene is read). Windows skipped as nodata score NaN."""
    queries = _query_list(queries)
    index = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex.open(index)
    model, processor = resolve_model(model, processor)
    index.check_model(model)
    positions = _scene_positions(index, scene)
    ids = index.ids()
    lefts, tops = index.column("left"), index.column("top")
    windows = [(lefts[position], tops[position]) for position in positions]
    embeddings = index.embeddings_of([ids[position] for position in positions])  # (n, D)
    text_embeds = class_embeddings(model, processor, queries, tuple(templates)).float()  # (Q, D)
    window_scores = (embeddings @ text_embeds.T).numpy()  # (n, Q)
    widths, heights = index.column("width"), index.column("height")
    with open_scene(scene, index.bands) as source:  # the bands indexed
        side = max(max(widths[position], heights[position]) for position in positions)
        columns, rows = sorted({left for left, _ in windows}), sorted({top for _, top in windows})
        steps = [b - a for starts in (columns, rows) for a, b in itertools.pairwise(starts)]
        stride = min([*steps, side])
        geometry = WindowGrid(width=source.width, height=source.height, window=side, stride=stride,
                              lefts=tuple(columns), tops=tuple(rows))
        scores = np.full((len(queries), len(rows), len(columns)), np.nan, dtype=np.float32)  # (Q, rows, cols)
        row_of, column_of = {top: row for row, top in enumerate(rows)}, {left: col for col, left in enumerate(columns)}
        for (left, top), score in zip(windows, window_scores):
            scores[:, row_of[top], column_of[left]] = score
        return _result(source, queries, geometry, scores, overlay_size, output_dir)


def _scene_positions(index: EmbeddingIndex, scene: str | Path) -> list[int]:
    """Index positions of the windows of `scene` (matched by path as indexed, or as the same file)."""
    paths = index.column("path")
    target = Path(scene).resolve()
    matches = {path for path in set(paths) if path == str(scene) or Path(path).resolve() == target}
    positions = [position for position, path in enumerate(paths) if path in matches]
    if not positions or index.column("left")[positions[0]] is None:
        known = sorted({path for path, left in zip(paths, index.column("left")) if left is not None})
        raise ValueError(f"scene {scene} has no windows in the index at {index.directory} (indexed scenes: "
                         f"{', '.join(known[:5]) or 'none; build it with rclip-hf index --window'}"
                         f"{', ...' if len(known) > 5 else ''})")
    return positions


def pixel_maps(scores: np.ndarray, geometry: WindowGrid, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel mean of the window scores covering each pixel, (Q, rows, cols) -> (Q, h, w) at `size` = (w, h);
    windows scored NaN (not indexed) are left out, and pixels no window covers are NaN."""
    out_width, out_height = size
    scale_x, scale_y = out_width / geometry.width, out_height / geometry.height
    total = np.zeros((scores.shape[0], out_height, out_width), dtype=np.float64)
    covered = np.zeros((out_height, out_width), dtype=np.int64)
    for row, top in enumerate(geometry.tops):
        y0, y1 = _span(top, geometry.window, scale_y, out_height)
        for col, left in enumerate(geometry.lefts):
            x0, x1 = _span(left, geometry.window, scale_x, out_width)
            if np.isnan(scores[:, row, col]).any():
                continue
            total[:, y0:y1, x0:x1] += scores[:, row, col, None, None]
            covered[y0:y1, x0:x1] += 1
    maps = total / np.maximum(covered, 1)
    maps[:, covered == 0] = np.nan
    return maps.astype(np.float32)


def _span(start: int, length: int, scale: float, limit: int) -> tuple[int, int]:
    low = min(limit - 1, int(np.floor(start * scale)))
    return low, max(low + 1, min(limit, int(np.ceil((start + length) * scale))))


def overlay(image: Image.Image, score_map: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> Image.Image:
    """`image` blended with `score_map` (h, w) min-max normalised and coloured by a matplotlib colormap."""
    try:
        from matplotlib import colormaps
    except ImportError:
        raise ImportError("heat-map overlays need matplotlib: pip install matplotlib") from None
    low, high = float(np.nanmin(score_map)), float(np.nanmax(score_map))
    normalised = (score_map - low) / (high - low) if high > low else np.zeros_like(score_map)
    normalised = np.nan_to_num(normalised, nan=0.0)
    colours = (colormaps[colormap](normalised)[..., :3] * 255).astype(np.uint8)  # (h, w, 3)
    heat = Image.fromarray(colours, mode="RGB").resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), heat, alpha)


def _write_geotiff(path: Path, score_map: np.ndarray, georeference: Georeference, width: int, height: int) -> None:
    """`score_map` over a `width` x `height` scene as a Cloud Optimized GeoTIFF (GDAL's COG driver: `COG_OPTIONS`),
    NaN (pixels no window covers) as nodata."""
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine

    map_height, map_width = score_map.shape
    transform = georeference.transform @ Affine.scale(width / map_width, height / map_height)
    profile = {"driver": "GTiff", "width": map_width, "height": map_height, "count": 1, "dtype": "float32",
               "crs": georeference.crs, "transform": transform, "nodata": float("nan")}
    with MemoryFile() as memory, memory.open(**profile) as staging, MemoryFile() as cog:
        staging.write(score_map.astype(np.float32), 1)
        staging.set_band_description(1, "cosine similarity (mean of covering windows)")
        rasterio.shutil.copy(staging, cog.name, driver="COG", **COG_OPTIONS)
        with replaced_file(path) as handle:
            handle.write(cog.read())


def _slugs(queries: Sequence[str]) -> list[str]:
    slugs = []
    for index, query in enumerate(queries):
        slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:48] or "query"
        slugs.append(f"{index:02d}-{slug}")
    return slugs


__all__ = ["DEFAULT_GRID", "DEFAULT_OVERLAP", "HeatmapResult", "WindowGrid", "heatmap", "heatmap_from_index", "overlay",
           "pixel_maps", "window_grid"]
