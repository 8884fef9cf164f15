"""Writing a Hugging Face dataset folder (Parquet shards + README card with YAML ``configs``) atomically.

The folder is written into a hidden temporary sibling (``.<name>.partial-<pid>``) and renamed onto the
output only when complete, so an interrupted build never leaves a folder that ``datasets.load_dataset``
would read as a finished dataset; a previous complete folder stays in place until the rename.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import datasets.config
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
import yaml

from rclip_hf._compat import dataset_info_yaml, get_parquet_column_options, known_task_ids

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 500 * 1024 * 1024
DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024
REPORT_NAME = "build_report.json"
LICENSE_NAME = "LICENSE.md"


@dataclass(frozen=True)
class ImageFile:
    """An ``Image()`` cell whose bytes are those of ``file`` (``size`` bytes, checked when read), read only when
    its row group is written; the cell's ``path`` is ``name``. Lets a writer store many large images without
    holding their bytes as Python objects."""

    file: str
    name: str
    size: int


class ShardWriter:
    """Writes rows of one split into ``data/<split>-NNNNN.parquet`` shards of at most ~``max_shard_bytes``.

    Rows are written in row groups of ``rows_per_batch`` rows or ~``max_batch_bytes`` of image bytes, whichever
    comes first (defaults 256 rows, 8 MiB: small images in groups of 64 rows cost ~1.5x the CPU per row, groups
    of 32 MiB cost more per byte). Pages are cut by content-defined chunking and the page index is written, as
    ``datasets`` writes Parquet (``content_defined_chunking=False`` turns chunking off). Image cells are ``{"bytes", "path"}`` dicts or ``ImageFile``; the image bytes of
    a row group are gathered into one reused buffer, so writing allocates no new memory per image.
    """

    def __init__(self, folder: Path, split: str, features: datasets.Features,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, rows_per_batch: int = 256,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                 content_defined_chunking: bool | dict[str, int] = True) -> None:
        self.folder, self.split, self.features = folder, split, features
        self.content_defined_chunking = (datasets.config.DEFAULT_CDC_OPTIONS if content_defined_chunking is True
                                         else content_defined_chunking)
        self.schema = features.arrow_schema
        self.max_shard_bytes, self.rows_per_batch, self.max_batch_bytes = max_shard_bytes, rows_per_batch, max_batch_bytes
        self.num_rows = 0  # rows added
        self.rows_written = 0  # rows written to the shards (the first ones added)
        self._image_columns = {name for name, feature in features.items() if isinstance(feature, datasets.Image)}
        self._other_schema = pa.schema([field for field in self.schema if field.name not in self._image_columns])
        self._shards: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._shard_bytes = 0
        self._batch: list[Mapping[str, Any]] = []
        self._batch_bytes = 0
        self._buffer = np.empty(0, dtype=np.uint8)  # image bytes of one row group, reused from one to the next
        self._digest = xxhash.xxh3_128()  # of the split's shards, in order, as they are written

    def _writer_options(self) -> dict[str, Any]:
        """ParquetWriter options as ``datasets``' own Parquet writer sets them: its per-column options (image
        bytes PLAIN, uncompressed, no dictionary; other columns dictionary + snappy), content-defined chunking
        (``datasets.config.DEFAULT_CDC_OPTIONS``: pages cut where the content says, so unchanged rows give
        byte-identical pages that Xet de-duplicates on re-upload) and the page index. Image bytes also get no
        statistics, which cost more than the rest of the write and never pay off."""
        image_bytes = {f"{name}.bytes" for name in self._image_columns}
        options = get_parquet_column_options(self.features, self.schema)
        paths = [path for path in options["compression"] if path not in image_bytes]
        return {**options, "write_statistics": paths, "write_page_index": True,
                "use_content_defined_chunking": self.content_defined_chunking}

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row (features already encoded; images as ``{"bytes", "path"}`` or ``ImageFile``)."""
        self._batch.append(row)
        self.num_rows += 1
        self._batch_bytes += sum(_cell_size(row.get(name)) for name in self._image_columns)
        if len(self._batch) >= self.rows_per_batch or self._batch_bytes >= self.max_batch_bytes:
            self.flush()

    def _image_column(self, cells: Sequence[Any], struct: pa.StructType) -> pa.StructArray:
        """The ``{bytes, path}`` struct column of ``cells``, its bytes gathered in ``self._buffer``."""
        sizes = [_cell_size(cell) for cell in cells]
        total = sum(sizes)
        if total >= 2**31:
            raise ValueError(f"{self.split}: {total} image bytes in one row group; lower max_batch_bytes")
        if self._buffer.size < total:
            self._buffer = np.empty(max(total, 2 * self._buffer.size), dtype=np.uint8)
        offsets = np.zeros(len(cells) + 1, dtype=np.int32)
        np.cumsum(sizes, out=offsets[1:])
        has_bytes, paths = [], []
        for cell, start, size in zip(cells, offsets[:-1].tolist(), sizes):
            target = memoryview(self._buffer[start:start + size])
            if isinstance(cell, ImageFile):
                with open(cell.file, "rb", buffering=0) as handle:
                    if handle.readinto(target) != size or handle.read(1):
                        raise OSError(f"{cell.file}: not {size} bytes long any more (changed while being written)")
                has_bytes.append(True)
                paths.append(cell.name)
            else:
                data = (cell or {}).get("bytes")
                target[:] = data or b""
                has_bytes.append(data is not None)
                paths.append((cell or {}).get("path"))
        valid = None if all(has_bytes) else pa.py_buffer(np.packbits(has_bytes, bitorder="little"))
        image_bytes = pa.BinaryArray.from_buffers(pa.binary(), len(cells), [
            valid, pa.py_buffer(offsets), pa.py_buffer(self._buffer[:total])])
        mask = pa.array([cell is None for cell in cells]) if any(cell is None for cell in cells) else None
        return pa.StructArray.from_arrays([image_bytes, pa.array(paths, pa.string())], fields=list(struct), mask=mask)

    def flush(self) -> None:
        """Write the rows added so far (after this, the files of their ``ImageFile`` cells may be deleted)."""
        if not self._batch:
            return
        others = pa.Table.from_pylist([{field.name: row.get(field.name) for field in self._other_schema}
                                       for row in self._batch], schema=self._other_schema)
        table = pa.Table.from_arrays([
            self._image_column([row.get(field.name) for row in self._batch], field.type)
            if field.name in self._image_columns else others.column(field.name) for field in self.schema],
            schema=self.schema)
        if self._writer is not None and self._shard_bytes + table.nbytes > self.max_shard_bytes:
            self._writer.close()
            self._writer = None
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._new_shard(), self.schema, **self._writer_options())
            if self.content_defined_chunking is not False:  # recorded as datasets records it
                self._writer.add_key_value_metadata(
                    {"content_defined_chunking": json.dumps(self.content_defined_chunking)})
            self._shard_bytes = 0
        self._writer.write_table(table)  # written (copied into pages) before the buffer is reused
        self._shard_bytes += table.nbytes
        self.rows_written += len(self._batch)
        self._batch, self._batch_bytes = [], 0

    def _new_shard(self) -> _HashingFile:
        """Open the next shard file; what is written to it also goes into the split's running digest."""
        path = self.folder / "data" / f"{self.split}-{len(self._shards):05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._shards.append(path)
        return _HashingFile(path, self._digest)

    def close(self) -> list[Path]:
        """Flush and close; shards are renamed ``<split>-NNNNN-of-MMMMM-<digest>.parquet``. Returns their paths.

        ``<digest>`` (12 hex digits of the XXH3-128 hash of the split's shards, the hash ``datasets`` uses for
        its own fingerprints; ~15x faster than SHA-256, and this is a cache key, not a security check) makes
        the names content-addressed: ``datasets`` keys its cache of a local folder by the card's YAML only, so
        without it a rebuilt folder at the same path would be served from the cache of the previous build.
        """
        self.flush()
        if self._writer is not None:
            self._writer.close()
        if not self._shards:  # an empty split still gets one (empty) shard so the config resolves
            with self._new_shard() as sink:
                pq.write_table(self.schema.empty_table(), sink)
        digest = self._digest.hexdigest()[:12]
        final = []
        for index, path in enumerate(self._shards):
            target = path.with_name(f"{self.split}-{index:05d}-of-{len(self._shards):05d}-{digest}.parquet")
            path.rename(target)
            final.append(target)
        return final


