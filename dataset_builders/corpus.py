"""The caption corpus: source readers -> captions (B2C, or human captions) -> p-Hash de-duplication -> a
Hugging Face dataset folder (Parquet shards + card) and a build report.

Storage choice: an image that already is 8-bit RGB JPEG or PNG is stored with its **original bytes** (no
re-encoding, no resizing: detection images stay at full size, the training transform crops them); any other
image (TIFF, BMP, RGBA, 16-bit, grayscale, multi-band) is converted by the rule in ``rclip_hf.images`` (the
one inference uses, so training and serving see the same pixels) and stored as lossless PNG. With
``--max-side PX`` (a corpus at training resolution) an image whose longer side exceeds PX is instead resized to
PX on that side (Lanczos) and stored as JPEG quality 95 without chroma subsampling (``TRAINING_JPEG``), its boxes
scaled with it; captions (B2C positions are relative) and the p-Hash (computed on the full image) do not change,
so neither do the de-duplication decisions. ``benchmarks/corpus_format.py`` measured the choice: at 256 px this
JPEG decodes in ~0.4x the time of PNG at ~0.35x its size with >= 37 dB PSNR, where lossy WebP decodes slower
than PNG. Each image is decoded once, in a worker process: the same decode verifies it (truncated files are
skipped), feeds the p-Hash and, when needed, the conversion or the resize.

Report accounting, per source: ``read`` = every entry the reader met (images, annotation files without an
image, unusable entries) = ``kept`` + ``skipped`` + ``duplicates`` + ``excluded``. Annotations clipped or
dropped inside a kept image are listed under ``annotation_notes`` and do not change the counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets.exceptions import DatasetGenerationError
from PIL import Image

from dataset_builders import b2c, dedup, lanczos
from dataset_builders.hf_folder import (
    DEFAULT_MAX_SHARD_BYTES,
    LICENSE_NAME,
    REPORT_NAME,
    ImageFile,
    ShardWriter,
    atomic_folder,
    card_metadata,
    card_text,
    licence_text,
    parquet_shard_digests,
    remove_stale_partials,
    shards_problem,
    write_json,
)
from dataset_builders.publish import PUSH_KEYS, PushConfig, check_push, push_dataset
from dataset_builders.records import Skipped
from dataset_builders.sources import READERS, Item, SourceReader, get_reader
from dataset_builders.sources.images import (
    DecodedImage,
    PixelLimitConfig,
    decode_rgb,
    decoded_whole,
    encode_png,
)
from rclip_hf.errors import UserError
from rclip_hf.images import ImageReadError, image_files
from rclip_hf.progress import progress_bar

logger = logging.getLogger(__name__)

NUM_CAPTIONS = 5
#: how ``--max-side`` stores a resized image (see the module docstring and ``benchmarks/corpus_format.py``)
TRAINING_JPEG = {"format": "JPEG", "quality": 95, "subsampling": 0}
# images per worker task: few messages between processes for small images; big images go one per task, so
# the results (consumed in order) never wait long behind one slow task while the other workers run ahead
_MAX_CHUNK = 16
_MAX_CHUNK_BYTES = 2 * 1024 * 1024
# candidates de-duplicated and written together while the workers go on decoding: up to this many images or
# this many bytes of stored image files, so that writing large images overlaps decoding the next ones
_SETTLE_BATCH = 256
_SETTLE_BYTES = 8 * 1024 * 1024
CORPUS_FEATURES = datasets.Features({
    "image": datasets.Image(),
    "captions": datasets.List(datasets.Value("string")),
    "source": datasets.Value("string"),
    "boxes": datasets.List({
        "label": datasets.Value("string"),
        "x_min": datasets.Value("float32"),
        "y_min": datasets.Value("float32"),
        "x_max": datasets.Value("float32"),
        "y_max": datasets.Value("float32"),
    }),
})


@dataclass
class CorpusConfig(PixelLimitConfig, PushConfig):
    """Options of ``python -m dataset_builders.build_corpus`` (also readable from ``--config YAML``); the Hub
    options (``--push-to-hub``, ``--private``, ``--dry-run``) are those of every builder (``PushConfig``)."""

    source: list[str] = field(default_factory=list, metadata={
        "help": "FORMAT=PATH of one source (repeat the flag for several); formats: " + ", ".join(sorted(READERS)),
        "action": "append"})
    output: str | None = field(default=None, metadata={"help": "output dataset folder"})
    config: str | None = field(default=None, metadata={"help": "YAML file with any of these options (flags win)"})
    num_proc: int = field(default=1, metadata={"help": "worker processes for decoding, M2B and hashing"})
    seed: int = field(default=0, metadata={"help": "seed of the B2C caption phrasing"})
    exclude_near: str | None = field(default=None, metadata={
        "help": "folder of images or HF dataset folder of benchmark test images: training images within "
                "--max-distance of any of them are excluded"})
    max_distance: int = field(default=dedup.DEFAULT_MAX_DISTANCE, metadata={
        "help": "p-Hash Hamming distance at or below which two images are duplicates (paper: < 2)"})
    reader_options: str | None = field(default=None, metadata={
        "help": 'JSON object of per-format reader options, e.g. {"isaid": {"min_area": 32}}'})
    max_side: int | None = field(default=None, metadata={
        "help": "store images at training resolution: longer side at most this many pixels (JPEG q95, boxes "
                "scaled); default: images as released"})
    max_shard_mb: int = field(default=DEFAULT_MAX_SHARD_BYTES // (1024 * 1024), metadata={
        "help": "approximate maximum size of one Parquet shard in MiB"})
    force: bool = field(default=False, metadata={"help": "rebuild even when the output is up to date"})

    def __post_init__(self) -> None:
        flat: list[str] = []
        for entry in self.source:
            flat.extend([entry] if isinstance(entry, str) else entry)
        self.source = flat
        if isinstance(self.reader_options, dict):
            self.reader_options = json.dumps(self.reader_options)

    def sources(self) -> list[tuple[str, Path]]:
        """The ``--source`` entries as (format, path); ValueError naming the bad entry."""
        if not self.source:
            raise ValueError("no --source given: pass --source FORMAT=PATH (formats: " + ", ".join(sorted(READERS)) + ")")
        parsed = []
        for entry in self.source:
            name, sep, path = entry.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--source {entry!r}: expected FORMAT=PATH")
            if name not in READERS:
                raise ValueError(f"--source {entry!r}: unknown format {name!r}; known: {', '.join(sorted(READERS))}")
            parsed.append((name, Path(path)))
        return parsed

    def options_for(self) -> dict[str, dict[str, Any]]:
        """Per-format reader options parsed from ``reader_options``."""
        if not self.reader_options:
            return {}
        try:
            options = json.loads(self.reader_options)
        except json.JSONDecodeError as error:
            raise ValueError(f"--reader_options is not valid JSON: {error}") from None
        if not isinstance(options, dict) or not all(isinstance(value, dict) for value in options.values()):
            raise ValueError(f"--reader_options must map format names to option objects, got {self.reader_options}")
        return options


def five_captions(captions: Sequence[str]) -> list[str]:
    """Exactly five captions from human ones: the first five, or all of them cycled when fewer."""
    cleaned = [caption.strip() for caption in captions if caption.strip()]
    if not cleaned:
        raise ValueError("no non-empty caption")
    return [cleaned[index % len(cleaned)] for index in range(NUM_CAPTIONS)]


def source_base(root: Path) -> Path:
    """The folder that image names of a source are relative to: the root, or its folder when it is a file."""
    return root if root.is_dir() else root.parent


def relative_name(path: Path, base: Path) -> str:
    """``path`` relative to a source's ``source_base``, else its name."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


