"""Building an embedding index over an image folder or a Hugging Face dataset, and searching it by text or image.

The index (a LanceDB table) and the search over it (exact or ANN) are in `rclip_hf.inference.index`; this module
reads the sources, embeds them with the model and turns hits into `{"rank", "id", "path", "row", "score"}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor
from transformers import CLIPModel, ProcessorMixin

from ..embeddings import batched, encode_images, encode_texts
from ..errors import UserError
from ..images import as_model_image, image_files, note_bands, open_dataset_image, open_image, printable_path
from ..loading import resolve_model
from ..progress import progress_bar
from .dataset_folder import is_hub_dataset_id, load_dataset_folder, load_hub_dataset, numbered_rows
from .index import (
    ANN_MIN_ITEMS,
    ANN_NPROBES,
    BBOX_COLUMNS,
    Backend,
    EmbeddingIndex,
    ItemKey,
    check_prune,
    file_key,
    is_index_folder,
    is_local,
    row_key,
    write_failures,
)

logger = logging.getLogger(__name__)

Query = str | Path | Image.Image


#: Default progress commits: every this many embedded items, or
COMMIT_EVERY = 4096
AnnChoice = Literal["auto", "yes", "no"]
#: every this many seconds, whichever comes first: a killed build loses less than a minute of work
COMMIT_SECONDS = 30.0


@dataclass(frozen=True)
class Examples:
    """A query made of indexed items: the mean of the `positive` items' embeddings minus `negative_weight` times the
    mean of the `negative` ones (as geovibes), by item id. The examples themselves are left out of the hits."""

    positive: Sequence[str]
    negative: Sequence[str] = ()
    negative_weight: float = 0.5


@dataclass
class BuildReport:
    """What a build did: items added, items already in the index (skipped), changed files and dataset rows
    re-embedded, deleted files and rows removed (`--prune`) or still indexed (`missing`), items that failed (with
    reasons)."""

    index: str
    added: int
    already_indexed: int
    total: int
    failures: list[dict[str, str]] = field(default_factory=list)
    ann: bool = False
    changed: int = 0
    pruned: int = 0
    missing: int = 0


@dataclass(frozen=True)
class _Item:
    id: str
    path: str
    row: int
    load: Callable[[], Image.Image]
    file: Path | None = None  # the image file of a folder source, keyed by size, mtime and digest
    cell: dict[str, Any] | None = None  # the undecoded image cell of a dataset row, keyed by its bytes' digest


def build_index(
    source: str | Path | Any,
    output: str | Path,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    *,
    batch_size: int = 32,
    num_workers: int = 2,
    split: str = "train",
    image_column: str = "image",
    id_column: str | None = None,
    ann: AnnChoice = "auto",
    commit_every: int = COMMIT_EVERY,
    commit_seconds: float = COMMIT_SECONDS,
    prune: bool = False,
    storage_options: dict[str, str] | None = None,
    add_source: bool = False,
    force: bool = False,
    bands: Sequence[int] | None = None,
) -> BuildReport:
    """Embed every image of `source` (an image folder, a saved HF dataset folder, a Hub dataset id: its `split`, or
    a `datasets.Dataset`; a streaming `IterableDataset` is refused) into the
    index at `output` (a folder or an object-store URI, with `storage_options`), upserting by id: several builds
    may write into one index at once.

    Resumes an existing index and refuses one built by another model. Image files are keyed by path, size, mtime
    and content digest, dataset rows by id and the digest of their stored image bytes (`row_key`: read, not
    decoded): unchanged ones are skipped, changed ones re-embedded (replacing their old entry), deleted files and
    rows gone from the dataset removed with `prune` (else counted as `missing`). Rows of older indexes, stored
    without a digest, are kept as they are and their digest is recorded, so later changes are seen. Progress is
    committed every `commit_every` items or `commit_seconds`, whichever comes first, so a killed build keeps what
    it committed. Unreadable images (including ones over the pixel limit) are skipped and listed in `failures.json`
    and the report. The index folder is never read as input. An ANN index is built for `ann="yes"`, or for "auto"
    when the index holds `ANN_MIN_ITEMS` items or more. The index remembers its source: another one is refused
    unless `add_source`; an empty source never prunes, and a prune of more than half of the index needs `force`.
    `bands` picks the bands of (Geo)TIFF files, as `load_image` does.
    """
    model, processor = resolve_model(model, processor)
    output = str(output)
    if isinstance(source, (str, Path)):
        check_not_output(source, output)
    items, total, source_name, listed = _source_items(source, split, image_column, id_column, output, bands)
    if prune and total == 0:
        raise UserError(f"--source {source_name}", "holds no items, and an empty source never prunes",
                        "check the source, or leave --prune out")
    index = EmbeddingIndex.open_or_create(output, model, source=source_name, storage_options=storage_options)
    if isinstance(source, (str, Path)):
        index.check_sources([resolved_source(source)], add_source)
    known = index.item_keys()
    failures: list[dict[str, str]] = []
    added = skipped = changed = 0
    replaced: set[str] = set()  # ids whose old entry goes at the next commit
    rekeyed: dict[str, ItemKey] = {}  # rows of older indexes (no digest): kept, their keys recorded at the end
    last_commit = time.monotonic()
    progress = progress_bar(total=total, desc=f"index {source_name}", unit="img")
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for batch in batched(items, batch_size):
            todo = []
            for item, (key, reason) in zip(batch, pool.map(lambda item: _new_key(item, known.get(item.id)),
                                                           batch)):
                if reason:
                    failures.append({"id": printable_path(item.id), "path": printable_path(item.path),
                                     "reason": reason})
                elif key is None:
                    skipped += 1
                elif item.file is None and item.id in known and not known[item.id].digest:
                    rekeyed[item.id] = key
                    skipped += 1
                else:
                    todo.append((item, key))
            loaded = list(pool.map(_try_load, [item for item, _ in todo]))
            good = [(item, key, image) for (item, key), (image, _) in zip(todo, loaded) if image is not None]
            failures += [{"id": item.id, "path": item.path, "reason": reason}
                         for (item, _), (image, reason) in zip(todo, loaded) if image is None]
            replaced.update(item.id for item, _ in todo if item.id in known)  # changed: re-embedded or failed
            if good:
                embeddings = encode_images(model, processor, [image for _, _, image in good],
                                           batch_size=len(good), show_progress=False)  # (n, D)
                index.add([item.id for item, _, _ in good], [item.path for item, _, _ in good],
                          [item.row for item, _, _ in good], embeddings, [key for _, key, _ in good])
                changed += sum(1 for item, _, _ in good if item.id in known)
                added += sum(1 for item, _, _ in good if item.id not in known)
            if index.queued >= commit_every or time.monotonic() - last_commit >= commit_seconds:
                index.commit(remove=replaced)
                replaced, last_commit = set(), time.monotonic()
            progress.update(len(batch))
    progress.close()
    gone = sorted(set(known) - listed)
    if prune:
        check_prune(index, len(gone), force)
    index.commit(remove=replaced | (set(gone) if prune else set()), rekey=rekeyed)
    write_failures(index, failures)
    for failure in failures:
        logger.warning("skipped unreadable image %s: %s", failure["path"] or failure["id"], failure["reason"])
    if gone and not prune:
        logger.warning("%d indexed item(s) no longer exist in %s (e.g. %s): pass --prune to remove them",
                       len(gone), source_name, gone[0])
    build_ann_if_wanted(index, ann)
    return BuildReport(index=index.uri, added=added, already_indexed=skipped, total=len(index),
                       failures=failures, ann=index.has_ann(), changed=changed,
                       pruned=len(gone) if prune else 0, missing=0 if prune else len(gone))


def resolved_source(source: str | Path) -> str:
    """A source as the index remembers it: its resolved path (a URL or a Hub dataset id as it is)."""
    return str(Path(source).resolve()) if is_local(source) and not is_hub_dataset_id(source) else str(source)


def check_not_output(source: str | Path, output: str) -> None:
    """Refuse a source that is the index's own folder."""
    if is_local(output) and Path(source).resolve() == Path(output.removeprefix("file://")).resolve():
        raise UserError(f"--source {source}", "is the --output index itself", "give the folder of the images")


