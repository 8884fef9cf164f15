"""The on-disk embedding index format and its search: shards of embeddings + item tables, and FAISS.

Layout of an index folder (all files written atomically, so an interrupted build resumes cleanly):

- `index.json`: format version, the model that made the embeddings (name, `model_type`, projection size and
  `model_fingerprint`), the source, the shards (name, size, BLAKE2b digests of both files), and the FAISS file
  when there is one. It is the one commit point: a shard not listed there does not exist (files left by a killed
  build are removed by the next one);
- `shard-<random>.safetensors` (`embeddings`, float32 (n, D), L2-normalised) + `shard-<random>.parquet` (`id`,
  `path`, `row`, `size`, `mtime_ns`, `digest` — the BLAKE2b of an image file or of a dataset row's stored image,
  that tell a changed one —
  and for windows of scenes the columns of `scenes.py`, as GeoParquet): at most `shard_size` items each, committed
  as the build goes; random names never collide;
- `index.lock`: held (an exclusive `flock`) by the process writing the index, with its PID and start time;
- `parts/` (many-process scene builds only): the processes' part indexes, merged into the index when all are done;
- `failures.json`: the items of the latest build that could not be read (`id`, `path`, `reason`); they are
  retried by the next build;
- `faiss.index` (optional): an inverted-file FAISS index over all shards for large indexes.

Search is exact by default (`chunked_topk` shard by shard: memory bounded by one shard, not the archive) and uses
the FAISS file (approximate, much faster on millions of items) when it exists and is up to date.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from transformers import CLIPModel

from .. import __version__
from ..errors import UserError
from ..loading import describe, model_fingerprint
from ..topk import chunked_topk, topk_lowest_index

INDEX_FORMAT = "rclip-hf-embedding-index"
INDEX_FORMAT_VERSION = 1
MANIFEST_FILE = "index.json"
FAILURES_FILE = "failures.json"
FAISS_FILE = "faiss.index"
LOCK_FILE = "index.lock"
SHARD_PREFIX = "shard-"
#: Item-table columns that key an image file's content (bookkeeping of builds, not part of a hit)
KEY_COLUMNS = ("size", "mtime_ns", "digest")
#: Indexes with at least this many items get a FAISS file when `faiss="auto"` and faiss is installed.
FAISS_MIN_ITEMS = 100_000
#: Inverted lists probed per query by the FAISS backend (of `nlist` ~ sqrt(N)).
FAISS_NPROBE = 32

Backend = Literal["auto", "exact", "faiss"]


class IndexModelMismatchError(UserError, ValueError):
    """Embeddings of one model are being mixed or compared with another model's; the message names both."""


class IndexBusyError(UserError):
    """Another process is writing the index; the message names its PID and since when."""


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


@contextmanager
def index_lock(directory: str | Path, wait: bool = False) -> Iterator[None]:
    """Hold the index's `index.lock` while writing: an exclusive `flock`, released by the kernel even when the
    holder is killed. With `wait`, queue behind the holder; else `IndexBusyError` names it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_FILE).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise IndexBusyError(str(directory), f"index in use by {holder}",
                                 "wait until it is done, or pass --wait to queue behind it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} since {_now()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_digest(path: str | Path) -> str:
    """BLAKE2b (32-byte) hex digest of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=32)).hexdigest()


def file_key(file: Path, old: ItemKey | None) -> tuple[ItemKey | None, str]:
    """(key to store, "") for a file that is new or changed since its `old` key, (None, "") for one unchanged (same
    size and mtime, or same digest), (None, reason) when it cannot be read."""
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


