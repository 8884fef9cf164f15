"""Text heat maps over scenes of any size (the paper's Fig. 10 as a tool): overlapping windows scored by queries.

The scene is tiled into square, overlapping windows; each window is read on its own (GeoTIFF/TIFF window by
window through rasterio, so memory is bounded by the batch, not the scene), embedded, and compared with each text
query. Window geometry:

- `window=None` (default, as in the paper): a `grid` x `grid` tiling (64 x 64) with `overlap` (1/3) along the
  shorter side: window side `w = round(short_side / (1 + (grid - 1) * (1 - overlap)))`; the longer side gets as
  many windows as the same stride needs;
- `window=W`: windows of W x W pixels (clipped to the shorter side);
- stride `s = max(1, round(w * (1 - overlap)))`; along each axis the windows start at 0, s, 2s, ... and a last
  window is aligned with the far edge, so the whole scene is covered.

Outputs (`HeatmapResult.save`): `scores.npy` (queries, rows, cols) float32 cosine similarities of the windows,
`heatmap.json` (queries, window geometry, file names), per query a PNG overlay of the scene (at most
`overlay_size` px) with the per-pixel mean score of the windows covering each pixel, and, for a georeferenced
input, a single-band float32 GeoTIFF of that per-pixel map with the input's CRS and (rescaled) transform.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm
from transformers import CLIPModel, ProcessorMixin

from ..evaluation.encode import encode_images
from ..images import Georeference, RasterSource
from ..loading import resolve_model
from .classify import class_embeddings

logger = logging.getLogger(__name__)

#: The paper's tiling: a 64 x 64 grid of windows overlapping by one third.
DEFAULT_GRID = 64
DEFAULT_OVERLAP = 1 / 3
#: Windows smaller than this are allowed but warned about (the model sees them upsampled).
MIN_USEFUL_WINDOW = 32


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
                overlap: float = DEFAULT_OVERLAP) -> WindowGrid:
    """The window tiling of a `width` x `height` scene (see the module docstring)."""
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
    stride = max(1, round(side * (1 - overlap)))
    return WindowGrid(width=width, height=height, window=side, stride=stride,
                      lefts=_starts(width, side, stride), tops=_starts(height, side, stride))


def _starts(length: int, window: int, stride: int) -> tuple[int, ...]:
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return tuple(starts)


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
        np.save(files["scores"], self.scores)
        for query, score_map, slug in zip(self.queries, self.maps, _slugs(self.queries)):
            png = output_dir / f"{slug}.png"
            overlay(self.overview, score_map, alpha=alpha, colormap=colormap).save(png)
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
        Path(files["metadata"]).write_text(json.dumps(metadata, indent=2))
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
) -> HeatmapResult:
    """Score every window of `image` against each query; `scores[q, r, c]` is the cosine similarity of window
    (row r, column c) and query q (its templates' mean embedding). With `output_dir`, the files are written too."""
    queries = [queries] if isinstance(queries, str) else list(queries)
    if not queries or not all(isinstance(query, str) and query.strip() for query in queries):
        raise ValueError(f"heatmap: queries must be non-empty strings, got {queries!r}")
    model, processor = resolve_model(model, processor)
    text_embeds = class_embeddings(model, processor, queries, tuple(templates)).float()  # (Q, D)
    with RasterSource(image) as source:
        geometry = window_grid(source.width, source.height, grid=grid, window=window, overlap=overlap)
        boxes = geometry.boxes()
        scores = np.empty((len(boxes), len(queries)), dtype=np.float32)  # (windows, Q), row-major windows
        progress = tqdm(total=len(boxes), desc="heat map", unit="window", disable=len(boxes) <= batch_size)
        for start in range(0, len(boxes), batch_size):
            crops = [source.read(left, top, geometry.window, geometry.window)
                     for left, top, _, _ in boxes[start : start + batch_size]]
            embeds = encode_images(model, processor, crops, batch_size=len(crops), show_progress=False)  # (n, D)
            scores[start : start + len(crops)] = (embeds @ text_embeds.T).numpy()
            progress.update(len(crops))
        progress.close()
        overview = source.overview(overlay_size)
        georeference = source.georeference
    grid_scores = scores.T.reshape(len(queries), *geometry.shape)  # (Q, rows, cols)
    result = HeatmapResult(queries=queries, grid=geometry, scores=grid_scores,
                           maps=pixel_maps(grid_scores, geometry, overview.size), overview=overview,
                           georeference=georeference)
    if output_dir is not None:
        result.save(output_dir)
    return result


def pixel_maps(scores: np.ndarray, geometry: WindowGrid, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel mean of the window scores covering each pixel, (Q, rows, cols) -> (Q, h, w) at `size` = (w, h)."""
    out_width, out_height = size
    scale_x, scale_y = out_width / geometry.width, out_height / geometry.height
    total = np.zeros((scores.shape[0], out_height, out_width), dtype=np.float64)
    covered = np.zeros((out_height, out_width), dtype=np.int64)
    for row, top in enumerate(geometry.tops):
        y0, y1 = _span(top, geometry.window, scale_y, out_height)
        for col, left in enumerate(geometry.lefts):
            x0, x1 = _span(left, geometry.window, scale_x, out_width)
            total[:, y0:y1, x0:x1] += scores[:, row, col, None, None]
            covered[y0:y1, x0:x1] += 1
    return (total / np.maximum(covered, 1)).astype(np.float32)


def _span(start: int, length: int, scale: float, limit: int) -> tuple[int, int]:
    low = min(limit - 1, int(np.floor(start * scale)))
    return low, max(low + 1, min(limit, int(np.ceil((start + length) * scale))))


def overlay(image: Image.Image, score_map: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> Image.Image:
    """`image` blended with `score_map` (h, w) min-max normalised and coloured by a matplotlib colormap."""
    try:
        from matplotlib import colormaps
    except ImportError:
        raise ImportError("heat-map overlays need matplotlib: pip install matplotlib") from None
    low, high = float(score_map.min()), float(score_map.max())
    normalised = (score_map - low) / (high - low) if high > low else np.zeros_like(score_map)
    colours = (colormaps[colormap](normalised)[..., :3] * 255).astype(np.uint8)  # (h, w, 3)
    heat = Image.fromarray(colours, mode="RGB").resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), heat, alpha)


def _write_geotiff(path: Path, score_map: np.ndarray, georeference: Georeference, width: int, height: int) -> None:
    import rasterio
    from rasterio.transform import Affine

    map_height, map_width = score_map.shape
    transform = georeference.transform @ Affine.scale(width / map_width, height / map_height)
    profile = {"driver": "GTiff", "width": map_width, "height": map_height, "count": 1, "dtype": "float32",
               "crs": georeference.crs, "transform": transform}
    with rasterio.open(path, "w", **profile) as destination:
        destination.write(score_map.astype(np.float32), 1)
        destination.set_band_description(1, "cosine similarity (mean of covering windows)")


def _slugs(queries: Sequence[str]) -> list[str]:
    slugs = []
    for index, query in enumerate(queries):
        slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:48] or "query"
        slugs.append(f"{index:02d}-{slug}")
    return slugs


__all__ = ["DEFAULT_GRID", "DEFAULT_OVERLAP", "HeatmapResult", "WindowGrid", "heatmap", "overlay", "pixel_maps",
           "window_grid"]
