"""What `rclip-hf explore` does, without the web: search, labels, the classifier, detections, heat maps, export.

Search is `rclip_hf.inference.search` (as `rclip-hf search`); the query by examples is its `Examples` of the
labelled windows. "Train" fits a class-balanced logistic regression on the labelled windows' embeddings only and
scores every window of the index batch by batch as it is read (one matrix-vector product per batch: the embeddings
are never all in memory); the windows whose probability is closest to 0.5 are offered for labelling next. Detections
above a threshold merge into regions by `merge_hits`, as `search --merge`. Exports are `hits_geojson` (georeferenced
hits in `NAME.geojson`, pixel-space hits in `NAME.pixel.geojson`) and `write_hits_parquet`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel, ProcessorMixin

from ..errors import UserError
from ..inference import EmbeddingIndex, Examples, search
from ..inference.geo import wkb_ring
from ..inference.scenes import (
    hits_geojson,
    merge_hits,
    pixel_geojson_path,
    pixel_hits_geojson,
    write_hits_parquet,
)
from ..inference.search import encode_queries
from ..inference.stac import STAC_COLUMNS
from ..staging import refuse_link, replaced_file
from ..topk import topk_lowest_index
from .catalog import SceneCatalog
from .labels import LabelStore

#: The file name endings each export format may write.
EXPORT_SUFFIXES = {"geojson": (".geojson", ".json"), "parquet": (".parquet",), "labels": (".parquet",)}
#: Most detections returned (and merged) at once; the total above the threshold is counted over all windows.
MAX_DETECTIONS = 2000
#: Windows scored per batch read from the index (8 MiB of 512-d float32 embeddings): at 500k windows the lowest peak
#: memory of 2k-64k batches (+0.4 GiB while scoring, +0.8 GiB at 64k), and as fast as any of them
SCORE_BATCH = 4096


class ExploreError(ValueError):
    """A request the app cannot serve as asked (400): the message says why and what to do."""


class Explorer:
    """An index, its model and one label set, with the latest query and classifier scores."""

    def __init__(self, index: EmbeddingIndex, model: CLIPModel, processor: ProcessorMixin, index_directory: Path,
                 label_set: str, negative_weight: float = 0.5):
        index.check_model(model)
        if len(index) == 0:
            raise UserError(f"--index {index_directory}", "the index holds no items yet",
                            "run `rclip-hf index` on images or scenes first")
        self.index, self.model, self.processor = index, model, processor
        self.catalog = SceneCatalog(index)
        self.labels = LabelStore(index, label_set)
        self.negative_weight = negative_weight
        self._lock = threading.Lock()
        self._query: str | Image.Image | Examples | None = None  # the latest query
        self._query_scores: np.ndarray | None = None
        self.hits: list[dict[str, Any]] = []  # the latest search's hits
        self.probabilities: np.ndarray | None = None  # (N,) classifier probability of every window

    # ----- search ------------------------------------------------------------------------------------------------
    def search(self, query: str | Image.Image | None, k: int, merge: bool = False) -> list[dict[str, Any]]:
        """Hits of a text or image query, or (None) of the labelled examples, by `rclip_hf.inference.search`."""
        if query is None:
            labels = self.labels.get()
            positive = [item_id for item_id, label in labels.items() if label == "positive"]
            negative = [item_id for item_id, label in labels.items() if label == "negative"]
            if not positive:
                raise ExploreError("a query by examples needs at least one positive label")
            query = Examples(positive, negative, self.negative_weight)
        elif isinstance(query, str) and not query.strip():
            raise ExploreError("the query text is empty")
        hits = search(self.index, query, k=max(1, min(k, len(self.index))), model=self.model,
                      processor=self.processor)
        with self._lock:
            self._query, self._query_scores = query, None
            self.hits = merge_hits(hits) if merge else hits
        return self.hits

    def query_scores(self) -> np.ndarray:
        """(N,) cosine similarity of every window to the latest query (encoded as `search` encodes it)."""
        with self._lock:
            if self._query is None:
                raise ExploreError("no query yet: search first")
            if self._query_scores is None:
                embedding = encode_queries(self.model, self.processor, [self._query], self.index)[0]  # (D,)
                self._query_scores = self._score_all(lambda embeddings: embeddings @ embedding)
            return self._query_scores

    # ----- classifier ---------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Fit the classifier on the labelled windows and score every window; counts of labels and detections."""
        from sklearn.linear_model import LogisticRegression

        labels = {item_id: label for item_id, label in self.labels.get().items()
                  if item_id in self.catalog.position_of}
        positive = [item_id for item_id, label in labels.items() if label == "positive"]
        negative = [item_id for item_id, label in labels.items() if label == "negative"]
        if not positive or not negative:
            raise ExploreError(f"training needs at least one positive and one negative label "
                               f"(have {len(positive)} positive, {len(negative)} negative)")
        features = self.index.embeddings_of(positive + negative).numpy()
        classifier = LogisticRegression(class_weight="balanced", max_iter=1000)
        classifier.fit(features, [1] * len(positive) + [0] * len(negative))
        weight = torch.from_numpy(classifier.coef_[0].astype(np.float32))
        bias = float(classifier.intercept_[0])
        probabilities = self._score_all(lambda embeddings: torch.sigmoid(embeddings @ weight + bias))
        with self._lock:
            self.probabilities = probabilities
        return {"positive": len(positive), "negative": len(negative),
                "detections": int((probabilities >= 0.5).sum()), "windows": len(probabilities)}

    def detections(self, threshold: float, merge: bool = False,
                   limit: int = MAX_DETECTIONS) -> tuple[int, list[dict[str, Any]]]:
        """(number of windows at or above `threshold`, the best `limit` of them as hits, merged into regions)."""
        probabilities = self.probabilities_or_error()
        above = np.flatnonzero(probabilities >= threshold)
        best = above[smallest(-probabilities[above], limit)]
        hits = [{"rank": rank, **item, "score": float(probabilities[position])}
                for rank, (position, item) in enumerate(zip(best, self.index.items(best.tolist())), start=1)]
        return len(above), merge_hits(hits) if merge else hits

    def uncertain(self, count: int = 8) -> list[dict[str, Any]]:
        """The unlabelled windows whose probability is closest to 0.5 (uncertainty sampling)."""
        probabilities = self.probabilities_or_error()
        margin = np.abs(probabilities - 0.5)
        labelled = [self.catalog.position_of[item_id] for item_id in self.labels.get()
                    if item_id in self.catalog.position_of]
        margin[labelled] = np.inf
        nearest = smallest(margin, count)
        nearest = nearest[np.isfinite(margin[nearest])]
        return [{"rank": rank, **item, "score": float(probabilities[position])}
                for rank, (position, item) in enumerate(zip(nearest, self.index.items(nearest.tolist())), start=1)]

    def probabilities_or_error(self) -> np.ndarray:
        """(N,) the classifier's probability of every window; `ExploreError` before training."""
        if self.probabilities is None:
            raise ExploreError("no classifier yet: label at least one positive and one negative window, then train")
        return self.probabilities

    def _score_all(self, score: Any) -> np.ndarray:
        """(N,) `score` of the embeddings (n, D) of every window, batch by batch as the index is read."""
        out = np.empty(len(self.index), dtype=np.float32)
        with torch.no_grad():
            for offset, embeddings in self.index.shard_embeddings(SCORE_BATCH):
                out[offset:offset + len(embeddings)] = score(embeddings).numpy()
        return out

    # ----- export ------------------------------------------------------------------------------------------------
    def export_hits(self, source: str, threshold: float, merge: bool) -> list[dict[str, Any]]:
        """The hits an export writes: the detections (`source="detections"`) or the latest search's hits."""
        if source == "detections":
            return self.detections(threshold, merge)[1]
        if source == "hits":
            return self.hits
        raise ExploreError(f"export source {source!r}: use detections or hits")

    def export(self, path: str | Path, file_format: str, hits: Sequence[dict[str, Any]]) -> list[str]:
        """Write `hits` (GeoJSON or GeoParquet) or the labels (`labels`: Parquet) to `path`; the files written."""
        path = Path(path).expanduser()
        if file_format not in EXPORT_SUFFIXES:
            raise ExploreError(f"export format {file_format!r}: use geojson, parquet or labels")
        if path.suffix.lower() not in EXPORT_SUFFIXES[file_format]:  # no other kind of file is ever overwritten
            raise ExploreError(f"export path {path}: a {file_format} export ends with "
                               f"{' or '.join(EXPORT_SUFFIXES[file_format])}")
        if not path.parent.is_dir():
            raise ExploreError(f"export path {path}: its folder does not exist")
        try:
            return self._write_export(path, file_format, hits)
        except UserError as error:  # a symlink where the export goes: nothing is written through it
            raise ExploreError(str(error)) from None

    def _write_export(self, path: Path, file_format: str, hits: Sequence[dict[str, Any]]) -> list[str]:
        import pyarrow.parquet as pq

        if file_format == "geojson":
            lonlat, pixel = export_geojson(hits)
            files = {path: lonlat, **({pixel_geojson_path(path): pixel} if pixel["features"] else {})}
            for file in files:
                refuse_link(file)  # before either is written
            for file, collection in files.items():
                with replaced_file(file) as handle:
                    handle.write(json.dumps(collection, indent=2).encode())
            return [str(file) for file in files]
        if file_format == "parquet":
            write_hits_parquet(list(hits), path)
            return [str(path)]
        import pyarrow as pa

        rows = self.labels.rows()
        windows = [self.catalog.window(self.catalog.position_of[row["id"]])
                   if row["id"] in self.catalog.position_of else None for row in rows]
        table = pa.table({"id": [row["id"] for row in rows], "label": [row["label"] for row in rows],
                          "label_set": [row["label_set"] for row in rows], "time": [row["time"] for row in rows],
                          "window": pa.array(windows, pa.list_(pa.int64()))})
        with replaced_file(path) as handle:
            pq.write_table(table, handle)
        return [str(path)]

    # ----- JSON -------------------------------------------------------------------------------------------------
    def hits_json(self, hits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hits as the app shows them (`hit_json`), with the labels read once."""
        labels = self.labels.get()
        return [self.hit_json(hit, labels) for hit in hits]

    def hit_json(self, hit: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A hit as the app shows it: scene id and name, pixel window, lon/lat ring, position, label (from `labels`,
        default the label set's), and its STAC item id, collection and datetime (`STAC_COLUMNS`; null for scenes
        not read from STAC)."""
        labels = self.labels.get() if labels is None else labels
        position = self.catalog.position_of.get(hit["id"])
        scene = self.catalog.scenes[_scene_key(self.catalog, hit, position)]
        window = [hit["left"], hit["top"], hit["width"], hit["height"]] if hit.get("left") is not None else None
        return {"rank": hit["rank"], "score": _finite(hit["score"]), "id": hit["id"], "position": position,
                "scene": scene.id, "scene_name": scene.name, "window": window,
                "ring": None if hit.get("geometry") is None else wkb_ring(hit["geometry"]),
                "merged": hit.get("merged", 1), "label": labels.get(hit["id"]),
                **{name: hit.get(name) for name in STAC_COLUMNS}}


def smallest(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` smallest `values` (N,), smallest first, ties to the lower position: the first `count`
    of `np.argsort(values, kind="stable")`, by `topk_lowest_index` without sorting all of them."""
    count = min(count, len(values))
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    return topk_lowest_index(-torch.from_numpy(values)[None], count)[1][0].numpy()


def _scene_key(catalog: SceneCatalog, hit: dict[str, Any], position: int | None) -> str:
    if position is not None:
        return catalog.scene_of_position(position).id
    from .catalog import scene_id

    return scene_id(hit["path"])  # a merged region: its best window's scene


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def export_geojson(hits: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RFC 7946 FeatureCollection of the georeferenced hits, FeatureCollection of the others in pixels)."""
    return hits_geojson(hits), pixel_hits_geojson(hits)


__all__ = ["MAX_DETECTIONS", "SCORE_BATCH", "ExploreError", "Explorer", "export_geojson", "smallest"]