class _HashingFile(io.FileIO):
    """A file opened for writing that also feeds every byte written into a running ``digest``."""

    def __init__(self, path: Path, digest: Any) -> None:
        super().__init__(path, "wb")
        self.digest = digest

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return super().write(data)


def _cell_size(cell: Any) -> int:
    """Bytes of an image cell: the file size of an ``ImageFile``, the length of a dict's ``bytes``."""
    if isinstance(cell, ImageFile):
        return cell.size
    return len((cell or {}).get("bytes") or b"")


#: The Hub's ``size_categories`` bins, by the upper bound of each (total rows of all splits).
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` value for a dataset of ``num_rows`` rows."""
    return next((name for bound, name in SIZE_CATEGORIES if num_rows < bound), "n>1B")


def check_card_metadata(metadata: Mapping[str, Any]) -> None:
    """ValueError unless every ``task_categories`` value is a Hub task (the list ``datasets`` ships, copied from
    the Hub's huggingface.js tasks) and ``license: other`` comes with ``license_name`` and ``license_link``."""
    unknown = sorted(set(metadata.get("task_categories", ())) - set(known_task_ids))
    if unknown:
        raise ValueError(f"dataset card: task_categories {unknown} are not Hub tasks; known: {sorted(known_task_ids)}")
    if metadata.get("license") == "other" and not (metadata.get("license_name") and metadata.get("license_link")):
        raise ValueError("dataset card: license 'other' needs license_name and license_link")


def card_text(metadata: Mapping[str, Any], body: str) -> str:
    """A README.md dataset card: YAML front matter (checked by ``check_card_metadata``) then the markdown body."""
    check_card_metadata(metadata)
    return "---\n" + yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True) + "---\n\n" + body.strip() + "\n"


def card_metadata(data_files: Mapping[str, Sequence[Path]], root: Path, features: datasets.Features,
                  **extra: Any) -> dict[str, Any]:
    """YAML metadata the Hub reads, after the ``extra`` keys: ``language: en``, ``size_categories`` (rows of all
    splits), ``configs``/``data_files`` (the shard files of each split, relative to ``root``) and ``dataset_info``
    (features; per split ``num_examples`` and ``num_bytes``, uncompressed, from the shards' Parquet footers;
    ``download_size`` and ``dataset_size``)."""
    splits = datasets.SplitDict()
    download_size = 0
    for split, paths in data_files.items():
        footers = [pq.ParquetFile(path).metadata for path in paths]
        num_bytes = sum(footer.row_group(i).total_byte_size for footer in footers for i in range(footer.num_row_groups))
        splits.add(datasets.SplitInfo(name=split, num_bytes=num_bytes,
                                      num_examples=sum(footer.num_rows for footer in footers)))
        download_size += sum(path.stat().st_size for path in paths)
    metadata: dict[str, Any] = dict(extra)
    metadata["language"] = ["en"]
    metadata["size_categories"] = [size_category(splits.total_num_examples)]
    metadata["configs"] = [{"config_name": "default", "data_files": [
        {"split": split, "path": [path.relative_to(root).as_posix() for path in paths]}
        for split, paths in data_files.items()]}]
    metadata["dataset_info"] = dataset_info_yaml(
        features, splits=splits, download_size=download_size,
        dataset_size=sum(split.num_bytes for split in splits.values()))
    return metadata


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(output: Path) -> list[str]:
    """Remove the ``.<output>.partial-PID`` / ``.previous-PID`` folders left by builds whose process is gone
    (killed); returns their paths. Folders of a build still running are left alone."""
    removed = []
    for path in sorted(Path(output).parent.glob(f".{Path(output).name}.*-*")):
        kind, _, pid = path.name.removeprefix(f".{Path(output).name}.").rpartition("-")
        if kind in ("partial", "previous") and pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            logger.warning("removed %s, left by a build (process %s) that no longer runs", path, pid)
            removed.append(str(path))
    return removed


def parquet_shard_digests(folder: Path) -> dict[str, str]:
    """``{shard path relative to folder: XXH3-128 hex digest}`` of every Parquet shard under ``folder/data``."""
    digests = {}
    for path in sorted((Path(folder) / "data").glob("*.parquet")):
        digest = xxhash.xxh3_128()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
        digests[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return digests


def shards_problem(folder: Path, recorded: Mapping[str, str] | None) -> str | None:
    """Why the shards of ``folder`` differ from the ``recorded`` digests (missing, extra, changed), or None."""
    if not recorded:
        return "its build report records no shard digests"
    found = parquet_shard_digests(folder)
    for name, digest in recorded.items():
        if name not in found:
            return f"shard {name} is missing"
        if found[name] != digest:
            return f"shard {name} does not match its recorded digest"
    extra = sorted(set(found) - set(recorded))
    return f"shard {extra[0]} is not in the build report" if extra else None


#: Shard names ``ShardWriter.close`` gives (the files of a folder whose report predates recorded shard lists)
_SHARD_NAME = re.compile(r"^data/[\w.-]+-\d{5}-of-\d{5}-[0-9a-f]{12}\.parquet$")
#: The files and folders every dataset folder built here holds besides its shards
_OWN_ENTRIES = ("README.md", LICENSE_NAME, REPORT_NAME, "data")


def check_output_is_ours(output: Path) -> None:
    """``FileExistsError`` (one line naming the folder and what is in the way) unless ``output`` is missing, an
    empty folder, or a dataset folder built here holding nothing but what its build report records: the card,
    licence, report and the shards listed (by name pattern for a report without a list)."""
    if not output.exists() and not output.is_symlink():
        return
    if output.is_symlink() or not output.is_dir():
        raise FileExistsError(f"{output} exists and is not a folder; refusing to replace it: choose a new or empty "
                              "output folder")
    entries = sorted(entry.relative_to(output).as_posix() for entry in _entries(output))
    if not entries:
        return
    recorded = _recorded_entries(output)
    if recorded is None:
        raise FileExistsError(f"{output} exists and is not a dataset folder built here (no readable {REPORT_NAME}); "
                              "refusing to replace it: choose a new or empty output folder")
    foreign = [entry for entry in entries if not _is_recorded(entry, recorded)]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise FileExistsError(f"{output} holds {foreign[0]}{more}, which its build did not write; refusing to replace "
                              "the folder: move them out or choose another output folder")


def _entries(folder: Path) -> Iterator[Path]:
    """Every file, folder and link under ``folder`` (links not followed)."""
    for directory, names, files in os.walk(folder):
        for name in (*names, *files):
            yield Path(directory) / name


def _recorded_entries(output: Path) -> set[str] | None:
    """What the build report of ``output`` records as written by its build (empty: a report without a shard
    list), or None when there is no readable report."""
    try:
        report = json.loads((output / REPORT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None
    shards = report.get("shards")
    return set(shards) if isinstance(shards, dict) else set()


def _is_recorded(entry: str, recorded: set[str]) -> bool:
    if entry in _OWN_ENTRIES or entry in recorded:
        return True
    return not recorded and bool(_SHARD_NAME.match(entry))


@contextmanager
def atomic_folder(output: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``output``; on success it replaces ``output``, on error it is removed.

    An existing ``output`` is only replaced when ``check_output_is_ours`` finds nothing in it that a build did not
    write: a mistyped ``--output`` never deletes unrelated files."""
    output = Path(output)
    check_output_is_ours(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(output)
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


def licence_text(title: str, sources: Iterable[tuple[str, str, str]]) -> str:
    """The ``LICENSE.md`` a card's ``license_link`` points to: each source's name, licence terms and citation."""
    lines = [f"# Licences of {title}", "", "The images and annotations keep the licence of their source dataset:", ""]
    lines += [f"- **{name}**: {terms}" + (f". Cite: {citation}." if citation else "") for name, terms, citation in sources]
    return "\n".join(lines) + "\n"


def write_dataset_folder(output: Path, features: datasets.Features, splits: Mapping[str, Iterable[Mapping[str, Any]]],
                         card: Callable[[dict[str, int], dict[str, Any]], str],
                         report: Callable[[dict[str, int]], Any] | None = None,
                         max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, licence: str | None = None) -> dict[str, int]:
    """Write a whole dataset folder atomically: rows per split, then README.md from ``card(rows per split,
    YAML metadata with configs and features)``, ``LICENSE.md`` from ``licence`` and, if given,
    ``build_report.json`` from ``report(rows per split)``. Returns the rows per split."""
    with atomic_folder(output) as folder:
        counts, files = {}, {}
        for split, rows in splits.items():
            writer = ShardWriter(folder, split, features, max_shard_bytes)
            for row in rows:
                writer.write(row)
            files[split] = writer.close()
            counts[split] = writer.num_rows
        (folder / "README.md").write_text(card(counts, card_metadata(files, folder, features)), encoding="utf-8")
        if licence is not None:
            (folder / LICENSE_NAME).write_text(licence, encoding="utf-8")
        if report is not None:
            written = report(counts)
            if isinstance(written, dict):  # the files this build owns: a rebuild replaces only a folder of them
                written = {**written, "shards": parquet_shard_digests(folder)}
            write_json(folder / REPORT_NAME, written)
    return counts
