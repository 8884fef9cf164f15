"""Writing a Hugging Face dataset folder (Parquet shards + README card with YAML ``configs``) atomically.

The folder is written into a hidden temporary sibling (``.<name>.partial-<pid>``) and renamed onto the
output only when complete, so an interrupted build never leaves a folder that ``datasets.load_dataset``
would read as a finished dataset; a previous complete folder stays in place until the rename.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 500 * 1024 * 1024
REPORT_NAME = "build_report.json"


class ShardWriter:
    """Writes rows of one split into ``data/<split>-NNNNN.parquet`` shards of at most ~``max_shard_bytes``."""

    def __init__(self, folder: Path, split: str, features: datasets.Features,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, rows_per_batch: int = 64) -> None:
        self.folder, self.split, self.features = folder, split, features
        self.schema = features.arrow_schema
        self.max_shard_bytes, self.rows_per_batch = max_shard_bytes, rows_per_batch
        self.num_rows = 0
        self._shards: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._shard_bytes = 0
        self._batch: list[dict[str, Any]] = []

    def _column_options(self) -> dict[str, Any]:
        """ParquetWriter options: image bytes (already compressed JPEG/PNG) are stored as they are, without
        dictionary, compression or statistics, which cost more than the rest of the write and never pay off;
        every other column gets the defaults (dictionary, snappy, statistics)."""
        buffer = io.BytesIO()
        pq.write_table(self.schema.empty_table(), buffer)
        columns = pq.ParquetFile(io.BytesIO(buffer.getvalue())).schema
        image_bytes = {f"{name}.bytes" for name, feature in self.features.items() if isinstance(feature, datasets.Image)}
        paths = [columns.column(i).path for i in range(len(columns))]
        others = [path for path in paths if path not in image_bytes]
        return {"use_dictionary": others, "write_statistics": others,
                "compression": {path: "NONE" if path in image_bytes else "SNAPPY" for path in paths}}

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row (features already encoded: images as ``{"bytes", "path"}``)."""
        self._batch.append(dict(row))
        self.num_rows += 1
        if len(self._batch) >= self.rows_per_batch:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        table = pa.Table.from_pylist(self._batch, schema=self.schema)
        self._batch = []
        if self._writer is not None and self._shard_bytes + table.nbytes > self.max_shard_bytes:
            self._writer.close()
            self._writer = None
        if self._writer is None:
            path = self.folder / "data" / f"{self.split}-{len(self._shards):05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._shards.append(path)
            self._writer = pq.ParquetWriter(path, self.schema, **self._column_options())
            self._shard_bytes = 0
        self._writer.write_table(table)
        self._shard_bytes += table.nbytes

    def close(self) -> list[Path]:
        """Flush and close; shards are renamed ``<split>-NNNNN-of-MMMMM-<digest>.parquet``. Returns their paths.

        ``<digest>`` (12 hex digits of the SHA-256 of the split's shards) makes the names content-addressed:
        ``datasets`` keys its cache of a local folder by the card's YAML only, so without it a rebuilt folder
        at the same path would be served from the cache of the previous build.
        """
        self._flush()
        if self._writer is not None:
            self._writer.close()
        if not self._shards:  # an empty split still gets one (empty) shard so the config resolves
            path = self.folder / "data" / f"{self.split}-00000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(self.schema.empty_table(), path)
            self._shards.append(path)
        digest = hashlib.sha256()
        for path in self._shards:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        final = []
        for index, path in enumerate(self._shards):
            target = path.with_name(f"{self.split}-{index:05d}-of-{len(self._shards):05d}-{digest.hexdigest()[:12]}.parquet")
            path.rename(target)
            final.append(target)
        return final


def card_text(metadata: Mapping[str, Any], body: str) -> str:
    """A README.md dataset card: YAML front matter then the markdown body."""
    return "---\n" + yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True) + "---\n\n" + body.strip() + "\n"


def card_metadata(data_files: Mapping[str, Sequence[Path]], root: Path, features: datasets.Features,
                  **extra: Any) -> dict[str, Any]:
    """YAML metadata with ``configs``/``data_files`` (the shard files of each split, relative to ``root``) and
    the features, plus ``extra`` keys."""
    metadata: dict[str, Any] = dict(extra)
    metadata["configs"] = [{"config_name": "default", "data_files": [
        {"split": split, "path": [path.relative_to(root).as_posix() for path in paths]}
        for split, paths in data_files.items()]}]
    metadata["dataset_info"] = datasets.DatasetInfo(features=features)._to_yaml_dict()
    return metadata


@contextmanager
def atomic_folder(output: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``output``; on success it replaces ``output``, on error it is removed.

    An existing ``output`` is only replaced when it is empty or holds a ``build_report.json`` (a folder built by
    these builders): a mistyped ``--output`` never deletes unrelated files."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / REPORT_NAME).is_file())):
        raise FileExistsError(f"{output} exists and is not a dataset folder built here (no {REPORT_NAME}); "
                              "refusing to replace it: choose a new or empty output folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.parent / f".{output.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    previous = output.parent / f".{output.name}.previous-{os.getpid()}"
    if output.exists():
        output.rename(previous)
    partial.rename(output)
    if previous.exists():
        shutil.rmtree(previous)
    logger.info("wrote %s", output)


def write_json(path: Path, data: Any) -> None:
    """Write JSON with a stable layout (sorted keys are not used: the order of the data is kept)."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_dataset_folder(output: Path, features: datasets.Features, splits: Mapping[str, Iterable[Mapping[str, Any]]],
                         card: Callable[[dict[str, int], dict[str, Any]], str],
                         report: Callable[[dict[str, int]], Any] | None = None,
                         max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> dict[str, int]:
    """Write a whole dataset folder atomically: rows per split, then README.md from ``card(rows per split,
    YAML metadata with configs and features)`` and, if given, ``build_report.json`` from ``report(rows per
    split)``. Returns the rows per split."""
    with atomic_folder(output) as folder:
        counts, files = {}, {}
        for split, rows in splits.items():
            writer = ShardWriter(folder, split, features, max_shard_bytes)
            for row in rows:
                writer.write(row)
            files[split] = writer.close()
            counts[split] = writer.num_rows
        (folder / "README.md").write_text(card(counts, card_metadata(files, folder, features)), encoding="utf-8")
        if report is not None:
            write_json(folder / REPORT_NAME, report(counts))
    return counts