def verify_index(uri: str | Path, storage_options: dict[str, str] | None = None) -> list[str]:
    """Problems of an index (see `EmbeddingIndex.verify`); empty when sound."""
    return EmbeddingIndex.open(uri, storage_options).verify()


def build_ann_if_wanted(index: EmbeddingIndex, ann: AnnChoice) -> None:
    """(Re)build the index's ANN index for `ann="yes"`, or for `"auto"` when it holds at least `ANN_MIN_ITEMS`
    items and has none yet."""
    if ann == "yes" or (ann == "auto" and len(index) >= ANN_MIN_ITEMS and not index.has_ann()):
        index.build_ann()


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
    nprobes: int = ANN_NPROBES,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """Top-`k` items for a text query (a `str`), an image query (a PIL image or a `Path`) or `Examples` (indexed
    items by id), best first.

    Each hit is `{"rank", <the item-table row: "id", "path", "row", and for windows of scenes "left", "top", ...>,
    "score"}` with `score` the cosine similarity. One query gives one list; a sequence of queries gives one list per
    query. `bbox` (minx, miny, maxx, maxy in `bbox_crs`) keeps the windows whose extent meets it (none: an empty
    list), as a prefilter: only those windows are searched. The model must be the index's (else
    `IndexModelMismatchError`).
    """
    index = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex.open(index)
    model, processor = resolve_model(model, processor)
    index.check_model(model)
    single = isinstance(queries, (str, Path, Image.Image, Examples))
    query_list = [queries] if single else list(queries)
    if not query_list:
        raise ValueError("search: no queries given")
    allowed, where = None, None
    if bbox is not None:
        from .geo import bbox_to_lonlat

        box = bbox_to_lonlat(bbox, bbox_crs)
        allowed, where = index.bbox_mask(box), bbox_filter(box)
        if not allowed.any():
            logger.warning("no indexed window meets --bbox %s (%s): no hits", ",".join(map(str, bbox)), bbox_crs)
            return [] if single else [[] for _ in query_list]
    embeddings = encode_queries(model, processor, query_list, index)  # (Q, D)
    results: list[list[dict[str, Any]]] = [[] for _ in query_list]
    plain = [i for i, query in enumerate(query_list) if not isinstance(query, Examples)]
    if plain:  # one pass over the shards for all of them
        for i, hits in zip(plain, _hits(index, embeddings[plain], k, allowed, where, backend, nprobes)):
            results[i] = hits
    for i, query in enumerate(query_list):
        if isinstance(query, Examples):
            examples = {*query.positive, *query.negative}
            mask = torch.ones(len(index), dtype=torch.bool) if allowed is None else allowed.clone()
            mask[[index.positions_of()[item_id] for item_id in examples]] = False
            skip = "id NOT IN ({})".format(", ".join("'" + item_id.replace("'", "''") + "'" for item_id in examples))
            results[i] = _hits(index, embeddings[i : i + 1], k, mask, skip if where is None else f"{where} AND {skip}",
                               backend, nprobes)[0]
    return results[0] if single else results