class EmbeddingIndex:
    """An index folder: its manifest, shard-by-shard embeddings and item table, and search over them."""

    def __init__(self, directory: str | Path, manifest: dict[str, Any]):
        self.directory = Path(directory)
        self.manifest = manifest
        self._buffer: list[IndexEntry] = []

    # ----- opening and identity -------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | Path) -> EmbeddingIndex:
        """Open an existing index folder; raises `FileNotFoundError` / `ValueError` naming the folder."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no embedding index at {directory} ({MANIFEST_FILE} not found)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as error:
            raise ValueError(f"{manifest_path}: not valid JSON ({error}); the index is damaged: build it again "
                             "into a new folder") from None
        if (not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT
                or manifest.get("version") != INDEX_FORMAT_VERSION):
            raise ValueError(f"{manifest_path} is not an {INDEX_FORMAT} v{INDEX_FORMAT_VERSION} manifest "
                             f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})")
        return cls(directory, manifest)

    @classmethod
    def open_or_create(cls, directory: str | Path, model: CLIPModel, source: str = "") -> EmbeddingIndex:
        """Open the index at `directory` (checking it was made by `model`) or start an empty one there. Call it
        holding `index_lock`: files of a killed build that the manifest does not list are removed."""
        directory = Path(directory)
        if (directory / MANIFEST_FILE).is_file():
            index = cls.open(directory)
            index.check_model(model)
            index._remove_unlisted_files()
            return index
        directory.mkdir(parents=True, exist_ok=True)
        now = _now()
        manifest = {"format": INDEX_FORMAT, "version": INDEX_FORMAT_VERSION, **describe(model), "source": source,
                    "num_items": 0, "shards": [], "faiss": None, "created": now, "updated": now,
                    "rclip_hf_version": __version__}
        index = cls(directory, manifest)
        index._write_manifest()
        return index

    def check_model(self, model: CLIPModel) -> None:
        """Raise `IndexModelMismatchError` unless `model` is the model whose embeddings the index holds."""
        fingerprint = model_fingerprint(model)
        if fingerprint != self.manifest["fingerprint"]:
            raise IndexModelMismatchError(
                f"the index at {self.directory} holds embeddings of model {self.manifest['model']!r} "
                f"(fingerprint {self.manifest['fingerprint'][:12]}), but the given model "
                f"{getattr(model, 'name_or_path', '') or '<in memory>'!r} has fingerprint {fingerprint[:12]}: "
                "embeddings of different models cannot be mixed or compared; use the index's model or a new folder"
            )

    def __len__(self) -> int:
        return int(self.manifest["num_items"])

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return int(self.manifest["projection_dim"])

    # ----- reading ---------------------------------------------------------------------------------------------
    def shard_embeddings(self) -> Iterator[tuple[int, Tensor]]:
        """(offset of the shard's first item, embeddings (n, D) float32), one shard in memory at a time."""
        offset = 0
        for shard in self.manifest["shards"]:
            with safe_open(self.directory / f"{shard['name']}.safetensors", framework="pt") as handle:
                embeddings = handle.get_tensor("embeddings")
            yield offset, embeddings
            offset += shard["count"]

    def ids(self) -> list[str]:
        """All item ids, in index order."""
        return self.column("id")

    def column(self, name: str) -> list[Any]:
        """One column of the item table over all shards, in index order (None where a shard lacks it)."""
        values: list[Any] = []
        for shard in self.manifest["shards"]:
            table = self._table(shard["name"])
            values.extend(table[name] if name in table else [None] * shard["count"])
        return values

    def embeddings_of(self, ids: Sequence[str]) -> Tensor:
        """Embeddings (n, D) of the items with the given ids; `KeyError` naming an id that is not in the index."""
        positions = {item_id: position for position, item_id in enumerate(self.ids())}
        missing = [item_id for item_id in ids if item_id not in positions]
        if missing:
            raise KeyError(f"no item with id {missing[0]!r} in the index at {self.directory}")
        wanted = torch.tensor([positions[item_id] for item_id in ids], dtype=torch.long)
        out = torch.empty(len(ids), self.dim)
        for offset, embeddings in self.shard_embeddings():
            inside = (wanted >= offset) & (wanted < offset + len(embeddings))
            out[inside] = embeddings[wanted[inside] - offset]
        return out

    def items(self, positions: Iterable[int]) -> list[dict[str, Any]]:
        """The item-table row (`id`, `path`, `row`, and any scene columns; not the file keys) of the items at the
        given positions."""
        starts, names = [], []
        offset = 0
        for shard in self.manifest["shards"]:
            starts.append(offset)
            names.append(shard["name"])
            offset += shard["count"]
        found = []
        for position in positions:
            if not 0 <= position < offset:
                raise IndexError(f"position {position} is outside the index at {self.directory} ({offset} items)")
            shard_index = bisect.bisect_right(starts, position) - 1
            table = self._table(names[shard_index])
            local = position - starts[shard_index]
            found.append({column: values[local] for column, values in table.items() if column not in KEY_COLUMNS})
        return found

    def _table(self, name: str) -> dict[str, list]:
        return _read_table(self.directory / f"{name}.parquet")

    # ----- writing ---------------------------------------------------------------------------------------------
    def item_keys(self) -> dict[str, ItemKey]:
        """Id -> `ItemKey` of every item (tables written before keys were stored give `ItemKey()`)."""
        keys = {}
        for shard in self.manifest["shards"]:
            table = self._table(shard["name"])
            columns = [table.get(name, [default] * len(table["id"]))
                       for name, default in zip(KEY_COLUMNS, (-1, -1, ""))]
            keys.update((item_id, ItemKey(*values)) for item_id, *values in zip(table["id"], *columns))
        return keys

    def add(self, ids: Sequence[str], paths: Sequence[str], rows: Sequence[int], embeddings: Tensor,
            keys: Sequence[ItemKey] | None = None, extra: Sequence[dict[str, Any]] | None = None) -> None:
        """Queue items with their embeddings (n, D), file keys and optional extra item-table columns (one dict per
        item: the scene columns of windows); nothing is on disk until `commit`."""
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

    def commit(self, shard_size: int, remove: Iterable[str] = (), rekey: Mapping[str, ItemKey] | None = None) -> None:
        """Write the queued items as new shards of at most `shard_size`, drop the items with ids in `remove` and
        give the items with ids in `rekey` those keys (their embeddings kept): shards are rewritten, all in one
        manifest update, so a kill leaves the old state."""
        remove, rekey = set(remove), rekey or {}
        shards, replaced = [], []
        for shard in self.manifest["shards"]:
            if not remove and not rekey:
                shards.append(shard)
                continue
            table = self._table(shard["name"])
            keep = [position for position, item_id in enumerate(table["id"]) if item_id not in remove]
            if len(keep) == len(table["id"]) and not rekey.keys() & set(table["id"]):
                shards.append(shard)
                continue
            replaced.append(shard["name"])
            if keep:
                import pyarrow.parquet as pq

                with safe_open(self.directory / f"{shard['name']}.safetensors", framework="pt") as handle:
                    embeddings = handle.get_tensor("embeddings")[keep]
                kept = pq.read_table(self.directory / f"{shard['name']}.parquet").take(keep)
                shards.append(self._write_shard(_with_keys(kept, rekey), embeddings))
        for start in range(0, len(self._buffer), shard_size):
            chunk = self._buffer[start:start + shard_size]
            shards.append(self._write_shard(_entry_table(chunk), torch.stack([entry.embedding for entry in chunk])))
        if not replaced and not self._buffer:
            return
        self.manifest["shards"] = shards
        self.manifest["num_items"] = sum(shard["count"] for shard in shards)
        self._write_manifest()
        self._buffer = []
        for name in replaced:
            for suffix in (".safetensors", ".parquet"):
                (self.directory / f"{name}{suffix}").unlink(missing_ok=True)

    def _write_shard(self, table: Any, embeddings: Tensor) -> dict[str, Any]:
        """Write one shard pair (item table `table`, pyarrow) under a fresh random name; returns its manifest
        entry."""
        import pyarrow.parquet as pq

        name = new_shard_name()
        vectors, table_path = self.directory / f"{name}.safetensors", self.directory / f"{name}.parquet"
        atomic_write(vectors, lambda path: save_file({"embeddings": embeddings.float().cpu().contiguous()}, str(path)))
        atomic_write(table_path, lambda path: pq.write_table(table, path))
        return {"name": name, "count": table.num_rows, "digests": shard_digests(self.directory, name)}

    def _remove_unlisted_files(self) -> None:
        """Delete shard and temporary files the manifest does not list (left by a killed build)."""
        listed = {f"{shard['name']}{suffix}" for shard in self.manifest["shards"]
                  for suffix in (".safetensors", ".parquet")}
        for path in self.directory.iterdir():
            if (path.name.startswith(SHARD_PREFIX) and path.name not in listed) or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def verify(self) -> list[str]:
        """Problems of the index's files against its manifest (missing, changed or unlisted shards, counts, ids);
        empty when the index is sound."""
        problems = []
        ids: set[str] = set()
        for shard in self.manifest["shards"]:
            name = shard["name"]
            files = {suffix: self.directory / f"{name}.{suffix}" for suffix in ("safetensors", "parquet")}
            missing = [path.name for path in files.values() if not path.is_file()]
            if missing:
                problems.append(f"shard {name}: {', '.join(missing)} missing")
                continue
            changed = [path.name for suffix, path in files.items()
                       if shard.get("digests") and file_digest(path) != shard["digests"][suffix]]
            if changed:
                problems.append(f"shard {name}: {', '.join(changed)} does not match its digest in {MANIFEST_FILE}")
                continue
            with safe_open(files["safetensors"], framework="pt") as handle:
                shape = tuple(handle.get_slice("embeddings").get_shape())
            table_ids = self._table(name)["id"]
            if shape != (shard["count"], self.dim) or len(table_ids) != shard["count"]:
                problems.append(f"shard {name}: {shape[0]} embeddings of size {shape[1]} and {len(table_ids)} "
                                f"items, the manifest says {shard['count']} of size {self.dim}")
            repeated = ids.intersection(table_ids)
            if repeated or len(set(table_ids)) != len(table_ids):
                problems.append(f"shard {name}: item ids stored twice, e.g. {sorted(repeated)[:3]}")
            ids.update(table_ids)
        if sum(shard["count"] for shard in self.manifest["shards"]) != len(self):
            problems.append(f"{MANIFEST_FILE}: num_items {len(self)} is not the sum of the shard sizes")
        listed = {shard["name"] for shard in self.manifest["shards"]}
        unlisted = sorted({path.stem for path in self.directory.glob(f"{SHARD_PREFIX}*")} - listed)
        if unlisted:
            problems.append(f"files of shards not in {MANIFEST_FILE} (left by a killed build; the next build "
                            f"removes them): {', '.join(unlisted[:3])}")
        return problems

    def _write_manifest(self) -> None:
        self.manifest["updated"] = _now()
        text = json.dumps(self.manifest, indent=2)
        atomic_write(self.directory / MANIFEST_FILE, lambda path: path.write_text(text))

    # ----- FAISS -----------------------------------------------------------------------------------------------
    def build_faiss(self, nlist: int | None = None, train_size: int | None = None, seed: int = 0) -> Path:
        """Write an inverted-file FAISS index (inner product, `nlist` ~ sqrt(N) lists) over all shards."""
        faiss = faiss_module()
        if faiss is None:
            raise ImportError("FAISS is not installed: pip install faiss-cpu (or rclip-hf[search])")
        if len(self) == 0:
            raise ValueError(f"the index at {self.directory} is empty: nothing to build a FAISS index of")
        nlist = nlist or max(1, int(math.sqrt(len(self))))
        train_size = min(len(self), train_size or 64 * nlist)
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.zeros(len(self), dtype=torch.bool)
        chosen[torch.randperm(len(self), generator=generator)[:train_size]] = True
        sample = torch.cat([embeddings[chosen[offset : offset + len(embeddings)]]
                            for offset, embeddings in self.shard_embeddings()])  # (train_size, D)
        quantizer = faiss.IndexFlatIP(self.dim)
        faiss_index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        faiss_index.train(sample.numpy())
        for _, embeddings in self.shard_embeddings():
            faiss_index.add(embeddings.numpy())
        path = self.directory / FAISS_FILE
        atomic_write(path, lambda tmp: faiss.write_index(faiss_index, str(tmp)))
        self.manifest["faiss"] = {"file": FAISS_FILE, "kind": "IVFFlat", "nlist": nlist, "num_items": len(self),
                                  "shards": [shard["name"] for shard in self.manifest["shards"]]}
        self._write_manifest()
        return path

    def faiss_is_current(self) -> bool:
        """True when a FAISS file covers exactly the index's items (the same shards)."""
        info = self.manifest.get("faiss")
        return (bool(info) and info["num_items"] == len(self) and (self.directory / info["file"]).is_file()
                and info.get("shards") == [shard["name"] for shard in self.manifest["shards"]])

    # ----- search ----------------------------------------------------------------------------------------------
    def search_embeddings(self, queries: Tensor, k: int, backend: Backend = "auto", chunk_size: int = 4096,
                          nprobe: int = FAISS_NPROBE, allowed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Top-`k` (scores (Q, k), positions (Q, k) int64) of L2-normalised `queries` (Q, D), best first. With
        `allowed` (bool (N,)), only those positions are searched (exactly) and `k` is at most their number. FAISS
        may find fewer than `k` items (too few lists probed): its missing hits have position -1."""
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}), got {tuple(queries.shape)}")
        available = len(self) if allowed is None else int(allowed.sum())
        if not 1 <= k <= available:
            raise ValueError(f"k={k} must be in [1, {available}] (items in the index at {self.directory}"
                             f"{'' if allowed is None else ' that pass the filter'})")
        if backend not in ("auto", "exact", "faiss"):
            raise ValueError(f"backend={backend!r}; choose 'auto', 'exact' or 'faiss'")
        use_faiss = backend == "faiss" or (backend == "auto" and self.faiss_is_current() and faiss_module() is not None)
        if use_faiss and allowed is None:
            return self._search_faiss(queries, k, nprobe)
        queries = queries.float().cpu()
        shard_scores, shard_positions = [], []  # per shard: (Q, <=k) best of that shard
        for offset, embeddings in self.shard_embeddings():
            local = torch.arange(offset, offset + len(embeddings))
            if allowed is not None:
                local = local[allowed[offset : offset + len(embeddings)]]
                embeddings = embeddings[local - offset]
            if len(local) == 0:
                continue
            scores, positions = chunked_topk(queries, embeddings, min(k, len(embeddings)), chunk_size=chunk_size)
            shard_scores.append(scores)
            shard_positions.append(local[positions])
        # Shards come in position order, so "lower column first" among ties is "lower position first".
        scores, columns = topk_lowest_index(torch.cat(shard_scores, dim=1), k)  # (Q, k)
        return scores, torch.cat(shard_positions, dim=1).gather(1, columns)

    def _search_faiss(self, queries: Tensor, k: int, nprobe: int) -> tuple[Tensor, Tensor]:
        if not self.faiss_is_current():
            raise ValueError(f"the index at {self.directory} has no up-to-date FAISS file: build it with "
                             "EmbeddingIndex.build_faiss() (rclip-hf index --faiss yes) or use backend='exact'")
        faiss_index = _read_faiss(str(self.directory / self.manifest["faiss"]["file"]), len(self))
        faiss_index.nprobe = nprobe
        scores, positions = faiss_index.search(queries.float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(positions)


def _entry_table(entries: Sequence[IndexEntry]) -> Any:
    """The item table (pyarrow) of queued entries: id, path, row, the file keys, and scene columns when given."""
    import pyarrow as pa

    from .geo import scene_columns

    table = pa.table({"id": pa.array([entry.id for entry in entries], pa.string()),
                      "path": pa.array([entry.path for entry in entries], pa.string()),
                      "row": pa.array([entry.row for entry in entries], pa.int64()),
                      "size": pa.array([entry.key.size for entry in entries], pa.int64()),
                      "mtime_ns": pa.array([entry.key.mtime_ns for entry in entries], pa.int64()),
                      "digest": pa.array([entry.key.digest for entry in entries], pa.string())})
    if any(entry.extra for entry in entries):
        table = scene_columns(table, [entry.extra for entry in entries])
    return table


def _with_keys(table: Any, keys: Mapping[str, ItemKey]) -> Any:
    """The item table (pyarrow) with the key columns of the items with ids in `keys` set to those keys."""
    import pyarrow as pa

    ids = table.column("id").to_pylist()
    if not keys.keys() & set(ids):
        return table
    for name, kind, default in zip(KEY_COLUMNS, (pa.int64(), pa.int64(), pa.string()), (-1, -1, "")):
        old = table.column(name).to_pylist() if name in table.column_names else [default] * len(ids)
        values = pa.array([getattr(keys[item_id], name) if item_id in keys else value
                           for item_id, value in zip(ids, old)], kind)
        table = (table.set_column(table.column_names.index(name), name, values) if name in table.column_names
                 else table.append_column(name, values))
    return table


def new_shard_name() -> str:
    """A fresh random shard name: builds and merges never collide."""
    return f"{SHARD_PREFIX}{secrets.token_hex(8)}"


def shard_digests(directory: Path, name: str) -> dict[str, str]:
    """BLAKE2b digests of a shard's two files, as the manifest records them."""
    return {suffix: file_digest(directory / f"{name}.{suffix}") for suffix in ("safetensors", "parquet")}


# ----- files ----------------------------------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write `path` through `write(temporary path)` and a rename, so readers never see a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


@lru_cache(maxsize=8)
def _read_table_cached(path: str, mtime_ns: int) -> dict[str, list]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pydict()


def _read_table(path: Path) -> dict[str, list]:
    return _read_table_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _read_faiss_cached(path: str, mtime_ns: int) -> Any:
    return faiss_module().read_index(path)


def _read_faiss(path: str, num_items: int) -> Any:
    faiss_index = _read_faiss_cached(path, Path(path).stat().st_mtime_ns)
    if faiss_index.ntotal != num_items:
        raise ValueError(f"{path} holds {faiss_index.ntotal} vectors, the index {num_items}: rebuild it")
    return faiss_index


def faiss_module() -> Any:
    """The `faiss` module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = ["FAILURES_FILE", "FAISS_MIN_ITEMS", "INDEX_FORMAT", "INDEX_FORMAT_VERSION", "LOCK_FILE", "MANIFEST_FILE",
           "Backend", "EmbeddingIndex", "IndexBusyError", "IndexEntry", "IndexModelMismatchError", "ItemKey",
           "atomic_write", "faiss_module", "file_digest", "file_key", "index_lock", "new_shard_name", "row_key",
           "shard_digests"]
