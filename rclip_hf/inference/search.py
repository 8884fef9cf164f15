"""Building an embedding index over an image folder or a Hugging Face dataset, and searching it by text or image.

The index format and the search over its shards (exact or FAISS) are in `rclip_hf.inference.index`; this module
reads the sources, embeds them with the model and turns hits into `{"rank", "id", "path", "row", "score"}`.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm
from transformers import CLIPModel, ProcessorMixin

from ..embeddings import batched, encode_images, encode_texts
from ..images import ImageReadError, as_rgb_image, image_files, load_image
from ..loading import resolve_model
from .index import (
    FAILURES_FILE,
    FAISS_MIN_ITEMS,
    FAISS_NPROBE,
    Backend,
    EmbeddingIndex,
    atomic_write,
    faiss_module,
)

logger = logging.getLogger(__name__)

Query = str | Path | Image.Image


@dataclass(frozen=True)
class Examples:
    """A query made of indexed items: the mean of the `positive` items' embeddings minus `negative_weight` times the
    mean of the `negative` ones (as geovibes), by item id. The examples themselves are left out of the hits."""

    positive: Sequence[str]
    negative: Sequence[str] = ()
    negative_weight: float = 0.5


@dataclass
class BuildReport:
    """What a build did: items added, items already in the index (skipped), items that failed (with reasons)."""

    index: str
    added: int
    already_indexed: int
    total: int
    failures: list[dict[str, str]] = field(default_factory=list)
    faiss: bool = False


@dataclass(frozen=True)
class _Item:
    id: str
    path: str
    row: int
    load: Callable[[], Image.Image]


def build_index(
    source: str | Path | Any,
    output: str | Path,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    *,
    batch_size: int = 32,
    shard_size: int = 16384,
    num_workers: int = 2,
    split: str = "train",
    image_column: str = "image",
    id_column: str | None = None,
    faiss: Literal["auto", "yes", "no"] = "auto",
) -> BuildReport:
    """Embed every image of `source` (an image folder, a saved HF dataset folder or a `datasets.Dataset`) into the
    index at `output`; resumes an existing index (items whose id is already there are skipped) and refuses one
    built by another model. Unreadable images are skipped and listed in `failures.json` and the report."""
    model, processor = resolve_model(model, processor)
    items, total, source_name = _source_items(source, split, image_column, id_column)
    index = EmbeddingIndex.open_or_create(output, model, source=source_name)
    done = set(index.ids())
    failures: list[dict[str, str]] = []
    added = skipped = 0
    progress = tqdm(total=total, desc=f"index {source_name}", unit="img")
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for batch in batched(items, batch_size):
            todo = [item for item in batch if item.id not in done]
            skipped += len(batch) - len(todo)
            loaded = list(pool.map(_try_load, todo))
            good = [(item, image) for item, (image, _) in zip(todo, loaded) if image is not None]
            failures += [{"id": item.id, "path": item.path, "reason": reason}
                         for item, (image, reason) in zip(todo, loaded) if image is None]
            if good:
                embeddings = encode_images(model, processor, [image for _, image in good], batch_size=len(good),
                                           show_progress=False)  # (n, D)
                index.add([item.id for item, _ in good], [item.path for item, _ in good],
                          [item.row for item, _ in good], embeddings, shard_size)
                done.update(item.id for item, _ in good)
                added += len(good)
            progress.update(len(batch))
    progress.close()
    index.flush()
    failures_path = index.directory / FAILURES_FILE
    atomic_write(failures_path, lambda path: path.write_text(json.dumps(failures, indent=2)))
    for failure in failures:
        logger.warning("skipped unreadable image %s: %s", failure["path"] or failure["id"], failure["reason"])
    build_faiss_if_wanted(index, faiss)
    return BuildReport(index=str(index.directory), added=added, already_indexed=skipped, total=len(index),
                       failures=failures, faiss=index.faiss_is_current())


def build_faiss_if_wanted(index: EmbeddingIndex, faiss: Literal["auto", "yes", "no"]) -> None:
    """(Re)build the index's FAISS file for `faiss="yes"`, or for `"auto"` when faiss is installed and the index
    holds at least `FAISS_MIN_ITEMS` items, unless it is up to date."""
    wants_faiss = faiss == "yes" or (faiss == "auto" and len(index) >= FAISS_MIN_ITEMS and faiss_module() is not None)
    if wants_faiss and not index.faiss_is_current():
        index.build_faiss()


def search(
    index: EmbeddingIndex | str | Path,
    queries: Query | Sequence[Query],
    k: int = 10,
    *,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    backend: Backend = "auto",
    bbox: Sequence[float] | None = None,
    bbox_crs: str = "EPSG:4326",
    nprobe: int = FAISS_NPROBE,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """Top-`k` items for a text query (a `str`), an image query (a PIL image or a `Path`) or `Examples` (indexed
    items by id), best first.

    Each hit is `{"rank", <the item-table row: "id", "path", "row", and for windows of scenes "left", "top", ...>,
    "score"}` with `score` the cosine similarity. One query gives one list; a sequence of queries gives one list per
    query. `bbox` (minx, miny, maxx, maxy in `bbox_crs`) keeps the windows whose extent meets it (none: an empty
    list). The model must be the index's (else `IndexModelMismatchError`).
    """
    index = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex.open(index)
    model, processor = resolve_model(model, processor)
    index.check_model(model)
    single = isinstance(queries, (str, Path, Image.Image, Examples))
    query_list = [queries] if single else list(queries)
    if not query_list:
        raise ValueError("search: no queries given")
    allowed = None
    if bbox is not None:
        from .scenes import bbox_mask

        allowed = bbox_mask(index, bbox, bbox_crs)
        if not allowed.any():
            logger.warning("no indexed window meets --bbox %s (%s): no hits", ",".join(map(str, bbox)), bbox_crs)
            return [] if single else [[] for _ in query_list]
    embeddings = encode_queries(model, processor, query_list, index)  # (Q, D)
    results: list[list[dict[str, Any]]] = [[] for _ in query_list]
    plain = [i for i, query in enumerate(query_list) if not isinstance(query, Examples)]
    if plain:  # one pass over the shards for all of them
        for i, hits in zip(plain, _hits(index, embeddings[plain], k, allowed, backend, nprobe)):
            results[i] = hits
    for i, query in enumerate(query_list):
        if isinstance(query, Examples):
            mask = torch.ones(len(index), dtype=torch.bool) if allowed is None else allowed.clone()
            mask[[position for position, item_id in enumerate(index.ids())
                  if item_id in {*query.positive, *query.negative}]] = False
            results[i] = _hits(index, embeddings[i : i + 1], k, mask, backend, nprobe)[0]
    return results[0] if single else results


def _hits(index: EmbeddingIndex, queries: Tensor, k: int, allowed: Tensor | None, backend: Backend,
          nprobe: int) -> list[list[dict[str, Any]]]:
    """Ranked hits of `queries` (Q, D) among the `allowed` items (bool (N,); None: all)."""
    available = len(index) if allowed is None else int(allowed.sum())
    if available == 0:
        return [[] for _ in queries]
    # k beyond the index is the caller's error; beyond the items a filter leaves, it is "all of them"
    scores, positions = index.search_embeddings(queries, k if allowed is None else min(k, available),
                                                backend=backend, nprobe=nprobe, allowed=allowed)
    results = []
    for row_scores, row_positions in zip(scores.tolist(), positions.tolist()):
        found = [(position, score) for position, score in zip(row_positions, row_scores)
                 if position >= 0]  # FAISS marks hits it could not fill with -1
        hits = index.items([position for position, _ in found])
        results.append([{"rank": rank, **hit, "score": score}
                        for rank, (hit, (_, score)) in enumerate(zip(hits, found), start=1)])
    return results


def encode_queries(model: CLIPModel, processor: ProcessorMixin, queries: Sequence[Query | Examples],
                   index: EmbeddingIndex | None = None) -> Tensor:
    """L2-normalised embeddings (Q, D) of text (`str`), image (PIL image or `Path`) and `Examples` queries (these
    need the `index` holding the examples), in order."""
    text_positions = [i for i, query in enumerate(queries) if isinstance(query, str)]
    image_positions = [i for i, query in enumerate(queries) if isinstance(query, (Path, Image.Image))]
    parts: dict[int, Tensor] = {}
    for position, query in enumerate(queries):
        if isinstance(query, Examples):
            if index is None:
                raise ValueError("example queries (--positive/--negative) need the index that holds the examples")
            parts[position] = example_query(index, query)
    if text_positions:
        texts = encode_texts(model, processor, [queries[i] for i in text_positions], show_progress=False)
        parts.update(zip(text_positions, texts))
    if image_positions:
        images = [as_rgb_image(queries[i]) for i in image_positions]
        parts.update(zip(image_positions, encode_images(model, processor, images, show_progress=False)))
    return torch.stack([parts[i] for i in range(len(queries))])


def example_query(index: EmbeddingIndex, examples: Examples) -> Tensor:
    """The L2-normalised query (D,) of `Examples`: mean(positives) - negative_weight * mean(negatives)."""
    if not examples.positive:
        raise ValueError("an example query needs at least one --positive item id")
    query = index.embeddings_of(list(examples.positive)).mean(0)
    if examples.negative:
        query = query - examples.negative_weight * index.embeddings_of(list(examples.negative)).mean(0)
    norm = query.norm()
    if norm == 0:
        raise ValueError("the positive and negative examples cancel out: give different --positive/--negative ids")
    return query / norm


# ----- sources --------------------------------------------------------------------------------------------------
def _source_items(source: Any, split: str, image_column: str,
                  id_column: str | None) -> tuple[Iterator[_Item], int, str]:
    """(items, their number, a name for the source) of an image folder, a dataset folder or a Dataset."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"index source not found: {path}")
        if path.is_file():
            raise ValueError(f"index source {path} is a file; give an image folder or a dataset folder")
        if _is_dataset_folder(path):
            import datasets

            dataset = datasets.load_dataset(str(path), split=split)
            return _dataset_items(dataset, str(path), image_column, id_column)
        files = image_files(path)
        items = (_Item(id=file.relative_to(path).as_posix(), path=str(file), row=-1,
                       load=lambda file=file: load_image(file)) for file in files)
        return items, len(files), str(path)
    name = getattr(getattr(source, "info", None), "dataset_name", None) or "dataset"
    return _dataset_items(source, name, image_column, id_column)