def bbox_filter(box: Sequence[float]) -> str:
    """The SQL prefilter of the windows whose extent columns meet `box` (longitude/latitude; touching counts)."""
    xmin, ymin, xmax, ymax = BBOX_COLUMNS
    return f"{xmin} <= {box[2]!r} AND {xmax} >= {box[0]!r} AND {ymin} <= {box[3]!r} AND {ymax} >= {box[1]!r}"


def _hits(index: EmbeddingIndex, queries: Tensor, k: int, allowed: Tensor | None, where: str | None,
          backend: Backend, nprobes: int) -> list[list[dict[str, Any]]]:
    """Ranked hits of `queries` (Q, D) among the `allowed` items (bool (N,); None: all), which the SQL filter
    `where` selects for ANN search."""
    available = len(index) if allowed is None else int(allowed.sum())
    if available == 0:
        return [[] for _ in queries]
    # k beyond the index is the caller's error; beyond the items a filter leaves, it is "all of them"
    scores, positions = index.search_embeddings(queries, k if allowed is None else min(k, available),
                                                backend=backend, nprobes=nprobes, allowed=allowed, where=where)
    results = []
    for row_scores, row_positions in zip(scores.tolist(), positions.tolist()):
        found = [(position, score) for position, score in zip(row_positions, row_scores)
                 if position >= 0]  # ANN search marks hits it could not fill with -1
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
        images = [as_model_image(queries[i]) for i in image_positions]
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
def _source_items(source: Any, split: str, image_column: str, id_column: str | None, output: str,
                  bands: Sequence[int] | None = None) -> tuple[Iterator[_Item], int, str, set[str]]:
    """(items, their number, a name for the source, their ids: a dataset's complete once the items are consumed) of
    an image folder, a dataset folder, a Hub dataset id or a Dataset; index folders inside the source (`output` among them) are left
    out. `bands` apply to the (Geo)TIFF files of a folder; a dataset's rows are read as RGB (noted)."""
    if bands and (not isinstance(source, (str, Path)) or is_hub_dataset_id(source)
                  or is_dataset_folder(Path(source), output)):
        note_bands(source if isinstance(source, (str, Path)) else "dataset", bands, "a dataset's rows are read as RGB")
    if is_hub_dataset_id(source):
        return _dataset_items(load_hub_dataset(source, split), source, image_column, id_column)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"index source not found: {path}")
        if path.is_file():
            raise ValueError(f"index source {path} is a file; give an image folder or a dataset folder")
        inside_index = _index_folder_test(path, output)
        if is_dataset_folder(path, output):
            return _dataset_items(load_dataset_folder(path, split), str(path), image_column, id_column)
        files = [file for file in image_files(path) if not inside_index(file)]
        ids = [file.relative_to(path).as_posix() for file in files]
        items = (_Item(id=item_id, path=str(file), row=-1, load=lambda file=file: open_image(file, bands), file=file)
                 for item_id, file in zip(ids, files))
        return items, len(files), str(path), set(ids)
    name = getattr(getattr(source, "info", None), "dataset_name", None) or "dataset"
    return _dataset_items(source, name, image_column, id_column)


