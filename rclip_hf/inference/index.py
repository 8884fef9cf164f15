"""The on-disk embedding index format and its search: shards of embeddings + item tables, and FAISS.

Layout of an index folder (all files written atomically, so an interrupted build resumes cleanly):

- `index.json`: format version, the model that made the embeddings (name, `model_type`, projection size and
  `model_fingerprint`), the source, the shards and their sizes, and the FAISS file when there is one;
- `shard-00000.safetensors` (`embeddings`, float32 (n, D), L2-normalised) + `shard-00000.parquet` (`id`, `path`,
  `row`, and for windows of scenes the columns of `scenes.py`, as GeoParquet): one pair per `shard_size` items,
  appended as the build goes;
- `failures.json`: the items of the latest build that could not be read (`id`, `path`, `reason`); they are
  retried by the next build;
- `faiss.index` (optional): an inverted-file FAISS index over all shards for large indexes.

Search is exact by default (`chunked_topk` shard by shard: memory bounded by one shard, not the archive) and uses
the FAISS file (approximate, much faster on millions of items) when it exists and is up to date.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from ..loading import describe, model_fingerprint
from ..topk import chunked_topk, topk_lowest_index

INDEX_FORMAT = "rclip-hf-embedding-index"
INDEX_FORMAT_VERSION = 1
MANIFEST_FILE = "index.json"
FAILURES_FILE = "failures.json"
FAISS_FILE = "faiss.index"
#: Indexes with at least this many items get a FAISS file when `faiss="auto"` and faiss is installed.
FAISS_MIN_ITEMS = 100_000
#: Inverted lists probed per query by the FAISS backend (of `nlist` ~ sqrt(N)).
FAISS_NPROBE = 32

Backend = Literal["auto", "exact", "faiss"]


class IndexModelMismatchError(ValueError):
    """Embeddings of one model are being mixed or compared with another model's; the message names both."""


class EmbeddingIndex:
    """An index folder: its manifest, shard-by-shard embeddings and item table, and search over them."""

    def __init__(self, directory: str | Path, manifest: dict[str, Any]):
        self.directory = Path(directory)
        self.manifest = manifest
        self._buffer: list[tuple[str, str, int, Tensor, dict[str, Any]]] = []

    # ----- opening and identity -------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | Path) -> EmbeddingIndex:
        """Open an existing index folder; raises `FileNotFoundError` / `ValueError` naming the folder."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no embedding index at {directory} ({MANIFEST_FILE} not found)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != INDEX_FORMAT or manifest.get("version") != INDEX_FORMAT_VERSION:
            raise ValueError(f"{manifest_path} is not an {INDEX_FORMAT} v{INDEX_FORMAT_VERSION} manifest "
                             f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})")
        return cls(directory, manifest)

    @classmethod
    def open_or_create(cls, directory: str | Path, model: CLIPModel, source: str = "") -> EmbeddingIndex:
        """Open the index at `directory` (checking it was made by `model`) or start an empty one there."""
        directory = Path(directory)
        if (directory / MANIFEST_FILE).is_file():
            index = cls.open(directory)
            index.check_model(model)
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
        """The item-table row (`id`, `path`, `row`, and any scene columns) of the items at the given positions."""
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
            found.append({column: values[local] for column, values in table.items()})
        return found

    def _table(self, name: str) -> dict[str, list]:
        return _read_table(self.directory / f"{name}.parquet")

    # ----- writing ---------------------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], paths: Sequence[str], rows: Sequence[int], embeddings: Tensor,
            shard_size: int, extra: Sequence[dict[str, Any]] | None = None) -> None:
        """Queue items with their embeddings (n, D) and optional extra item-table columns (one dict per item); full
        shards of `shard_size` items are written at once."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or embeddings.shape[0] != len(ids):
            raise ValueError(f"add: expected embeddings ({len(ids)}, {self.dim}), got {tuple(embeddings.shape)}")
        self._buffer.extend(zip(ids, paths, rows, embeddings.float().cpu(), extra or [{}] * len(ids)))
        while len(self._buffer) >= shard_size:
            self._write_shard(self._buffer[:shard_size])
            self._buffer = self._buffer[shard_size:]

    def flush(self) -> None:
        """Write the queued items as a last (smaller) shard."""
        if self._buffer:
            self._write_shard(self._buffer)
            self._buffer = []

    def _write_shard(self, items: list[tuple[str, str, int, Tensor, dict[str, Any]]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .geo import scene_columns

        name = f"shard-{len(self.manifest['shards']):05d}"
        ids, paths, rows, vectors, extra = zip(*items)
        atomic_write(self.directory / f"{name}.safetensors",
                      lambda path: save_file({"embeddings": torch.stack(vectors).contiguous()}, str(path)))
        table = pa.table({"id": pa.array(ids, pa.string()), "path": pa.array(paths, pa.string()),
                          "row": pa.array(rows, pa.int64())})
        if any(extra):
            table = scene_columns(table, extra)
        atomic_write(self.directory / f"{name}.parquet", lambda path: pq.write_table(table, path))
        self.manifest["shards"].append({"name": name, "count": len(items)})
        self.manifest["num_items"] += len(items)
        self._write_manifest()

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
        self.manifest["faiss"] = {"file": FAISS_FILE, "kind": "IVFFlat", "nlist": nlist, "num_items": len(self)}
        self._write_manifest()
        return path

    def faiss_is_current(self) -> bool:
        """True when a FAISS file covers exactly the index's items."""
        info = self.manifest.get("faiss")
        return bool(info) and info["num_items"] == len(self) and (self.directory / info["file"]).is_file()

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
                             "EmbeddingIndex.buildfaiss_module() (rclip-hf index --faiss yes) or use backend='exact'")
        faiss_index = _read_faiss(str(self.directory / self.manifest["faiss"]["file"]), len(self))
        faiss_index.nprobe = nprobe
        scores, positions = faiss_index.search(queries.float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(positions)


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


__all__ = ["FAILURES_FILE", "FAISS_MIN_ITEMS", "INDEX_FORMAT", "INDEX_FORMAT_VERSION", "MANIFEST_FILE", "Backend",
           "EmbeddingIndex", "IndexModelMismatchError", "atomic_write", "faiss_module"]
