"""Using RemoteCLIP: zero-shot classification, search over an image archive or inside large scenes, counting, heat
maps over scenes."""

from ..images import ImageReadError, RasterSource, load_image
from ..loading import NotACLIPModelError, load_model, model_fingerprint
from .classify import UnknownPresetError, classify
from .count import CountResult, count
from .heatmap import HeatmapResult, heatmap, heatmap_from_index, window_grid
from .index import EmbeddingIndex, IndexModelMismatchError
from .scenes import SceneBuildReport, WindowOptions, build_scene_index
from .search import BuildReport, Examples, build_index, search

__all__ = ["BuildReport", "CountResult", "EmbeddingIndex", "Examples", "HeatmapResult", "ImageReadError",
           "IndexModelMismatchError", "NotACLIPModelError", "RasterSource", "SceneBuildReport", "UnknownPresetError",
           "WindowOptions", "build_index", "build_scene_index", "classify", "count", "heatmap", "heatmap_from_index",
           "load_image", "load_model", "model_fingerprint", "search", "window_grid"]
