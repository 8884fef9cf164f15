"""The embedding index: a LanceDB table of items with their embeddings, in a local folder or object storage.

An index is a LanceDB database (a folder, or an `s3://`, `gs://`, `az://` URI) holding:

- the table `items`: `id`, `path`, `row` (the dataset row, -1 for files), the item's key (`size`, `mtime_ns`,
  `digest`: the BLAKE2b of an image file or of a dataset row's stored image, that tell a changed one), for windows of
  scenes the scene columns of `scenes.py` (pixel window, `crs`, `scene_geometry`, `geometry`, and the window's
  longitude/latitude extent as `xmin`, `ymin`, `xmax`, `ymax`, which bbox prefilters read) and any other column a
  window record carries, and `embedding` (float32 (D,), L2-normalised). The model that made the embeddings (name,
  `model_type`, projection size, `model_fingerprint`) and the build options are the `embedding` column's metadata;
- the table `scenes` (windows of scenes only): each scene's key, so a re-run embeds a changed scene again;
- `failures.json` (local folders): the items of the latest build that could not be read (`id`, `path`, `reason`);
  the next build retries them.

A received index is checked when it is opened, before anything is read or written (`check_index_files`): its tables
may name only data files of their own `data/` folder, and a local index folder may hold no symlink (Lance would read,
write and clean up old versions through it, outside the index).

Builds upsert by `id` (`merge_insert`): every commit is a Lance version, so a killed build loses at most the batch
being written, and writers on several processes or machines commit into one table (Lance retries a commit that
conflicts with another writer's). Search is exact (`chunked_topk` over batches of the table: memory bounded by one
batch) below `ANN_MIN_ITEMS` items; above, an IVF-HNSW-SQ index (`build_ann`) answers, with filters as prefilters.

An index of the format before LanceDB (`index.json` + shards) is refused with the command that converts it,
`rclip-hf index migrate OLD NEW` (`migrate_index`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from transformers import CLIPModel

from .. import __version__
from ..errors import UserError
from ..images import printable_path
from ..loading import describe, model_fingerprint
from ..staging import replaced_file
from ..topk import chunked_topk, topk_lowest_index
from .stac import STAC_COLUMNS

INDEX_FORMAT = "rclip-hf-embedding-index"
INDEX_FORMAT_VERSION = 2
ITEMS_TABLE = "items"
SCENES_TABLE = "scenes"
FAILURES_FILE = "failures.json"
#: The manifest of an index of the format before LanceDB (version 1); `migrate_index` converts such an index.
OLD_MANIFEST_FILE = "index.json"
#: Key of the index's metadata (JSON) in the `embedding` column's field metadata.
METADATA_KEY = "rclip_hf"
#: Item-table columns that key an image file's content (bookkeeping of builds, not part of a hit)
KEY_COLUMNS = ("size", "mtime_ns", "digest")
#: The window's longitude/latitude extent, which bbox prefilters read; a hit shows them as its `bbox`.
BBOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")
#: Indexes with at least this many items get an ANN index when `ann="auto"` (benchmarks/search_scale.py).
ANN_MIN_ITEMS = 200_000
#: Items per IVF partition of the ANN index (benchmarks/search_scale.py, at 10M: sqrt(N) partitions of 3,162 items split
#: clusters across partitions and 32 probes found 0.853 of the exact top 10; partitions of 10,000 hold them whole).
ANN_PARTITION_ITEMS = 10_000
#: IVF partitions probed per query, HNSW candidates kept while searching a partition (ef; Lance needs at least
#: k x refine), and the refine factor (candidates re-scored exactly) of ANN search. At 10M, 2 probes found what 8
#: did, and ef 500 gave recall@10 0.997 where Lance's default gave 0.941 (benchmarks/search_scale.py).
ANN_NPROBES = 4
ANN_EF = 500
ANN_REFINE = 10
#: Items read per batch by exact search and the embedding scans.
SCAN_BATCH = 65536
#: Exact search keeps the embeddings of an index in memory (per table version) up to this size; a larger index is
#: read batch by batch for each search (benchmarks/search_scale.py: reading the table dominates a flat query).
EXACT_CACHE_BYTES = 512 * 2**20
#: Bytes of ANN index partitions a process keeps decoded in memory (Lance's default lets them grow toward the whole
#: ANN index: 6.5 GiB at 10M items, benchmarks/search_scale.py); evicted ones are read again from the table.
INDEX_CACHE_BYTES = 1536 * 2**20
#: Field metadata that makes a column the table's primary key: concurrent `merge_insert`s of one new key then
#: conflict (and Lance retries one of them) instead of both inserting it.
PRIMARY_KEY = {"lance-schema:unenforced-primary-key:position": "1"}
#: Ids per `id IN (...)` filter.
ID_BATCH = 1000
#: The names of the data files Lance writes into a table's `data/` folder; a table naming any other file is refused.
DATA_FILE_NAME = re.compile(r"[A-Za-z0-9_-]+\.lance")
#: The shard names of the format before LanceDB (`shard-<hex>`), the only files `migrate_index` reads.
OLD_SHARD_NAME = re.compile(r"shard-[A-Za-z0-9_-]+")

Backend = Literal["auto", "exact", "ann"]
logger = logging.getLogger(__name__)


class IndexModelMismatchError(UserError, ValueError):
    """Embeddings of one model are being mixed or compared with another model's; the message names both."""


class OldIndexFormatError(UserError):
    """An index of the format before LanceDB; the message names the command that converts it."""


@dataclass(frozen=True)
class ItemKey:
    """What identifies an item's image: for an image file its size, modification time (ns) and BLAKE2b digest; for
    a dataset row (`row_key`) the byte length and BLAKE2b digest of its stored image, mtime -1. -1/-1/"" is no key
    (dataset rows of indexes built before rows were keyed)."""

    size: int = -1
    mtime_ns: int = -1
    digest: str = ""


@dataclass(frozen=True)
class IndexEntry:
    """One item to store: id, path, dataset row (-1 for files), its `ItemKey` and embedding (D,)."""

    id: str
    path: str
    row: int
    key: ItemKey
    embedding: Tensor
    extra: dict[str, Any] = field(default_factory=dict)  # scene columns of a window (`scenes.py`)