def is_dataset_folder(folder: Path, output: str | Path | None = None) -> bool:
    """Whether `folder` holds a Hugging Face dataset (Parquet or Arrow files outside index folders, `output` among
    them) rather than image files."""
    inside_index = _index_folder_test(folder, output)
    return any(not inside_index(file) for pattern in ("*.parquet", "*.arrow") for file in folder.rglob(pattern))


def _index_folder_test(source: Path, output: str | Path | None) -> Callable[[Path], bool]:
    """Whether a file under `source` lies in an index folder: `output` or any folder holding an index."""
    roots = []
    resolved_source = source.resolve()
    resolved_output = Path(output).resolve() if output is not None and is_local(output) else None
    if resolved_output is not None and resolved_output.is_relative_to(resolved_source):
        roots.append(resolved_output.relative_to(resolved_source).parts)
    for folder in [source, *(path for path in source.rglob("*") if path.is_dir())]:
        if is_index_folder(folder):
            roots.append(folder.relative_to(source).parts)

    def inside(file: Path) -> bool:
        parts = file.relative_to(source).parts
        return any(parts[:len(root)] == root for root in roots)

    return inside


def _new_key(item: _Item, old: ItemKey | None) -> tuple[ItemKey | None, str]:
    """(key to store, "") for an item new or changed since its `old` key, (None, "") for one already indexed
    unchanged, (None, reason) when its file or cell cannot be read."""
    return file_key(item.file, old) if item.file is not None else row_key(item.cell, old)


def _dataset_items(dataset: Any, name: str, image_column: str,
                   id_column: str | None) -> tuple[Iterator[_Item], int, str, set[str]]:
    """(items, their number, `name`, their ids: complete once the items are consumed) of the rows of `dataset`."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        raise UserError(f"--source {name}", "a streaming (iterable) dataset cannot be indexed: the index counts and "
                        "keys every row", "load it without streaming=True, or download it first")
    for column in (image_column, id_column):
        if column is not None and column not in dataset.column_names:
            raise KeyError(f"dataset {name} has no column {column!r} (columns: {', '.join(dataset.column_names)})")
    columns = [image_column] + ([id_column] if id_column else [])
    dataset = dataset.select_columns(columns).cast_column(image_column, datasets.Image(decode=False))

    seen: set[str] = set()

    def items() -> Iterator[_Item]:
        for row, values in numbered_rows(dataset):  # undecoded cells
            cell, item_id = values[image_column], str(values[id_column] if id_column else row)
            if item_id in seen:
                raise ValueError(f"dataset {name}: id {item_id!r} (column {id_column!r}) repeats at row {row}; "
                                 "ids must be unique")
            seen.add(item_id)
            yield _Item(id=item_id, path=(cell or {}).get("path") or "", row=row,
                        load=lambda cell=cell: open_dataset_image(cell), cell=cell)

    return items(), len(dataset), name, seen


def _try_load(item: _Item) -> tuple[Image.Image | None, str]:
    try:
        return item.load(), ""
    except (OSError, ValueError) as error:
        return None, str(error)


__all__ = ["COMMIT_EVERY", "COMMIT_SECONDS", "AnnChoice", "BuildReport", "Examples", "bbox_filter",
           "build_ann_if_wanted", "build_index", "check_not_output", "encode_queries", "example_query",
           "is_dataset_folder", "resolved_source", "search", "verify_index"]