@dataclass
class Processed:
    """What a worker returns for one scanned item, as plain values that pickle cheaply (no image bytes: the
    main process reads the ``stored`` file when writing)."""

    source_index: int
    name: str
    row: dict[str, Any] | None = None  # captions, source and boxes in the corpus layout; None when skipped
    skipped: dict[str, Any] | None = None  # ``_skipped_dict`` of the reason the item was skipped
    notes: list[dict[str, Any]] = field(default_factory=list)  # annotations clipped or dropped
    phash: int = 0
    stored: str = ""  # file whose bytes go into the corpus (original, or the converted PNG)
    stored_size: int = 0  # its size in bytes
    converted_from: str = ""
    temporary: bool = False  # ``stored`` is a converted or resized copy in the build's scratch folder


def fit_max_side(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` resized (Lanczos) so that its longer side is ``max_side``; unchanged when it already fits."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def scaled_box(box: dict[str, Any], x_scale: float, y_scale: float) -> dict[str, Any]:
    """A ``boxes`` cell in the coordinates of an image resized by (``x_scale``, ``y_scale``)."""
    return {**box, "x_min": box["x_min"] * x_scale, "x_max": box["x_max"] * x_scale,
            "y_min": box["y_min"] * y_scale, "y_max": box["y_max"] * y_scale}


_WORKER: dict[str, Any] = {}


def _init_worker(readers: list[SourceReader], tasks: list[tuple[int, int, Item]], seed: int, converted_dir: str,
                 max_side: int | None = None) -> None:
    """Give this process the build's readers and tasks (inherited, not pickled, where processes are forked):
    workers then receive task positions only."""
    _WORKER.update(readers=readers, tasks=tasks, bases=[source_base(reader.root) for reader in readers], seed=seed,
                   converted_dir=Path(converted_dir), max_side=max_side)


def _decode(reader: SourceReader, path: Path, result: Processed,
            window: tuple[int, int, int, int] | None = None) -> DecodedImage | None:
    """Decode an image (or a window of it) for ``_process``; on failure record the skip in ``result``, return None."""
    try:
        return decode_rgb(path, window)
    except (ImageReadError, FileNotFoundError) as error:
        result.skipped = _skipped_dict(reader.skip(path, str(error)))
        return None


def _process(position: int) -> Processed:
    """Load the item of task ``position``, decode and hash its image, make its five captions (runs in a worker)."""
    index, source_index, item = _WORKER["tasks"][position]
    reader: SourceReader = _WORKER["readers"][source_index]
    name = f"{reader.name}/{relative_name(item.image_path, _WORKER['bases'][source_index])}"
    if item.window is not None:
        name += "#" + "_".join(map(str, item.window))
    result = Processed(source_index=source_index, name=name)
    decoded = None
    if item.image_path.is_file():  # decode first: one open gives the size; video frames appear in load()
        decoded = _decode(reader, item.image_path, result, item.window)
        if decoded is None:
            return result
        item.size = decoded.image.size
    try:
        loaded = reader.load(item)
    except (ValueError, OSError) as error:  # an input no reader rule foresaw: skip it, named, never crash the build
        result.skipped = _skipped_dict(reader.skip(item.annotation_path or item.image_path,
                                                   f"unreadable annotation: {type(error).__name__}: {error}"))
        return result
    result.notes = [_skipped_dict(note) for note in loaded.notes]
    if loaded.record is None:
        result.skipped = _skipped_dict(loaded.skipped)
        return result
    record = loaded.record
    decoded = decoded or _decode(reader, record.image_path, result)
    if decoded is None:
        return result
    try:
        if record.captions:
            captions = five_captions(record.captions)
        else:
            captions = b2c.box_to_captions(record.boxes, record.width, record.height, image_id=name,
                                           seed=_WORKER["seed"])
    except ValueError as error:  # b2c.NoUsableObjectsError is a ValueError
        result.skipped = _skipped_dict(reader.skip(record.image_path, f"no captions: {error}"))
        return result
    result.phash = dedup.phash_value(decoded.image)
    result.row = {"captions": captions, "source": record.source, "boxes": [box.as_dict() for box in record.boxes]}
    result.converted_from = decoded.converted_from
    max_side = _WORKER["max_side"]
    if max_side and max(decoded.image.size) > max_side:
        resized = fit_max_side(decoded.image, max_side)
        x_scale, y_scale = resized.width / decoded.image.width, resized.height / decoded.image.height
        result.row["boxes"] = [scaled_box(box, x_scale, y_scale) for box in result.row["boxes"]]
        buffer = io.BytesIO()
        resized.save(buffer, **TRAINING_JPEG)
        target = _WORKER["converted_dir"] / f"{index:08d}.jpg"
        result.stored, result.stored_size, result.temporary = str(target), target.write_bytes(buffer.getvalue()), True
    elif decoded.passthrough:
        result.stored = str(record.image_path)
        result.stored_size = os.stat(record.image_path).st_size
    else:
        target = _WORKER["converted_dir"] / f"{index:08d}.png"
        result.stored, result.stored_size = str(target), target.write_bytes(encode_png(decoded.image))
        result.temporary = True
    return result


def task_chunks(sizes: Sequence[int], num_proc: int, max_items: int = _MAX_CHUNK,
                max_bytes: int = _MAX_CHUNK_BYTES, groups: Sequence[str | None] | None = None) -> list[range]:
    """Consecutive task positions in chunks of at most ``max_items`` tasks (fewer when there are few tasks
    per process) and, past each chunk's first task, at most ``max_bytes`` of input files (``sizes``). Tasks
    with the same non-None ``groups`` entry (the windows of one tile) stay in one chunk whatever their number:
    one worker then decodes the tile once for all of them."""
    groups = groups if groups is not None else [None] * len(sizes)
    max_items = max(1, min(max_items, len(sizes) // (4 * num_proc)))
    chunks, start, total = [], 0, 0
    for position, size in enumerate(sizes):
        if position > start:
            group, previous = groups[position], groups[position - 1]
            if group is not None or previous is not None:  # a tile's windows form a chunk of their own
                split = group != previous
            else:
                split = position - start == max_items or total + size > max_bytes
            if split:
                chunks.append(range(start, position))
                start, total = position, 0
        total += size
    if start < len(sizes):
        chunks.append(range(start, len(sizes)))
    return chunks


def file_size(path: Path) -> int:
    """Bytes of a task's image file (0 where there is no file yet, such as a video frame still to extract)."""
    return _stat(str(path))[1] or 0


def _process_chunk(chunk: range) -> list[Processed]:
    return [_process(position) for position in chunk]


def _run(tasks: list[tuple[int, int, Item]], readers: list[SourceReader], config: CorpusConfig,
         converted_dir: Path) -> Iterator[Processed]:
    """Process every task, in order, in ``config.num_proc`` processes, with a progress bar."""
    initargs = (readers, tasks, config.seed, str(converted_dir), config.max_side)
    with progress_bar(total=len(tasks), desc="decode, hash, caption", unit="img") as progress, lanczos.single_threaded_blas():
        if config.num_proc <= 1 or len(tasks) < 2:
            _init_worker(*initargs)
            for position in range(len(tasks)):
                yield _process(position)
                progress.update()
            decoded_whole.cache_clear()  # the last large tile cut into windows
            return
        chunks = task_chunks([file_size(item.image_path) for _, _, item in tasks], config.num_proc,
                             groups=[str(item.image_path) if item.window else None for _, _, item in tasks])
        with multiprocessing.get_context().Pool(config.num_proc, initializer=_init_worker, initargs=initargs) as pool:
            for results in pool.imap(_process_chunk, chunks):
                yield from results
                progress.update(len(results))


def _stat(path: str) -> list[Any]:
    """[file, size, mtime] of a scanned path (a video frame ``file#frame`` stats its file; missing: None)."""
    file = path.split("#", 1)[0]
    try:
        info = os.stat(file)
    except OSError:
        return [file, None, None]
    return [file, info.st_size, info.st_mtime_ns]


def fingerprint(config: CorpusConfig, scanned: Sequence[Item | Skipped]) -> str:
    """Hash of the build's inputs: options that change the output and every scanned file's size and mtime."""
    options = {key: value for key, value in asdict(config).items()
               if key not in ("output", "num_proc", "config", "force", *PUSH_KEYS)}
    files = []
    for entry in scanned:
        if isinstance(entry, Skipped):
            files.append(_stat(entry.path))
        else:
            files.append(_stat(str(entry.image_path)))
            if entry.annotation_path is not None:
                files.append(_stat(str(entry.annotation_path)))
    if config.exclude_near:
        files.extend(_stat(str(path)) for path in sorted(Path(config.exclude_near).rglob("*")) if path.is_file())
    payload = json.dumps({"options": options, "files": files}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def test_image_hashes(path: Path, num_proc: int = 1) -> tuple[np.ndarray, list[str]]:
    """p-Hashes and names of benchmark test images: an HF dataset folder (every split, column ``image``) or
    any folder of image files (searched recursively)."""
    if (path / "README.md").is_file() or any(path.rglob("*.parquet")):
        try:
            loaded = datasets.load_dataset(str(path))
        except (DatasetGenerationError, ValueError, OSError) as error:  # a damaged shard, a malformed card
            cause = error.__cause__ or error
            raise UserError(f"--exclude-near {path}", f"not a readable dataset folder ({type(cause).__name__}: "
                            f"{(str(cause).splitlines() or [''])[0][:200]})",
                            "give a folder of images or a dataset folder built by build_benchmarks") from None
        hashes, names = [], []
        for split, dataset in loaded.items():
            for row_index, row in enumerate(progress_bar(dataset, desc=f"p-Hash {path.name}/{split}", unit="img")):
                hashes.append(dedup.phash_value(row["image"]))
                names.append(f"{path.name}/{split}[{row_index}]" + (f" {row['filename']}" if "filename" in row else ""))
        return np.array(hashes, dtype=np.uint64), names
    files = image_files(path)
    if not files:
        raise FileNotFoundError(f"--exclude-near {path}: no images and no HF dataset (README.md / *.parquet) there")
    hashes, skipped = dedup.phash_images(files, num_proc)
    unreadable = {entry.path for entry in skipped}
    for entry in skipped:
        logger.warning("--exclude-near: %s: %s", entry.path, entry.reason)
    return hashes, [str(file) for file in files if str(file) not in unreadable]


def _skipped_dict(entry: Skipped) -> dict[str, Any]:
    return {"path": entry.path, "reason": entry.reason, "line": entry.line}


class _CorpusWriter:
    """Writes processed images as corpus rows, in order: excludes near-test images, de-duplicates (keep-first over
    everything seen so far) batch by batch, records each decision in its source's report entry, and removes the
    converted PNG copies once they are in a shard."""

    def __init__(self, writer: ShardWriter, source_stats: list[dict[str, Any]], test_hashes: np.ndarray,
                 test_names: list[str], max_distance: int):
        self.writer, self.source_stats = writer, source_stats
        self.test_hashes, self.test_names, self.max_distance = test_hashes, test_names, max_distance
        self.deduplicator = dedup.KeepFirstFilter(max_distance)
        self.compared: list[str] = []  # names of the candidates the deduplicator has seen, by its index
        self.batch: list[Processed] = []
        self.batch_bytes = 0
        self.unwritten: deque[tuple[int, Path]] = deque()  # (row, file) of the temporary copies kept, not yet written

    def add(self, result: Processed) -> None:
        """Record a skip, or queue a candidate; a full batch (by count or bytes) is settled at once."""
        stats = self.source_stats[result.source_index]
        stats["annotation_notes"].extend(result.notes)
        if result.row is None:
            stats["skipped"].append(result.skipped)
            return
        self.batch.append(result)
        self.batch_bytes += result.stored_size
        if len(self.batch) == _SETTLE_BATCH or self.batch_bytes >= _SETTLE_BYTES:
            self._settle()

    def close(self) -> list[Path]:
        """Settle the last batch, close the shards (their paths are returned) and free the converted copies."""
        self._settle()
        shards = self.writer.close()
        for _, path in self.unwritten:  # written by close
            path.unlink()
        return shards

    def _settle(self) -> None:
        """Exclude, de-duplicate and write the queued batch, in order."""
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        hashes = np.array([result.phash for result in batch], dtype=np.uint64)
        removed: set[int] = set()
        for train_index, test_index, distance in dedup.near_test_images(hashes, self.test_hashes, self.max_distance):
            removed.add(train_index)
            result = batch[train_index]
            self.source_stats[result.source_index]["excluded"].append(
                {"image": result.name, "test_image": self.test_names[test_index], "distance": int(distance)})
        remaining = [index for index in range(len(batch)) if index not in removed]
        self.compared.extend(batch[index].name for index in remaining)
        first = len(self.compared) - len(remaining)
        for removed_index, kept_index, distance in self.deduplicator.add(hashes[remaining]):
            result = batch[remaining[removed_index - first]]
            removed.add(remaining[removed_index - first])
            self.source_stats[result.source_index]["duplicates"].append(
                {"image": result.name, "kept": self.compared[kept_index], "distance": int(distance)})
        for index, result in enumerate(batch):
            if index in removed:
                if result.temporary:
                    Path(result.stored).unlink()
                continue
            stats = self.source_stats[result.source_index]
            stats["kept"] += 1
            if result.converted_from:
                stats["converted"].append({"image": result.name, "from": result.converted_from})
            if result.temporary:
                self.unwritten.append((self.writer.num_rows, Path(result.stored)))
            self.writer.write({"image": ImageFile(result.stored, result.name, result.stored_size), **result.row})
        while self.unwritten and self.unwritten[0][0] < self.writer.rows_written:  # in a shard now: free its disk
            self.unwritten.popleft()[1].unlink()


def build_corpus(config: CorpusConfig) -> dict[str, Any]:
    """Build the corpus folder ``config.output`` and return its build report (also written into the folder)."""
    if not config.output:
        raise ValueError("no --output given: the folder to write the dataset into")
    if config.num_proc < 1:
        raise ValueError(f"--num-proc must be >= 1, got {config.num_proc}")
    if config.max_side is not None and config.max_side < 1:
        raise ValueError(f"--max-side must be >= 1 pixel, got {config.max_side}")
    output = Path(config.output)
    api = check_push(config)  # before any work: a push without a token or write access fails here
    options = config.options_for()
    readers = [get_reader(name, path, **options.get(name, {})) for name, path in config.sources()]
    names = [reader.name for reader in readers]
    if len(set(names)) != len(names):
        raise ValueError(f"--source: each format may be given once, got {names} (merge their folders or build twice)")

    scanned: list[tuple[int, Item | Skipped]] = []
    for source_index, reader in enumerate(readers):
        for entry in progress_bar(reader.checked_scan(), desc=f"scan {reader.name}", unit="file"):
            scanned.append((source_index, entry))
    digest = fingerprint(config, [entry for _, entry in scanned])
    report_path = output / REPORT_NAME
    if not config.force and report_path.is_file():
        try:
            previous = json.loads(report_path.read_text(encoding="utf-8"))
        except ValueError as error:  # a damaged report: the folder is rebuilt
            logger.warning("%s: unreadable (%s): rebuilding", report_path, error)
            previous = {}
        if previous.get("fingerprint") == digest:
            problem = shards_problem(output, previous.get("shards"))
            if problem is None:
                logger.info("%s is up to date (same inputs and options); pass --force to rebuild", output)
                _push(config, api)
                return previous
            logger.warning("%s: same inputs and options, but %s: rebuilding", output, problem)

    storage = "original bytes for 8-bit RGB JPEG/PNG, lossless PNG after conversion otherwise"
    if config.max_side:
        storage = (f"longer side at most {config.max_side} px: larger images resized (Lanczos) and stored as JPEG "
                   f"quality 95 (4:4:4), boxes scaled with them; smaller ones as {storage}")
    report: dict[str, Any] = {"fingerprint": digest, "config": {k: v for k, v in asdict(config).items()
                                                                if k not in ("force", *PUSH_KEYS)},
                              "storage": storage,
                              "stale_partials_removed": remove_stale_partials(output), "totals": {}, "sources": {}}
    per_source = report["sources"]
    for reader, (_, path) in zip(readers, config.sources()):
        per_source[reader.name] = {"path": str(path), "license": reader.license, "citation": reader.citation,
                                   "read": 0, "kept": 0, "skipped": [], "duplicates": [], "excluded": [],
                                   "converted": [], "annotation_notes": []}
    tasks = []
    for index, (source_index, entry) in enumerate(scanned):
        stats = per_source[readers[source_index].name]
        stats["read"] += 1
        if isinstance(entry, Skipped):
            stats["skipped"].append(_skipped_dict(entry))
        else:
            tasks.append((index, source_index, entry))

    test_hashes, test_names = (test_image_hashes(Path(config.exclude_near), config.num_proc) if config.exclude_near
                               else (np.empty(0, dtype=np.uint64), []))
    with atomic_folder(output) as folder:
        converted_dir = folder / "_converted"
        converted_dir.mkdir()
        writer = _CorpusWriter(ShardWriter(folder, "train", CORPUS_FEATURES, config.max_shard_mb * 1024 * 1024),
                               [per_source[reader.name] for reader in readers], test_hashes, test_names,
                               config.max_distance)
        # Batches are settled while the workers decode the next images, so writing overlaps decoding.
        for result in _run(tasks, readers, config, converted_dir):
            writer.add(result)
        shards = writer.close()
        shutil.rmtree(converted_dir)

        for stats in per_source.values():
            stats["counts"] = {key: len(stats[key]) for key in ("skipped", "duplicates", "excluded", "converted",
                                                                "annotation_notes")}
        report["totals"] = {key: sum(stats[key] if key in ("read", "kept") else stats["counts"][key]
                                     for stats in per_source.values())
                            for key in ("read", "kept", "skipped", "duplicates", "excluded")}
        for name, stats in per_source.items():
            accounted = stats["kept"] + sum(stats["counts"][key] for key in ("skipped", "duplicates", "excluded"))
            if accounted != stats["read"]:
                raise RuntimeError(f"report of source {name}: read {stats['read']} != accounted {accounted}")
        if report["totals"]["kept"] == 0:
            raise empty_corpus(output, report)
        report["shards"] = parquet_shard_digests(folder)
        write_json(folder / REPORT_NAME, report)
        (folder / "README.md").write_text(corpus_card(report, card_metadata({"train": shards}, folder, CORPUS_FEATURES)),
                                          encoding="utf-8")
        (folder / LICENSE_NAME).write_text(licence_text("the RemoteCLIP-style caption corpus", [
            (name, stats["license"], stats["citation"]) for name, stats in per_source.items()]), encoding="utf-8")
    logger.info("corpus %s: %s", output, report["totals"])
    _push(config, api)
    return report


def empty_corpus(output: Path, report: dict[str, Any]) -> UserError:
    """The error of a build that kept no image (a corpus no loader can read): its report is written beside
    ``output`` (left as it was) and named, with the first reason an image was skipped."""
    report_path = output.parent / f"{output.name}.{REPORT_NAME}"
    write_json(report_path, report)
    skipped = [entry for stats in report["sources"].values() for entry in stats["skipped"]]
    first = ""
    if skipped:
        path, reason = skipped[0]["path"], skipped[0]["reason"]
        first = f"; first: {reason if reason.startswith(path) else f'{path}: {reason}'}"
    return UserError(f"--output {output}", f"no image was kept (read {report['totals']['read']}, skipped "
                     f"{report['totals']['skipped']}, duplicates {report['totals']['duplicates']}, excluded "
                     f"{report['totals']['excluded']}{first}); nothing was written",
                     f"see {report_path} for every skipped file")


def _push(config: CorpusConfig, api: Any) -> None:
    """Push the built folder when ``--push-to-hub`` is given; the report's paths relative to each source."""
    if not config.push_to_hub:
        return
    roots = {name: source_base(path) for name, path in config.sources()}
    if config.exclude_near:
        roots["exclude_near"] = Path(config.exclude_near)
    push_dataset(Path(config.output), config, roots, api, "Upload the RemoteCLIP-style caption corpus (rclip-hf build_corpus)")


def corpus_card(report: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The dataset card of a corpus: YAML (``metadata`` with configs and features) + licences, counts, rules."""
    sources = report["sources"]
    metadata = {"pretty_name": "RemoteCLIP-style caption corpus", "license": "other",
                "license_name": "remoteclip-corpus-sources", "license_link": LICENSE_NAME,
                "task_categories": ["zero-shot-image-classification", "image-to-text", "text-retrieval"],
                "task_ids": ["image-captioning"], "tags": ["remote-sensing", "remoteclip", "image-text"], **metadata}
    rows = "\n".join(f"| {name} | {s['read']} | {s['kept']} | {s['counts']['skipped']} | {s['counts']['duplicates']} "
                     f"| {s['counts']['excluded']} | {s['license']} |" for name, s in sources.items())
    totals = report["totals"]
    body = f"""# RemoteCLIP-style caption corpus

Built by `python -m dataset_builders.build_corpus` (rclip-hf) from the sources' own release formats, following
RemoteCLIP (Liu et al., 2024): detection boxes become five captions by Box-to-Caption (B2C), segmentation
masks become boxes by Mask-to-Box (M2B) first, human-captioned images keep their captions (the first five,
cycled when fewer), and near-duplicate images (64-bit p-Hash, Hamming distance <= {report['config']['max_distance']})
are removed keeping the first one met.

Columns: `image` (Image), `captions` (list of exactly 5 str), `source` (format name), `boxes` (list of
`{{label, x_min, y_min, x_max, y_max}}` in pixels, empty for captioned sources). One split: `train`.

Images: {report['storage']}.

| source | read | kept | skipped | duplicates | excluded | licence |
|---|---|---|---|---|---|---|
{rows}
| **total** | {totals['read']} | {totals['kept']} | {totals['skipped']} | {totals['duplicates']} | {totals['excluded']} | |

Every skipped file, removed duplicate (with its kept twin and distance), excluded image and clipped or dropped
annotation is listed in `{REPORT_NAME}`. The licence of each source applies to its images (`{LICENSE_NAME}`);
most are for academic research use only.

Citations: {"; ".join(s['citation'] for s in sources.values() if s['citation'])}.
"""
    return card_text(metadata, body)