def file_digest(path: str | Path) -> str:
    """BLAKE2b (32-byte) hex digest of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=32)).hexdigest()


def unstorable_name(path: str | Path) -> str:
    """Why the index cannot store the file `path`, shown readably ("" when it can): a name that is not valid UTF-8
    (an index stores ids and paths as UTF-8 text)."""
    if printable_path(path) == str(path):
        return ""
    return (f"{printable_path(path)}: the file name is not valid UTF-8 (an index stores names as UTF-8): rename the "
            "file to index it")


def file_key(file: Path, old: ItemKey | None) -> tuple[ItemKey | None, str]:
    """(key to store, "") for a file that is new or changed since its `old` key, (None, "") for one unchanged (same
    size and mtime, or same digest), (None, reason) when it cannot be read or its name cannot be stored."""
    if reason := unstorable_name(file):
        return None, reason
    try:
        stat = file.stat()
        if old is not None and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            return None, ""
        digest = file_digest(file)
    except OSError as error:
        return None, f"{file}: cannot read file: {error.strerror or error}"
    if old is not None and old.digest == digest:
        return None, ""  # touched, same content
    return ItemKey(stat.st_size, stat.st_mtime_ns, digest), ""


def row_key(cell: dict[str, Any] | None, old: ItemKey | None) -> tuple[ItemKey | None, str]:
    """(key to store, "") for a dataset row whose image is new or changed since its `old` key, (None, "") for one
    unchanged (same digest), (None, reason) when it has no image or its file cannot be read. The key of an
    undecoded image cell (`{"bytes", "path"}`) is the length and BLAKE2b digest of its bytes, or of its file for a
    path-only cell; the image is not decoded."""
    if not cell or (cell.get("bytes") is None and not cell.get("path")):
        return None, "the row has no image (empty cell)"
    if cell.get("bytes") is not None:
        data = cell["bytes"]
        key = ItemKey(len(data), -1, hashlib.blake2b(data, digest_size=32).hexdigest())
    else:
        try:
            key = ItemKey(Path(cell["path"]).stat().st_size, -1, file_digest(cell["path"]))
        except OSError as error:
            return None, f"{cell['path']}: cannot read file: {error.strerror or error}"
    return (None, "") if old is not None and old.digest == key.digest else (key, "")


# ----- storage --------------------------------------------------------------------------------------------------
def is_local(uri: str | Path) -> bool:
    """Whether `uri` is a local folder (not `scheme://...`)."""
    return "://" not in str(uri) or str(uri).startswith("file://")


def is_index_folder(folder: Path) -> bool:
    """Whether a local `folder` holds an index (of this format or the old one)."""
    return (any((folder / f"{table}.lance").is_dir() for table in (ITEMS_TABLE, SCENES_TABLE))
            or (folder / OLD_MANIFEST_FILE).is_file())  # scenes.lance is created first: an interrupted creation


def check_output_folder(uri: str) -> None:
    """Refuse a local output that exists and is not an index of ours: a file, or a folder holding other files (the
    user's files are never mixed with an index's)."""
    if not is_local(uri):
        return
    folder = Path(uri.removeprefix("file://"))
    if folder.is_file():
        raise UserError(uri, "a file, not an index folder", "give a new folder for the index")
    if folder.is_dir() and any(folder.iterdir()) and not is_index_folder(folder):
        raise UserError(uri, "an existing folder with files that are not an index's",
                        "give a new or empty folder, or an index made by `rclip-hf index`")


def check_prune(index: EmbeddingIndex, count: int, force: bool) -> None:
    """Refuse a prune of more than half of the index unless `force`."""
    if count * 2 > len(index) and not force:
        raise UserError("--prune", f"would remove {count} of the {len(index)} items of {index.uri}, more than half",
                        "check --source (a folder empty for a moment?), or pass --force to prune them")


def _table_uri(uri: str, table: str) -> str:
    return f"{uri.rstrip('/')}/{table}.lance"


def _links_under(folder: Path) -> Iterator[Path]:
    """The symlinks under `folder`, at any depth (none followed)."""
    pending = [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        yield Path(entry.path)
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
        except (FileNotFoundError, NotADirectoryError):  # removed by another writer's cleanup meanwhile
            continue


def refuse_index_links(uri: str) -> None:
    """Refuse a local index folder that holds a symlink, at any depth (one line naming it): Lance would read, write
    and delete old versions' files through a linked table folder or file, and a side file (`failures.json`) would be
    written through it, outside the index. Object storage has no links."""
    if not is_local(uri):
        return
    folder = Path(uri.removeprefix("file://"))
    for link in _links_under(folder):
        raise UserError(uri, f"{link.relative_to(folder)} is a symlink: the index would be read, written and "
                        "cleaned up through it, outside its folder",
                        "an index is never used through links: put the files themselves there or build it again")


def _refuse_outside_file(uri: str, table: str, name: str, why: str) -> UserError:
    return UserError(uri, f"table {table}.lance names {name!r}, {why}",
                     "a received index is never read outside its folder: build it again or restore it from its "
                     "maker")


def check_manifests(uri: str, storage_options: Mapping[str, str] | None = None,
                    tables: Sequence[str] = (ITEMS_TABLE, SCENES_TABLE)) -> None:
    """Refuse an index (local or object storage) whose `tables`' latest manifests name files outside them: storage
    registered besides the table (Lance's base paths), or a data or deletion file that is not a plain file name of the
    table's `data/` folder (as Lance writes them, `DATA_FILE_NAME`). Reads the manifests only, never the data; a
    table that is not there is skipped."""
    import lance

    for table in tables:
        table_uri = _table_uri(uri.removeprefix("file://") if is_local(uri) else uri, table)
        if is_local(uri) and not Path(table_uri).is_dir():
            continue
        try:
            dataset = lance.dataset(table_uri, storage_options=dict(storage_options or {}) or None)
        except ValueError as error:
            if "not found" in str(error).lower():
                continue  # no such table, or one whose creation was interrupted: opening the index says so
            raise storage_error(uri, error) from None
        except (OSError, RuntimeError) as error:
            raise storage_error(uri, error) from None
        with lance_errors(uri):
            bases = dataset.base_paths()
            fragments = [fragment.metadata for fragment in dataset.get_fragments()]
        for base in bases.values():
            raise _refuse_outside_file(uri, table, base.path, "storage outside the table (a base path)")
        for fragment in fragments:
            for data_file in [*fragment.files, *(overlay.data_file for overlay in fragment.overlays)]:
                if data_file.base_id is not None or not DATA_FILE_NAME.fullmatch(data_file.path):
                    raise _refuse_outside_file(uri, table, data_file.path, "not a data file of its data/ folder")
            if fragment.deletion_file is not None and fragment.deletion_file.base_id is not None:
                raise _refuse_outside_file(uri, table, f"deletion file of fragment {fragment.id}",
                                           "stored outside the table (a base path)")


def check_index_files(uri: str, storage_options: Mapping[str, str] | None = None) -> None:
    """Refuse an index that could make Lance or this module read, write or delete files outside it (one line naming
    the index and the link or file): `refuse_index_links` and `check_manifests`."""
    refuse_index_links(uri)
    check_manifests(uri, storage_options)


def _refuse_old_format(uri: str) -> None:
    if is_local(uri) and (Path(uri) / OLD_MANIFEST_FILE).is_file():
        raise OldIndexFormatError(uri, "an index of the format before LanceDB (index.json and shard files)",
                                  f"convert it once: rclip-hf index migrate {uri} NEW_INDEX")


#: Words of Lance's errors for a file of the index that is truncated, garbled or missing.
_DAMAGE_WORDS = ("corrupt", "invalid range", "too small", "outside file of size", "not found: /", "unexpected eof",
                 "failed to decode", "invalid manifest")


def storage_error(uri: str, error: Exception) -> UserError:
    """One line for a storage failure at `uri` (unreachable endpoint, missing credentials, denied access, a damaged
    index file: named when Lance names it...)."""
    text = re.sub(r",\s*\S+\.rs:\d+:\d+", "", " ".join(str(error).split()))  # Lance's Rust source lines
    lowered = text.lower()
    damaged_file = re.search(r"(?:\w+://)?/?[^\s,:]*\.(?:lance|manifest|txn|idx)\b", text)
    if "no space left" in lowered or "os error 28" in lowered:
        what = "no space left on device"
        fix = "free space on that disk or write elsewhere; re-run to resume: committed items are kept"
    elif any(word in lowered for word in ("credential", "accessdenied", "access denied", "forbidden", "403",
                                        "invalidaccesskeyid", "signature")):
        what = "access refused: missing or wrong credentials"
        fix = "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a profile), or pass --storage-option KEY=VALUE"
    elif any(word in lowered for word in ("connect", "dns", "timed out", "timeout", "unreachable", "refused",
                                          "error sending request", "nosuchbucket", "no such bucket")):
        what = "storage unreachable"
        fix = "check the URI, the endpoint (--storage-option endpoint=...) and the network; re-run to resume"
    elif any(word in lowered for word in _DAMAGE_WORDS):
        what = "the index is damaged" + (f": file {damaged_file[0]}" if damaged_file else "")
        fix = "restore the index from a copy, or build it again into a new --output (it cannot be resumed)"
    else:
        what = "storage failed"
        fix = "check the URI and --storage-option values; re-run to resume"
    return UserError(uri, f"{what} ({text[:300]})", fix)


@contextmanager
def lance_errors(uri: str) -> Iterator[None]:
    """Turn the errors of Lance reading or writing the index at `uri` (a damaged file, storage failures) into one
    line (`storage_error`); other errors pass."""
    try:
        yield
    except UserError:
        raise
    except (OSError, RuntimeError, ValueError) as error:
        text = str(error).lower()
        if "lance" not in text and not any(word in text for word in _DAMAGE_WORDS):
            raise
        raise storage_error(uri, error) from None


def _connect(uri: str, storage_options: Mapping[str, str] | None) -> Any:
    import lancedb

    return lancedb.connect(uri, storage_options=dict(storage_options or {}) or None, session=_session())


@functools.cache
def _session() -> Any:
    """This process's LanceDB session: its cache of ANN index partitions is bounded by `INDEX_CACHE_BYTES`."""
    import lancedb

    return lancedb.Session(index_cache_size_bytes=INDEX_CACHE_BYTES)


def _items_schema(dim: int, metadata: dict[str, Any]) -> Any:
    import pyarrow as pa

    embedding = pa.field("embedding", pa.list_(pa.float32(), dim),
                         metadata={METADATA_KEY: json.dumps(metadata)})
    return pa.schema([pa.field("id", pa.string(), nullable=False, metadata=PRIMARY_KEY), pa.field("path", pa.string()), pa.field("row", pa.int64()),
                      pa.field("size", pa.int64()), pa.field("mtime_ns", pa.int64()), pa.field("digest", pa.string()),
                      embedding])


def scene_schema() -> Any:
    """The scene columns of windows as they are stored (`window_record` gives them; bbox as four columns)."""
    import pyarrow as pa

    return pa.schema([pa.field(name, pa.int64()) for name in ("left", "top", "width", "height")]
                     + [pa.field("crs", pa.string()), pa.field("scene_geometry", pa.binary()),
                        pa.field("geometry", pa.binary())]
                     + [pa.field(name, pa.float64()) for name in BBOX_COLUMNS]
                     + [pa.field(name, pa.string()) for name in STAC_COLUMNS])


def _scenes_schema() -> Any:
    import pyarrow as pa

    return pa.schema([pa.field("scene", pa.string(), nullable=False, metadata=PRIMARY_KEY), pa.field("size", pa.int64()),
                      pa.field("mtime_ns", pa.int64()), pa.field("digest", pa.string())])


def _quoted(values: Iterable[str]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


class EmbeddingIndex:
    """An index: its LanceDB tables and metadata, its items in a stable order (positions), and search over them.

    Positions are the order of the items in the table's version this object reads; they stay the same until this
    object writes or `refresh`es."""

    def __init__(self, uri: str | Path, table: Any, storage_options: Mapping[str, str] | None = None):
        self.uri = str(uri)
        self.directory = Path(uri) if is_local(uri) else self.uri
        self.storage_options = dict(storage_options or {})
        self._table = table
        self._buffer: list[IndexEntry] = []
        self._cache: dict[tuple[int, str], Any] = {}

    # ----- opening and identity -------------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str | Path, storage_options: Mapping[str, str] | None = None) -> EmbeddingIndex:
        """Open an existing index; `FileNotFoundError` naming it when there is none, `OldIndexFormatError` for an
        index of the format before LanceDB."""
        uri = str(uri)
        _refuse_old_format(uri)
        if is_local(uri) and not (Path(uri.removeprefix("file://")) / f"{ITEMS_TABLE}.lance").is_dir():
            raise FileNotFoundError(f"no embedding index at {uri} (no table {ITEMS_TABLE!r})")  # nothing created
        check_index_files(uri, storage_options)
        try:
            db = _connect(uri, storage_options)
            table = db.open_table(ITEMS_TABLE)
        except ValueError as error:
            if "not found" in str(error) or "does not exist" in str(error):
                raise FileNotFoundError(f"no embedding index at {uri} (no table {ITEMS_TABLE!r})") from None
            raise storage_error(uri, error) from None
        except (OSError, RuntimeError) as error:
            raise storage_error(uri, error) from None
        index = cls(uri, table, storage_options)
        if index.metadata.get("format") != INDEX_FORMAT:
            raise UserError(uri, f"table {ITEMS_TABLE!r} is not an {INDEX_FORMAT} table",
                            "give an index made by `rclip-hf index`")
        return index

    @classmethod
    def open_or_create(cls, uri: str | Path, model: CLIPModel, source: str = "",
                       storage_options: Mapping[str, str] | None = None, scenes: bool = False) -> EmbeddingIndex:
        """Open the index at `uri` (checking it was made by `model`) or create an empty one there (with the scene
        columns of windows when `scenes`). Safe when several writers do it at once."""
        uri = str(uri)
        _refuse_old_format(uri)
        try:
            return cls._open_checked(uri, model, storage_options)
        except FileNotFoundError:
            check_output_folder(uri)
            refuse_index_links(uri)  # before creating the tables (an interrupted creation: scenes.lance only)
        import pyarrow as pa

        now = _now()
        metadata = {"format": INDEX_FORMAT, "version": INDEX_FORMAT_VERSION, **describe(model), "source": source,
                    "created": now, "rclip_hf_version": __version__}
        schema = _items_schema(model.config.projection_dim, metadata)
        if scenes:
            schema = pa.schema(list(schema)[:-1] + list(scene_schema()) + [schema.field("embedding")])
        try:
            db = _connect(uri, storage_options)
            db.create_table(SCENES_TABLE, schema=_scenes_schema(), exist_ok=True)
            db.create_table(ITEMS_TABLE, schema=schema, exist_ok=True)
        except (OSError, RuntimeError, ValueError) as error:
            raise storage_error(uri, error) from None
        return cls._open_checked(uri, model, storage_options)  # another writer may have created it first

    @classmethod
    def _open_checked(cls, uri: str, model: CLIPModel, storage_options: Mapping[str, str] | None) -> EmbeddingIndex:
        index = cls.open(uri, storage_options)
        index.check_model(model)
        return index

    def open_table(self, name: str, schema: Any | None = None) -> Any | None:
        """The LanceDB table `name` kept in the index's database beside its items (e.g. explore's labels), opened
        with the index's storage options; where there is none, an empty one made with `schema` (None without one).
        The index's own tables are not given out."""
        if name in (ITEMS_TABLE, SCENES_TABLE):
            raise ValueError(f"table {name!r} is the index's own: use the EmbeddingIndex's methods")
        check_manifests(self.uri, self.storage_options, tables=(name,))  # received with the index: names nothing outside
        try:
            db = _connect(self.uri, self.storage_options)
            try:
                return db.open_table(name)
            except ValueError as error:
                if "not found" not in str(error) and "does not exist" not in str(error):
                    raise
            return None if schema is None else db.create_table(name, schema=schema, exist_ok=True)
        except (OSError, RuntimeError, ValueError) as error:
            raise storage_error(self.uri, error) from None

    @property
    def metadata(self) -> dict[str, Any]:
        """The index's metadata: format, model (name, `model_type`, `projection_dim`, `fingerprint`), source,
        creation time, and build options (`windows` for windows of scenes)."""
        field_metadata = self._table.schema.field("embedding").metadata or {}
        return json.loads(field_metadata.get(METADATA_KEY.encode(), b"{}"))

    @property
    def bands(self) -> list[int] | None:
        """The bands (1-based) the index's scene windows were read with (`index --window --bands`); None: the
        default (colour interpretation)."""
        return (self.metadata.get("windows") or {}).get("bands")

    @property
    def manifest(self) -> dict[str, Any]:
        """Read-only view in the shape of the format before LanceDB's `index.json`: the metadata (model, `windows`)
        and `scenes` (scene -> its key as a dict); writes go through `update_metadata` and `record_scenes`."""
        return {**self.metadata, "scenes": {scene: asdict(key) for scene, key in self.scene_keys().items()}}

    def check_sources(self, sources: Sequence[str], add: bool = False) -> None:
        """Remember the index's sources (resolved paths or URLs); a source it was not built from is refused (one
        line naming it) unless `add`."""
        remembered = list(self.metadata.get("sources") or [])
        new = [source for source in dict.fromkeys(sources) if source not in remembered]
        if not new:
            return
        if remembered and not add:
            raise UserError(f"--source {new[0]}", f"the index at {self.uri} was built from {', '.join(remembered)}",
                            "pass --add-source to add this source to it, or build into a new --output")
        self.update_metadata(sources=remembered + new)

    def update_metadata(self, **values: Any) -> None:
        """Set entries of the index's metadata (one commit)."""
        for attempt in range(8):
            metadata = self.metadata
            if all(metadata.get(key) == value for key, value in values.items()):
                return
            try:
                self._table.update_field_metadata(
                    {"path": "embedding", "metadata": {METADATA_KEY: json.dumps({**metadata, **values})}})
                break
            except (OSError, RuntimeError) as error:  # another writer committed first: read its version, again
                if attempt == 7 or not any(word in str(error).lower() for word in ("conflict", "incompatible")):
                    raise storage_error(self.uri, error) from None
                self._table.checkout_latest()
        self._cache.clear()

    def check_model(self, model: CLIPModel) -> None:
        """Raise `IndexModelMismatchError` unless `model` is the model whose embeddings the index holds."""
        fingerprint = model_fingerprint(model)
        metadata = self.metadata
        if fingerprint != metadata["fingerprint"]:
            raise IndexModelMismatchError(
                f"the index at {self.uri} holds embeddings of model {metadata['model']!r} "
                f"(fingerprint {metadata['fingerprint'][:12]}), but the given model "
                f"{getattr(model, 'name_or_path', '') or '<in memory>'!r} has fingerprint {fingerprint[:12]}: "
                "embeddings of different models cannot be mixed or compared; use the index's model or a new folder"
            )

    def refresh(self) -> None:
        """Read the table's latest version (other writers' commits); positions may change."""
        with lance_errors(self.uri):
            self._table.checkout_latest()
        self._cache.clear()

    def __len__(self) -> int:
        return self._cached("count", self._table.count_rows)

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return int(self.metadata["projection_dim"])

    @property
    def column_names(self) -> list[str]:
        """The item table's columns."""
        return self._table.schema.names

    # ----- reading ---------------------------------------------------------------------------------------------
    def _cached(self, name: str, read: Any) -> Any:
        key = (self._table.version, name)
        if key not in self._cache:
            with lance_errors(self.uri):
                self._cache[key] = read()
        return self._cache[key]

    def _scan(self, columns: Sequence[str], where: str | None = None) -> Any:
        query = self._table.search().select(list(columns)).limit(None)
        with lance_errors(self.uri):
            return (query.where(where) if where else query).to_arrow()

    def shard_embeddings(self, batch_size: int = SCAN_BATCH) -> Iterator[tuple[int, Tensor]]:
        """(offset of the batch's first item, embeddings (n, D) float32), one batch in memory at a time, in
        position order."""
        offset, dim = 0, self.dim
        with lance_errors(self.uri):
            # Lance's scanner reading one batch ahead: a LanceDB query reads ahead without bound (at 1M items
            # hundreds of MiB more, benchmarks/explore.py)
            batches = iter(self._table.to_lance().to_batches(columns=["embedding"], batch_size=batch_size,
                                                            batch_readahead=1, fragment_readahead=1))
            while (batch := next(batches, None)) is not None:
                if batch.num_rows == 0:
                    continue
                embeddings = _embedding_tensor(batch.column("embedding"), dim)
                yield offset, embeddings
                offset += len(embeddings)

    def ids(self) -> list[str]:
        """All item ids, in position order."""
        return self.column("id")

    def positions_of(self) -> Mapping[str, int]:
        """Id -> position of every item (a read-only mapping kept as arrays, `IdPositions`)."""
        from .positions import IdPositions

        return self._cached("positions", lambda: IdPositions(self.arrow_column("id")))

    def column(self, name: str) -> list[Any]:
        """One column of the item table, in position order (None where the table lacks it; `bbox` is the dict of
        the window's longitude/latitude extent, as in a hit)."""
        def read() -> list[Any]:
            if name == "bbox":
                return _bboxes(self._scan(BBOX_COLUMNS)) if "xmin" in self.column_names else [None] * len(self)
            if name not in self.column_names:
                return [None] * len(self)
            return self._scan([name]).column(name).to_pylist()

        return self._cached(f"column:{name}", read)

    def arrow_column(self, name: str) -> Any:
        """One column of the item table as a pyarrow ChunkedArray, in position order; not cached (for callers that
        keep a compact copy of their own, such as codes of the `path` column)."""
        return self._scan([name]).column(name)

    def numeric_column(self, name: str) -> Any:
        """A numeric column as a float64 numpy array (NaN for nulls), in position order."""
        import numpy as np

        return self._cached(f"numeric:{name}", lambda: np.asarray(
            self._scan([name]).column(name).to_numpy(zero_copy_only=False), dtype=np.float64))

    def bbox_mask(self, box: Sequence[float]) -> Tensor:
        """Bool (N,): the items whose longitude/latitude extent meets `box` (minx, miny, maxx, maxy in
        longitude/latitude; touching counts); none for an index without extents."""
        if "xmin" not in self.column_names:
            return torch.zeros(len(self), dtype=torch.bool)
        xmin, ymin, xmax, ymax = (self.numeric_column(name) for name in BBOX_COLUMNS)  # NaN: not georeferenced
        return torch.from_numpy((xmin <= box[2]) & (xmax >= box[0]) & (ymin <= box[3]) & (ymax >= box[1]))

    def embeddings_of(self, ids: Sequence[str]) -> Tensor:
        """Embeddings (n, D) of the items with the given ids; `KeyError` naming an id that is not in the index."""
        found: dict[str, Tensor] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), ID_BATCH):
            table = self._scan(["id", "embedding"], f"id IN ({_quoted(wanted[start:start + ID_BATCH])})")
            found.update(zip(table.column("id").to_pylist(), _embedding_tensor(table.column("embedding"), self.dim)))
        missing = [item_id for item_id in ids if item_id not in found]
        if missing:
            raise KeyError(f"no item with id {missing[0]!r} in the index at {self.uri}")
        return torch.stack([found[item_id] for item_id in ids]) if ids else torch.empty(0, self.dim)

    def items(self, positions: Iterable[int]) -> list[dict[str, Any]]:
        """The item-table row (`id`, `path`, `row`, and any scene columns with the extent as `bbox`; not the file
        keys nor the embedding) of the items at the given positions."""
        positions = list(positions)
        size = len(self)
        for position in positions:
            if not 0 <= position < size:
                raise IndexError(f"position {position} is outside the index at {self.uri} ({size} items)")
        if not positions:
            return []
        columns = [name for name in self.column_names if name not in (*KEY_COLUMNS, "embedding")]
        unique = sorted(set(positions))  # take_offsets gives rows in position order
        with lance_errors(self.uri):
            rows = dict(zip(unique, self._table.take_offsets(unique).select(columns).to_arrow().to_pylist()))
        return [_hit_row(dict(rows[position])) for position in positions]

    # ----- writing ---------------------------------------------------------------------------------------------
    def item_keys(self) -> dict[str, ItemKey]:
        """Id -> `ItemKey` of every item."""
        table = self._scan(["id", *KEY_COLUMNS])
        return {item_id: ItemKey(size, mtime_ns, digest or "") for item_id, size, mtime_ns, digest in zip(
            *(table.column(name).to_pylist() for name in ("id", *KEY_COLUMNS)))}

    def add(self, ids: Sequence[str], paths: Sequence[str], rows: Sequence[int], embeddings: Tensor,
            keys: Sequence[ItemKey] | None = None, extra: Sequence[dict[str, Any]] | None = None) -> None:
        """Queue items with their embeddings (n, D), file keys and optional extra item-table columns (one dict per
        item: the scene columns of windows); nothing is stored until `commit`."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or embeddings.shape[0] != len(ids):
            raise ValueError(f"add: expected embeddings ({len(ids)}, {self.dim}), got {tuple(embeddings.shape)}")
        keys = keys if keys is not None else [ItemKey()] * len(ids)
        extra = extra if extra is not None else [{}] * len(ids)
        self._buffer.extend(IndexEntry(*fields)
                            for fields in zip(ids, paths, rows, keys, embeddings.float().cpu(), extra))

    @property
    def queued(self) -> int:
        """Items added since the last `commit`."""
        return len(self._buffer)

    def commit(self, remove: Iterable[str] = (), rekey: Mapping[str, ItemKey] | None = None) -> None:
        """Upsert the queued items by id, delete the items with ids in `remove` and give the items with ids in
        `rekey` those keys (their embeddings kept): one commit (a Lance version) when only items are added or
        replaced; Lance retries it when another writer committed first."""
        remove = set(remove) - {entry.id for entry in self._buffer}
        if not self._buffer and not rekey and not remove:
            return
        for attempt in range(3):
            try:
                self._write(remove, rekey)
                break
            except (OSError, RuntimeError, ValueError) as error:
                if attempt < 2 and "schema" in str(error).lower():  # another writer changed the schema first
                    self._table.checkout_latest()
                    continue
                raise storage_error(self.uri, error) from None
        self._buffer = []
        self._cache.clear()

    def _write(self, remove: set[str], rekey: Mapping[str, ItemKey] | None) -> None:
        rows = self._entry_table(self._buffer) if self._buffer else None
        if rekey:
            rekeyed = self._rekeyed(rekey)
            rows = rekeyed if rows is None else _concat(rows, rekeyed)
        if rows is not None:
            builder = self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
            if remove:
                builder = builder.when_not_matched_by_source_delete(f"id IN ({_quoted(sorted(remove))})")
            builder.execute(rows)
            return
        ordered = sorted(remove)
        for start in range(0, len(ordered), ID_BATCH):
            self._table.delete(f"id IN ({_quoted(ordered[start:start + ID_BATCH])})")

    def _entry_table(self, entries: Sequence[IndexEntry]) -> Any:
        """The rows (pyarrow, in the table's schema) of queued entries; columns of their extras that the table does
        not have yet are added to it (null for the items already there)."""
        import pyarrow as pa

        records = [dict(entry.extra) for entry in entries]
        for record in records:
            if "bbox" in record:
                box = record.pop("bbox")
                record.update(zip(BBOX_COLUMNS, [box[name] for name in BBOX_COLUMNS] if box else [None] * 4))
        self._add_columns(records)
        schema = self._table.schema
        data = {"id": [entry.id for entry in entries], "path": [entry.path for entry in entries],
                "row": [entry.row for entry in entries], "size": [entry.key.size for entry in entries],
                "mtime_ns": [entry.key.mtime_ns for entry in entries],
                "digest": [entry.key.digest for entry in entries]}
        arrays = []
        for column in schema:
            if column.name == "embedding":
                values = torch.stack([entry.embedding for entry in entries]).float().numpy().reshape(-1)
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), self.dim))
            else:
                values = data[column.name] if column.name in data else [record.get(column.name) for record in records]
                arrays.append(pa.array(values, column.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def _add_columns(self, records: Sequence[dict[str, Any]]) -> None:
        """Add the columns of `records` that the table lacks (typed by their values; strings when all null)."""
        import pyarrow as pa

        names = self.column_names
        new = sorted({name for record in records for name in record} - set(names))
        if not new:
            return
        fields = []
        for name in new:
            kind = pa.array([record.get(name) for record in records]).type
            fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
        try:
            self._table.add_columns(fields)
        except (OSError, RuntimeError, ValueError):
            self._table.checkout_latest()  # another writer added them first
            if set(new) - set(self.column_names):
                raise

    def _rekeyed(self, keys: Mapping[str, ItemKey]) -> Any:
        """The stored rows of the items with ids in `keys`, with those keys."""
        import pyarrow as pa

        wanted = sorted(keys)
        tables = [self._scan(self.column_names, f"id IN ({_quoted(wanted[start:start + ID_BATCH])})")
                  for start in range(0, len(wanted), ID_BATCH)]
        table = pa.concat_tables(tables).cast(self._table.schema)
        ids = table.column("id").to_pylist()
        for name in KEY_COLUMNS:
            values = pa.array([getattr(keys[item_id], name) for item_id in ids], table.schema.field(name).type)
            table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), values)
        return table

    # ----- scenes ----------------------------------------------------------------------------------------------
    def _scenes_table(self) -> Any:
        return _connect(self.uri, self.storage_options).open_table(SCENES_TABLE)

    def scene_keys(self) -> dict[str, ItemKey]:
        """Scene -> its recorded key (windows of scenes)."""
        with lance_errors(self.uri):
            table = self._scenes_table().to_arrow()
        return {scene: ItemKey(size, mtime_ns, digest) for scene, size, mtime_ns, digest in zip(
            *(table.column(name).to_pylist() for name in ("scene", *KEY_COLUMNS)))}

    def record_scenes(self, keys: Mapping[str, ItemKey], remove: Iterable[str] = ()) -> None:
        """Record the keys of scenes (upsert) and forget the scenes in `remove`."""
        import pyarrow as pa

        remove = sorted(set(remove) - set(keys))
        with lance_errors(self.uri):
            table = self._scenes_table()
            if keys:
                rows = pa.table({"scene": list(keys), **{name: [getattr(key, name) for key in keys.values()]
                                                          for name in KEY_COLUMNS}}, schema=_scenes_schema())
                table.merge_insert("scene").when_matched_update_all().when_not_matched_insert_all().execute(rows)
            for start in range(0, len(remove), ID_BATCH):
                table.delete(f"scene IN ({_quoted(remove[start:start + ID_BATCH])})")

    # ----- checking --------------------------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Problems of the index (repeated ids, embeddings of the wrong size, not finite or not unit length,
        missing metadata); empty when the index is sound."""
        problems = []
        for name in ("fingerprint", "projection_dim", "model"):
            if name not in self.metadata:
                problems.append(f"the index's metadata lacks {name!r}")
        ids = self.ids()
        if len(ids) != len(self):
            problems.append(f"{len(ids)} ids read, the table counts {len(self)} items")
        if len(set(ids)) != len(ids):
            repeated = sorted({item_id for item_id in ids if ids.count(item_id) > 1})[:3]
            problems.append(f"item ids stored twice, e.g. {repeated}")
        for offset, embeddings in self.shard_embeddings():
            norms = embeddings.norm(dim=1)
            bad = (~torch.isfinite(norms)) | ((norms - 1).abs() > 1e-3)
            if bad.any():
                first = offset + int(bad.nonzero()[0])
                problems.append(f"item {ids[first]!r}: its embedding is not finite and L2-normalised")
                break
        return problems

    # ----- ANN -------------------------------------------------------------------------------------------------
    def build_ann(self, num_partitions: int | None = None) -> None:
        """Build the IVF-HNSW-SQ index of the embeddings (inner product; `num_partitions` defaults to one per
        `ANN_PARTITION_ITEMS` items; chosen over IVF-PQ by recall, benchmarks/search_scale.py); items added later are
        still found (searched exactly until the index is built again)."""
        from lancedb.index import HnswSq

        if len(self) == 0:
            raise ValueError(f"the index at {self.uri} is empty: nothing to build an ANN index of")
        num_partitions = num_partitions or max(1, round(len(self) / ANN_PARTITION_ITEMS))
        self._table.create_index("embedding", config=HnswSq(distance_type="dot", num_partitions=num_partitions),
                                 replace=True)
        self._cache.clear()

    def has_ann(self) -> bool:
        """Whether the embeddings have an ANN index."""
        return self._cached("ann", lambda: any("embedding" in index.columns for index in self._table.list_indices()))

    # ----- search ----------------------------------------------------------------------------------------------
    def search_embeddings(self, queries: Tensor, k: int, backend: Backend = "auto", chunk_size: int = 4096,
                          allowed: Tensor | None = None, where: str | None = None, nprobes: int = ANN_NPROBES,
                          ef: int = ANN_EF, refine: int = ANN_REFINE) -> tuple[Tensor, Tensor]:
        """Top-`k` (scores (Q, k), positions (Q, k) int64) of L2-normalised `queries` (Q, D), best first.

        Exact search scores the items `allowed` (bool (N,); None: all), ties to the lower position; `k` is at most
        their number. ANN search (`backend="ann"`, or "auto" when the index has one) keeps the items that pass the
        SQL filter `where` (a prefilter, applied before the search) and may find fewer than `k` items: its missing
        hits have position -1."""
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}), got {tuple(queries.shape)}")
        if backend not in ("auto", "exact", "ann"):
            raise ValueError(f"backend={backend!r}; choose 'auto', 'exact' or 'ann'")
        available = len(self) if allowed is None else int(allowed.sum())
        if not 1 <= k <= available:
            raise ValueError(f"k={k} must be in [1, {available}] (items in the index at {self.uri}"
                             f"{'' if allowed is None else ' that pass the filter'})")
        if backend == "ann" and not self.has_ann():
            raise ValueError(f"the index at {self.uri} has no ANN index: build it with `rclip-hf index "
                             "--build-ann yes` (EmbeddingIndex.build_ann()) or use backend='exact'")
        # a prefilter that leaves few items is answered exactly: reading them is cheaper than probing the ANN index
        if backend == "ann" or (backend == "auto" and self.has_ann() and available >= ANN_MIN_ITEMS):
            return self._search_ann(queries, k, where, nprobes, ef, refine)
        queries = queries.float().cpu()
        batch_scores, batch_positions = [], []  # per batch: (Q, <=k) best of that batch
        for local, embeddings in self._exact_batches(allowed):
            if len(local) == 0:
                continue
            scores, positions = chunked_topk(queries, embeddings, min(k, len(embeddings)), chunk_size=chunk_size)
            batch_scores.append(scores)
            batch_positions.append(local[positions])
        # Batches come in position order, so "lower column first" among ties is "lower position first".
        scores, columns = topk_lowest_index(torch.cat(batch_scores, dim=1), k)  # (Q, k)
        return scores, torch.cat(batch_positions, dim=1).gather(1, columns)

    def _exact_batches(self, allowed: Tensor | None) -> Iterator[tuple[Tensor, Tensor]]:
        """(positions (n,), embeddings (n, D)) of the `allowed` items (None: all), in position order: from memory
        for an index up to `EXACT_CACHE_BYTES`, else read batch by batch (only the allowed rows when a filter
        leaves fewer than a tenth of them)."""
        if len(self) * self.dim * 4 <= EXACT_CACHE_BYTES:
            embeddings = self._cached("embeddings", lambda: torch.cat(
                [batch for _, batch in self.shard_embeddings()] or [torch.empty(0, self.dim)]))
            positions = torch.arange(len(embeddings)) if allowed is None else allowed.nonzero().flatten()
            yield positions, embeddings if allowed is None else embeddings[positions]
        elif allowed is not None and int(allowed.sum()) * 10 < len(self):
            wanted = allowed.nonzero().flatten()
            for start in range(0, len(wanted), SCAN_BATCH):
                positions = wanted[start:start + SCAN_BATCH]
                with lance_errors(self.uri):
                    table = self._table.take_offsets(positions.tolist()).select(["embedding"]).to_arrow()
                yield positions, _embedding_tensor(table.column("embedding"), self.dim)
        else:
            for offset, embeddings in self.shard_embeddings():
                positions = torch.arange(offset, offset + len(embeddings))
                if allowed is not None:
                    positions = positions[allowed[offset : offset + len(embeddings)]]
                    embeddings = embeddings[positions - offset]
                yield positions, embeddings

    def _search_ann(self, queries: Tensor, k: int, where: str | None, nprobes: int, ef: int,
                    refine: int) -> tuple[Tensor, Tensor]:
        positions_of = self.positions_of()
        scores = torch.full((len(queries), k), float("nan"))
        positions = torch.full((len(queries), k), -1, dtype=torch.long)
        for i, query in enumerate(queries.float().cpu().numpy()):
            search = (self._table.search(query, vector_column_name="embedding").metric("dot").nprobes(nprobes)
                      .ef(max(ef, k * refine)).refine_factor(refine).select(["id", "_distance"]).limit(k))
            if where:
                search = search.where(where, prefilter=True)
            with lance_errors(self.uri):
                hits = search.to_arrow()
            found = [positions_of[item_id] for item_id in hits.column("id").to_pylist()]
            scores[i, :len(found)] = -torch.tensor(hits.column("_distance").to_pylist())  # dot distance is 1 - ip
            scores[i, :len(found)] += 1
            positions[i, :len(found)] = torch.tensor(found, dtype=torch.long)
        return scores, positions

    # ----- export ----------------------------------------------------------------------------------------------
    def export(self, path: str | Path) -> int:
        """Write the item table (without embeddings) as GeoParquet 1.1 (the scene columns, with a `bbox` covering
        column, when the index holds windows); returns the number of items written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .geo import scene_columns

        names = [name for name in self.column_names if name != "embedding"]
        table = self._scan(names)
        if "xmin" in names:
            records = table.select([name for name in names if name in scene_schema().names]).to_pylist()
            for record in records:
                box = [record.pop(name) for name in BBOX_COLUMNS]
                record["bbox"] = None if box[0] is None else dict(zip(BBOX_COLUMNS, box))
            base = table.select([name for name in names if name not in scene_schema().names])
            table = scene_columns(base, records)
        metadata = {**(table.schema.metadata or {}), METADATA_KEY.encode(): json.dumps(self.metadata).encode()}
        with replaced_file(path) as file:
            pq.write_table(table.replace_schema_metadata(metadata), file)
        return table.num_rows if isinstance(table, pa.Table) else len(table)


def _embedding_tensor(column: Any, dim: int) -> Tensor:
    """(n, D) float32 tensor of a fixed-size-list embedding column (pyarrow)."""
    import numpy as np

    chunks = column.chunks if hasattr(column, "chunks") else [column]
    arrays = [chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) for chunk in chunks if len(chunk)]
    if not arrays:
        return torch.empty(0, dim)
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(arrays), dtype=np.float32))


def _bboxes(table: Any) -> list[dict[str, float] | None]:
    return [None if values[0] is None else dict(zip(BBOX_COLUMNS, values))
            for values in zip(*(table.column(name).to_pylist() for name in BBOX_COLUMNS))]


def _hit_row(row: dict[str, Any]) -> dict[str, Any]:
    """An item-table row as a hit shows it: the extent columns as `bbox`."""
    if "xmin" not in row:
        return row
    box = [row.pop(name) for name in BBOX_COLUMNS]
    row["bbox"] = None if box[0] is None else dict(zip(BBOX_COLUMNS, box))
    return row


def _concat(a: Any, b: Any) -> Any:
    import pyarrow as pa

    return pa.concat_tables([a, b.cast(a.schema)])


# ----- migration ------------------------------------------------------------------------------------------------
def migrate_index(old: str | Path, new: str | Path, storage_options: Mapping[str, str] | None = None) -> int:
    """Convert an index of the format before LanceDB (`index.json` + safetensors/Parquet shards) at the local
    folder `old` into a new index at `new` (refused when one is there); returns the number of items."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors import safe_open

    old = Path(old)
    manifest_path = old / OLD_MANIFEST_FILE
    if not manifest_path.is_file():
        raise UserError(str(old), f"no {OLD_MANIFEST_FILE}: not an index of the format before LanceDB")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as error:
        raise UserError(str(manifest_path), f"not valid JSON ({error})") from None
    if manifest.get("format") != INDEX_FORMAT or manifest.get("version") != 1:
        raise UserError(str(manifest_path), f"not an {INDEX_FORMAT} v1 manifest")
    try:
        EmbeddingIndex.open(new, storage_options)
    except FileNotFoundError:
        if is_local(new) and is_index_folder(Path(str(new).removeprefix("file://"))):
            raise UserError(str(new), "part of an index is already there",
                            "give a new folder or URI to migrate into") from None
        check_output_folder(str(new))
    else:
        raise UserError(str(new), "an index is already there", "give a new folder or URI to migrate into")
    for shard in manifest.get("shards") or []:
        name = str(shard.get("name") if isinstance(shard, dict) else shard)
        files = [old / f"{name}{suffix}" for suffix in (".safetensors", ".parquet")]
        if not OLD_SHARD_NAME.fullmatch(name) or not all(file.resolve().is_relative_to(old.resolve())
                                                         for file in files):  # a symlink out
            raise UserError(str(manifest_path), f"names the shard {name!r}, not a shard file of its folder",
                            "a received index is never read outside its folder")
    windows = "windows" in manifest
    metadata = {key: manifest[key] for key in ("model", "model_type", "projection_dim", "fingerprint", "source",
                                               "created") if key in manifest}
    metadata.update(format=INDEX_FORMAT, version=INDEX_FORMAT_VERSION, rclip_hf_version=__version__,
                    migrated_from=str(old))
    if windows:
        metadata["windows"] = manifest["windows"]
    schema = _items_schema(int(manifest["projection_dim"]), metadata)
    if windows:
        schema = pa.schema(list(schema)[:-1] + list(scene_schema()) + [schema.field("embedding")])
    db = _connect(str(new), storage_options)
    scenes = db.create_table(SCENES_TABLE, schema=_scenes_schema())
    table = db.create_table(ITEMS_TABLE, schema=schema)
    dim = int(manifest["projection_dim"])
    for shard in manifest["shards"]:
        with safe_open(old / f"{shard['name']}.safetensors", framework="pt") as handle:
            embeddings = handle.get_tensor("embeddings").float()
        items = pq.read_table(old / f"{shard['name']}.parquet")
        columns = {}
        for column in schema:
            if column.name == "embedding":
                columns[column.name] = pa.FixedSizeListArray.from_arrays(
                    pa.array(embeddings.numpy().reshape(-1), pa.float32()), dim)
            elif column.name in BBOX_COLUMNS and "bbox" in items.column_names:
                boxes = items.column("bbox").to_pylist()
                columns[column.name] = pa.array([None if box is None else box[column.name] for box in boxes],
                                                column.type)
            elif column.name in items.column_names:
                columns[column.name] = items.column(column.name).cast(column.type)
            else:
                default = {"size": -1, "mtime_ns": -1, "digest": ""}.get(column.name)
                columns[column.name] = pa.array([default] * items.num_rows, column.type)
        table.add(pa.table(columns, schema=schema))
    if manifest.get("scenes"):
        keys = manifest["scenes"]
        scenes.add(pa.table({"scene": list(keys), **{name: [key[name] for key in keys.values()]
                                                     for name in KEY_COLUMNS}}, schema=_scenes_schema()))
    return table.count_rows()


def write_failures(index: EmbeddingIndex, failures: Sequence[dict[str, str]]) -> str | None:
    """Write the failures of a build next to a local index (`failures.json`); returns its path (None for an index in
    object storage: the build's report lists them)."""
    if not is_local(index.uri):
        return None
    path = Path(index.uri) / FAILURES_FILE
    with replaced_file(path) as file:
        file.write(json.dumps(list(failures), indent=2).encode())
    return str(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = ["ANN_MIN_ITEMS", "BBOX_COLUMNS", "FAILURES_FILE", "INDEX_FORMAT", "INDEX_FORMAT_VERSION", "ITEMS_TABLE",
           "OLD_MANIFEST_FILE", "Backend", "EmbeddingIndex", "IndexEntry", "IndexModelMismatchError", "ItemKey",
           "OldIndexFormatError", "check_index_files", "check_manifests", "check_output_folder", "check_prune", "file_digest", "file_key", "is_index_folder", "is_local", "lance_errors", "migrate_index",
           "refuse_index_links", "row_key", "scene_schema", "storage_error", "unstorable_name", "write_failures"]