def _is_dataset_folder(path: Path) -> bool:
    """A folder holding Parquet/Arrow files (a Hub-layout or `save_to_disk` dataset) rather than images."""
    return any(path.rglob("*.parquet")) or any(path.rglob("*.arrow"))


def _dataset_items(dataset: Any, name: str, image_column: str,
                   id_column: str | None) -> tuple[Iterator[_Item], int, str]:
    import datasets

    for column in (image_column, id_column):
        if column is not None and column not in dataset.column_names:
            raise KeyError(f"dataset {name} has no column {column!r} (columns: {', '.join(dataset.column_names)})")
    columns = [image_column] + ([id_column] if id_column else [])
    dataset = dataset.select_columns(columns).cast_column(image_column, datasets.Image(decode=False))

    def items() -> Iterator[_Item]:
        seen: set[str] = set()
        for row, example in enumerate(dataset):
            item_id = str(example[id_column]) if id_column else str(row)
            if item_id in seen:
                raise ValueError(f"dataset {name}: id {item_id!r} (column {id_column!r}) repeats at row {row}; "
                                 "ids must be unique")
            seen.add(item_id)
            encoded = example[image_column]
            yield _Item(id=item_id, path=(encoded or {}).get("path") or "", row=row,
                        load=lambda encoded=encoded: _decode_dataset_image(encoded))

    return items(), len(dataset), name


def _decode_dataset_image(encoded: dict[str, Any] | None) -> Image.Image:
    if not encoded or (encoded.get("bytes") is None and not encoded.get("path")):
        raise ImageReadError("the row has no image (empty cell)")
    if encoded.get("bytes") is not None:
        try:
            with Image.open(io.BytesIO(encoded["bytes"])) as image:
                image.load()
                return as_rgb_image(image)
        except (OSError, ValueError, SyntaxError) as error:
            raise ImageReadError(f"cannot decode image bytes: {error}") from None
    return load_image(encoded["path"])


def _try_load(item: _Item) -> tuple[Image.Image | None, str]:
    try:
        return item.load(), ""
    except (OSError, ValueError) as error:
        return None, str(error)


__all__ = ["BuildReport", "Examples", "build_faiss_if_wanted", "build_index", "encode_queries", "example_query",
           "search"]
