"""Using RemoteCLIP: zero-shot classification, search over an image archive, counting, heat maps over scenes."""

from ..images import ImageReadError, RasterSource, load_image
from ..loading import NotACLIPModelError, load_model, model_fingerprint
from .classify import UnknownPresetError, classify
from .count import CountResult, count
from .heatmap import HeatmapResult, heatmap, window_grid
from .index import EmbeddingIndex, IndexModelMismatchError
from .search import BuildReport, build_index, search

__all__ = ["BuildReport", "CountResult", "EmbeddingIndex", "HeatmapResult", "ImageReadError",
           "IndexModelMismatchError", "NotACLIPModelError", "RasterSource", "UnknownPresetError", "build_index",
           "classify", "count", "heatmap", "load_image", "load_model", "model_fingerprint", "search", "window_grid"]
