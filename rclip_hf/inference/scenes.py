"""Search inside large scenes: an embedding index of the windows of rasters, with where each window lies.

`build_scene_index` cuts every scene (GeoTIFF/COG, PNG, JPEG; files or folders; the rows of dataset folders) into
windows (`windows.py`) and embeds them into an `EmbeddingIndex`. Each item is one window; besides `id`
(`<scene>#<left>,<top>,<width>,<height>`), `path` (the scene: a file, or `<folder>?split=S&image=C&row=N` for a
dataset row), `row` (the dataset row, -1 for files) and the scene's key (`size`, `mtime_ns`, `digest`), its
item-table row holds:

- `left`, `top`, `width`, `height`: the pixel window (clipped to the scene);
- `crs`: the scene's CRS (`EPSG:n` or WKT), null when the scene is not georeferenced;
- `scene_geometry`: WKB Polygon of the window in the scene's CRS (null when not georeferenced);
- `geometry`: WKB Polygon of the window in longitude/latitude (EPSG:4326), and `bbox` its extent (GeoParquet 1.1
  covering), so each shard's table is GeoParquet that geopandas, QGIS and DuckDB read as it is.

The manifest's `scenes` maps each scene to its key: a file's size, mtime and BLAKE2b digest, a dataset row's byte
length and digest of its stored image (`row_key`, mtime -1) — and `windows` records the window options. A re-run
embeds again the windows of a scene whose file or row changed (by the rule of image files and rows of image
indexes), with `prune` removes those of scenes no longer in the sources, and refuses other window options than the
index's.

Many processes (`num_processes=N`, or `accelerate launch -m rclip_hf.cli index ...`): the rows of windows of all
scenes are grouped by the row of the raster's blocks (tiles or strips) their top lies in, so that two processes do
not both decompress one block, and group `g` of all scenes' groups, in order, goes to process `g % N`; each process
writes its own part index under `parts/` (a kill loses at most its unwritten shard), and when all are done the
parts' shards are moved into the index and its manifest (each shard once, even when the merge itself is interrupted
and re-run). A re-run skips the windows already embedded. Each process uses `OMP_NUM_THREADS` torch threads when it
is set (`accelerate launch` and torchrun set it), else its share of the cores it may run on (`cores // N`).
The first process holds the index's lock for the whole build; progress is committed every `commit_every` windows,
every full shard or every `commit_seconds`, whichever comes first.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm
from transformers import CLIPModel, ProcessorMixin

from ..embeddings import encode_images
from ..errors import UserError
from ..images import IMAGE_SUFFIXES, image_files
from ..loading import resolve_model
from . import geo
from .dataset_folder import ROW_BATCH, numbered_rows
from .index import (
    FAILURES_FILE,
    MANIFEST_FILE,
    EmbeddingIndex,
    ItemKey,
    atomic_write,
    file_key,
    index_lock,
    new_shard_name,
    row_key,
    shard_digests,
)
from .search import COMMIT_EVERY, COMMIT_SECONDS, BuildReport, build_faiss_if_wanted, is_dataset_folder
from .windows import (
    MAX_NODATA_FRACTION,
    PixelWindow,
    Scene,
    SceneWindow,
    WindowGeometry,
    dataset_row_scene,
    dataset_rows,
    open_scene,
    parse_dataset_row,
)

logger = logging.getLogger(__name__)

#: Folder of an index holding the part indexes of the processes of a many-process build.
PARTS_DIR = "parts"
#: Window options that fix the windows of a scene: an index holds windows of one setting of them.
GEOMETRY_OPTIONS = ("window", "stride", "window_metres", "stride_metres", "bands")


@dataclass(frozen=True)
class WindowOptions(WindowGeometry):
    """How scenes are cut: the window geometry (pixels or metres, checked by `WindowGeometry`), bands, nodata share."""

    bands: tuple[int, ...] | None = None
    max_nodata: float = MAX_NODATA_FRACTION

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.given:
            raise ValueError("give a window size: --window PX or --window-metres M")
        if not 0 <= self.max_nodata <= 1:
            raise ValueError(f"--max-nodata {self.max_nodata}: must be in [0, 1]")


@dataclass
class SceneBuildReport(BuildReport):
    """A build report with the windows skipped as mostly nodata, the scenes seen, the processes used, the torch
    threads of each, and the seconds each spent reading and embedding its windows (its start-up not counted).
    `added` counts the windows embedded; `changed`, `pruned` and `missing` count windows of the index (of scenes
    whose file changed, dropped to be embedded again; of scenes gone from the sources, removed with `prune` or
    kept), and `changed_scenes`, `pruned_scenes` and `missing_scenes` their scenes."""

    nodata_windows: int = 0
    scenes: int = 0
    processes: int = 1
    changed_scenes: int = 0
    pruned_scenes: int = 0
    missing_scenes: int = 0
    threads: int = 1
    part_seconds: list[float] = field(default_factory=list)


def scene_files(sources: Sequence[str | Path], exclude: str | Path | None = None, split: str = "train",
                image_column: str = "image") -> list[Path | str]:
    """The scenes of `sources`: raster files (files, and folders scanned recursively, sorted, without those in
    `exclude`), and the rows of dataset folders (their `split`, images in `image_column`) as `dataset_row_scene`
    names."""
    excluded = Path(exclude).resolve() if exclude is not None else None
    files: list[Path | str] = []
    for source in sources:
        path = Path(source)
        if path.is_file():
            files.append(path)
        elif path.is_dir() and is_dataset_folder(path, excluded):
            files.extend(dataset_row_scene(source, split, image_column, row)
                         for row in range(len(dataset_rows(str(source), split, image_column, check=True))))
        elif path.is_dir():
            found = [file for file in image_files(path)
                     if excluded is None or excluded not in file.resolve().parents]
            if not found:
                raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            files.extend(found)
        else:
            raise FileNotFoundError(f"index source not found: {path}")
    return files


def window_id(scene: str, window: PixelWindow) -> str:
    """The item id of a window: `<scene>#<left>,<top>,<width>,<height>`."""
    return f"{scene}#{window.left},{window.top},{window.width},{window.height}"


def window_record(scene: Scene, window: PixelWindow) -> dict[str, Any]:
    """The scene columns of one window (see the module docstring)."""
    record: dict[str, Any] = {"left": window.left, "top": window.top, "width": window.width,
                              "height": window.height, "crs": None, "scene_geometry": None, "geometry": None,
                              "bbox": None}
    if scene.crs is not None:
        native = geo.window_ring(window, scene.transform)
        lonlat = geo.to_lonlat(native, scene.crs, scene.path)
        record.update(crs=geo.crs_string(scene.crs), scene_geometry=geo.polygon_wkb(native),
                      geometry=geo.polygon_wkb(lonlat), bbox=dict(zip(("xmin", "ymin", "xmax", "ymax"),
                                                                     geo.envelope(lonlat))))
    return record


def bbox_mask(index: EmbeddingIndex, bbox: Sequence[float], bbox_crs: str = geo.LONLAT) -> torch.Tensor:
    """Bool (N,): the items whose longitude/latitude extent meets `bbox` (in `bbox_crs`)."""
    query = geo.bbox_to_lonlat(bbox, bbox_crs)
    boxes = index.column("bbox")
    return torch.tensor([box is not None and geo.intersects(query, list(box.values())) for box in boxes],
                        dtype=torch.bool)


# ----- building ------------------------------------------------------------------------------------------------
def build_scene_index(
    sources: Sequence[str | Path],
    output: str | Path,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    *,
    options: WindowOptions,
    batch_size: int = 32,
    shard_size: int = 1024,
    num_processes: int = 1,
    device: str | None = None,
    faiss: Literal["auto", "yes", "no"] = "auto",
    commit_every: int = COMMIT_EVERY,
    commit_seconds: float = COMMIT_SECONDS,
    wait: bool = False,
    prune: bool = False,
    split: str = "train",
    image_column: str = "image",
) -> SceneBuildReport:
    """Embed every window of the scenes of `sources` (raster files, folders of them, dataset folders: `split`,
    `image_column`) into the index at `output` (resumed when it exists), on `num_processes` processes, or on the
    processes of an `accelerate launch` (see the module docstring). The first process holds the index's lock
    (`wait`: queue behind another build, else `IndexBusyError`), re-embeds the scenes whose file changed and, with
    `prune`, removes the windows of scenes that are not in `sources` any more."""
    files = scene_files(sources, exclude=output, split=split, image_column=image_column)
    rank, world = _launched_rank()
    with index_lock(output, wait=wait) if rank == 0 else contextlib.nullcontext():
        return _build_scene_index(sources, files, output, model, processor, options, batch_size, shard_size,
                                  num_processes, device, faiss, (commit_every, commit_seconds), rank, world, prune)


def _build_scene_index(sources: Sequence[str | Path], files: list[Path], output: str | Path,
                       model: CLIPModel | str | Path, processor: ProcessorMixin | None, options: WindowOptions,
                       batch_size: int, shard_size: int, num_processes: int, device: str | None,
                       faiss: Literal["auto", "yes", "no"], commits: tuple[int, float], rank: int,
                       world: int, prune: bool = False) -> SceneBuildReport:
    """`build_scene_index` once its lock is held (by the first process)."""
    if num_processes > 1 and world > 1:
        raise ValueError("--num-processes spawns processes itself: do not combine it with accelerate launch")
    if num_processes > 1 and not isinstance(model, (str, Path)):
        raise ValueError("num_processes > 1 needs the model as a folder or Hub id (each process loads it)")
    # Spawned processes start first: they import torch and load the model while this one prepares the index.
    workers, ready = (_start_workers(files, output, str(model), options, batch_size, shard_size, num_processes,
                                     device, commits) if num_processes > 1 else ([], None))
    try:
        if rank == 0:
            model, processor = resolve_model(model, processor)
            index = EmbeddingIndex.open_or_create(output, model, source=", ".join(map(str, sources)))
            _record_options(index, options)
            merge_parts(output)  # the parts of a killed many-process build join the index before scenes are compared
            sync = _sync_scenes(EmbeddingIndex.open(output), files, prune, shard_size)
    except BaseException:
        for worker in workers:
            worker.terminate()
            worker.join()
        raise
    if num_processes > 1:
        ready.set()
        for worker in workers:
            worker.join()
        failed = [rank for rank, worker in enumerate(workers) if worker.exitcode != 0]
        if failed:
            raise RuntimeError(f"index worker(s) {failed} failed (see their messages above); re-run the same "
                               "command to finish: finished windows are kept")
        parts = [_read_part_report(output, rank, num_processes) for rank in range(num_processes)]
    elif world > 1:
        state = launched_state()
        set_process_threads(int(os.environ.get("LOCAL_WORLD_SIZE", world)), rank, world)
        if rank != 0:
            model, processor = resolve_model(model, processor)
        state.wait_for_everyone()  # rank 0 has created the index
        parts = [index_part(files, output, model, processor, options, batch_size, shard_size, rank, world,
                            commits)]
        state.wait_for_everyone()
        if rank != 0:
            return parts[0]
        parts = [_read_part_report(output, rank, world) for rank in range(world)]
    else:
        parts = [index_part(files, output, model, processor, options, batch_size, shard_size, 0, 1, commits)]
    index = merge_parts(output)
    failures = [failure for part in parts for failure in part.failures]
    atomic_write(index.directory / FAILURES_FILE, lambda path: path.write_text(json.dumps(failures, indent=2)))
    build_faiss_if_wanted(index, faiss)
    return SceneBuildReport(index=str(index.directory), added=sum(part.added for part in parts),
                            already_indexed=sum(part.already_indexed for part in parts), total=len(index),
                            failures=failures, faiss=index.faiss_is_current(),
                            nodata_windows=sum(part.nodata_windows for part in parts), scenes=len(files),
                            processes=max(num_processes, world), **asdict(sync), threads=parts[0].threads,
                            part_seconds=[seconds for part in parts for seconds in part.part_seconds])


def index_part(files: Sequence[Path], output: str | Path, model: CLIPModel, processor: ProcessorMixin,
               options: WindowOptions, batch_size: int, shard_size: int, rank: int, world: int,
               commits: tuple[int, float] = (COMMIT_EVERY, COMMIT_SECONDS)) -> SceneBuildReport:
    """Process `rank` of `world`: embed its rows of windows (group `g` of all scenes' groups of rows that share a
    row of blocks goes to `g % world`) into the index (`world` = 1) or into its part index under `parts/`,
    committing every `commits` = (windows, seconds) or full shard."""
    start = time.monotonic()
    main = EmbeddingIndex.open(output)
    main.check_model(model)
    index = main if world == 1 else EmbeddingIndex.open_or_create(_part_dir(output, rank, world), model)
    done = set(main.ids()) | set(index.ids()) | _ids_in_parts(output)
    keys = main.manifest.get("scenes", {})
    report = SceneBuildReport(index=str(index.directory), added=0, already_indexed=0, total=0, scenes=len(files),
                              threads=torch.get_num_threads())
    batch: list[tuple[Scene, SceneWindow]] = []
    commit_every, commit_seconds = commits
    last_commit = time.monotonic()

    def embed() -> None:
        nonlocal last_commit
        if not batch:
            return
        embeddings = encode_images(model, processor, [item.image for _, item in batch], batch_size=len(batch),
                                   show_progress=False)  # (n, D)
        index.add([window_id(item.scene, item.window) for _, item in batch], [item.scene for _, item in batch],
                  [_row(item.scene) for _, item in batch], embeddings,
                  keys=[ItemKey(**keys.get(item.scene, {})) for _, item in batch],
                  extra=[window_record(scene, item.window) for scene, item in batch])
        report.added += len(batch)
        batch.clear()
        if (index.queued >= min(commit_every, shard_size)
                or time.monotonic() - last_commit >= commit_seconds):
            index.commit(shard_size)
            last_commit = time.monotonic()

    progress = tqdm(desc=f"index windows (process {rank + 1}/{world})", unit="window")
    for scene, top, lefts, side in _my_rows(files, options, rank, world, report):
        wanted = [left for left in lefts if window_id(scene.path, _window(scene, left, top, side)) not in done]
        report.already_indexed += len(lefts) - len(wanted)
        if not wanted:
            continue
        try:
            windows, skipped = scene.read_row(top, wanted, side, options.max_nodata)
        except (OSError, ValueError) as error:
            report.failures.append({"id": scene.path, "path": scene.path, "reason": str(error)})
            logger.warning("skipped windows of %s: %s", scene.path, error)
            continue
        report.nodata_windows += skipped
        for item in windows:
            batch.append((scene, item))
            if len(batch) == batch_size:
                embed()
        progress.update(len(wanted))
    embed()
    progress.close()
    index.commit(shard_size)
    report.total = len(index)
    report.part_seconds = [time.monotonic() - start]
    if world > 1:
        atomic_write(index.directory / "part-report.json",
                      lambda path: path.write_text(json.dumps(asdict(report), indent=2)))
    return report


def _my_rows(files: Sequence[Path], options: WindowOptions, rank: int, world: int,
             report: SceneBuildReport) -> Iterator[tuple[Scene, int, tuple[int, ...], int]]:
    """(scene, top, lefts, window side) of this process's rows of windows; scenes that fail to open are reported."""
    group = 0
    for path in files:
        try:
            scene = open_scene(path, options.bands)
        except (OSError, ValueError) as error:
            report.failures.append({"id": str(path), "path": str(path), "reason": str(error)})
            logger.warning("skipped scene %s: %s", path, error)
            continue
        with scene:
            try:
                side, stride = options.resolve(scene)
                window_record(scene, PixelWindow(0, 0, 1, 1))  # a CRS that cannot be reprojected fails here, once
            except ValueError as error:
                report.failures.append({"id": str(path), "path": str(path), "reason": str(error)})
                logger.warning("skipped scene %s: %s", path, error)
                continue
            lefts, tops = scene.grid(side, stride)
            for _, rows in itertools.groupby(tops, key=lambda top: top // scene.block_height):
                if group % world == rank:
                    for top in rows:
                        yield scene, top, lefts, side
                group += 1


def _row(scene: str) -> int:
    """The dataset row of a dataset-row scene; -1 for a file."""
    parsed = parse_dataset_row(scene)
    return -1 if parsed is None else parsed[3]


def _window(scene: Scene, left: int, top: int, side: int) -> PixelWindow:
    return PixelWindow(left, top, min(side, scene.width - left), min(side, scene.height - top))


def _record_options(index: EmbeddingIndex, options: WindowOptions) -> None:
    """Record the window options in the manifest; refuse options that cut scenes otherwise than the windows the
    index holds (`GEOMETRY_OPTIONS`), naming the flag."""
    previous = index.manifest.get("windows")
    current = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(options).items()}
    if previous is not None and len(index) > 0:
        before, now = _geometry(previous), _geometry(current)
        differing = sorted((name for name in GEOMETRY_OPTIONS if before[name] != now[name]),
                           key=lambda name: now[name] is None)  # name a flag given now first
        if differing:
            name = differing[0]
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"{flag} {_flag_value(now[name])}",
                            f"the index at {index.directory} holds windows made with {flag} "
                            f"{_flag_value(before[name])}, and windows of different settings are not mixed",
                            f"give {flag} {_flag_value(before[name])}, or build into a new --output folder")
    index.manifest["windows"] = current
    index._write_manifest()


def _geometry(options: dict[str, Any]) -> dict[str, Any]:
    """The `GEOMETRY_OPTIONS` of recorded window options, strides defaulted to the window as the build does."""
    geometry = {name: options.get(name) for name in GEOMETRY_OPTIONS}
    if geometry["window_metres"] is None:
        geometry["stride"] = geometry["stride"] or geometry["window"]
        geometry["stride_metres"] = None
    else:
        geometry["window"] = geometry["stride"] = None
        geometry["stride_metres"] = geometry["stride_metres"] or geometry["window_metres"]
    geometry["bands"] = list(geometry["bands"]) if geometry["bands"] else None
    return geometry


def _flag_value(value: Any) -> str:
    if value is None:
        return "(not given)"
    return ",".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class _SceneSync:
    """What comparing the sources with the index did: the `SceneBuildReport` fields of the same names."""

    changed: int = 0
    changed_scenes: int = 0
    pruned: int = 0
    pruned_scenes: int = 0
    missing: int = 0
    missing_scenes: int = 0


def _sync_scenes(index: EmbeddingIndex, files: Sequence[Path | str], prune: bool, shard_size: int) -> _SceneSync:
    """Key the scenes of `files` (the manifest's `scenes`) as image files and dataset rows of image indexes are
    keyed; drop the windows of scenes whose file or row changed (the build re-embeds them), and with `prune` those
    of scenes not in `files`, in one commit. Scenes indexed without a recorded key (older indexes, and dataset
    rows before rows were keyed) keep their windows and get their key recorded."""
    windows_of: dict[str, list[str]] = {}
    for item_id, path in zip(index.ids(), index.column("path")):
        windows_of.setdefault(path, []).append(item_id)
    recorded: dict[str, dict[str, Any]] = dict(index.manifest.get("scenes", {}))
    sync, remove = _SceneSync(), set()
    row_keys = _row_keys([file for file in files if isinstance(file, str)], recorded)
    for file in files:
        name = str(file)
        old = ItemKey(**recorded[name]) if name in recorded else None
        # an unreadable file or row is reported when it is opened
        key = row_keys[name] if isinstance(file, str) else file_key(file, old)[0]
        if key is None:
            continue
        recorded[name] = asdict(key)
        if old is not None and name in windows_of:  # windows without a recorded key (older indexes) are kept
            sync.changed_scenes += 1
            sync.changed += len(windows_of[name])
            remove.update(windows_of[name])
    listed = {str(file) for file in files}
    gone = sorted(set(windows_of) - listed)
    if gone and prune:
        sync.pruned_scenes, sync.pruned = len(gone), sum(len(windows_of[scene]) for scene in gone)
        remove.update(item_id for scene in gone for item_id in windows_of[scene])
        for scene in gone:
            recorded.pop(scene, None)
        logger.info("removed %d window(s) of %d scene(s) no longer in the sources", sync.pruned, len(gone))
    elif gone:
        sync.missing_scenes, sync.missing = len(gone), sum(len(windows_of[scene]) for scene in gone)
        logger.warning("%d indexed scene(s) are not in the sources (e.g. %s): pass --prune to remove their windows",
                       len(gone), gone[0])
    index.manifest["scenes"] = recorded
    index.commit(shard_size, remove=remove)  # the new keys and the removals in one manifest update
    if not remove:
        index._write_manifest()
    return sync


def _row_keys(scenes: Sequence[str], recorded: dict[str, dict[str, Any]]) -> dict[str, ItemKey | None]:
    """The new key (`row_key`) of each dataset-row scene in `scenes`, None when unchanged since its `recorded` key or
    unreadable; the rows' undecoded image cells are read a batch at a time, each dataset once."""
    rows_of: dict[tuple[str, str, str], dict[int, str]] = {}
    for scene in scenes:
        source, split, column, row = parse_dataset_row(scene)
        rows_of.setdefault((source, split, column), {})[row] = scene
    keys: dict[str, ItemKey | None] = {}
    for (source, split, column), wanted in rows_of.items():
        dataset = dataset_rows(source, split, column)
        progress = tqdm(total=len(wanted), desc=f"key rows of {source}", unit="row", disable=len(wanted) <= ROW_BATCH)
        for row, values in numbered_rows(dataset):
            if row in wanted:
                scene = wanted[row]
                old = ItemKey(**recorded[scene]) if scene in recorded else None
                keys[scene] = row_key(values[column], old)[0]
                progress.update()
        progress.close()
    return keys


def launched_state() -> Any:
    """accelerate's `PartialState` of this `accelerate launch` process (on the CPU when ACCELERATE_USE_CPU is set)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def _launched_rank() -> tuple[int, int]:
    """(rank, world size) of an `accelerate launch` / torchrun process; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def _part_dir(output: str | Path, rank: int, world: int) -> Path:
    return Path(output) / PARTS_DIR / f"rank-{rank:05d}-of-{world:05d}"


def _ids_in_parts(output: str | Path) -> set[str]:
    ids: set[str] = set()
    for manifest in sorted((Path(output) / PARTS_DIR).glob(f"*/{MANIFEST_FILE}")):
        ids.update(EmbeddingIndex.open(manifest.parent).ids())
    return ids


def process_threads(processes: int) -> int:
    """Torch threads for each of `processes` processes on this machine: `OMP_NUM_THREADS` when set, else the cores
    this process may run on (its CPU affinity) shared among them, at least 1."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // processes)


def set_process_threads(processes: int, rank: int, world: int, threads: int | None = None) -> int:
    """Set this process's torch threads (`threads`, else `process_threads(processes)`) and log them."""
    threads = threads or process_threads(processes)
    torch.set_num_threads(threads)
    logger.info("index process %d/%d: %d torch thread(s)%s", rank + 1, world, threads,
                " (OMP_NUM_THREADS)" if os.environ.get("OMP_NUM_THREADS") else f" (cores // {processes})")
    return threads


def _start_workers(files: Sequence[Path], output: str | Path, model: str, options: WindowOptions, batch_size: int,
                   shard_size: int, world: int, device: str | None,
                   commits: tuple[int, float]) -> tuple[list[Any], Any]:
    """Spawn the `world` index processes and return them with the event that lets them start once the index is
    ready (created, parts merged, scenes compared)."""
    context = multiprocessing.get_context("spawn")
    threads = process_threads(world)
    logger.info("spawning %d index processes with %d torch thread(s) each", world, threads)
    ready = context.Event()
    workers = [context.Process(target=_part_worker, args=(files, output, model, options, batch_size, shard_size, rank,
                                                           world, device, commits, threads, ready))
               for rank in range(world)]
    for worker in workers:
        worker.start()
    return workers, ready


def _part_worker(files: Sequence[Path], output: str | Path, model: str, options: WindowOptions, batch_size: int,
                 shard_size: int, rank: int, world: int, device: str | None, commits: tuple[int, float],
                 threads: int, ready: Any) -> None:
    from ..loading import load_model

    set_process_threads(world, rank, world, threads)
    loaded, processor = load_model(model, device=device or "cpu")
    ready.wait()  # the index is ready
    index_part(files, output, loaded, processor, options, batch_size, shard_size, rank, world, commits)


def _read_part_report(output: str | Path, rank: int, world: int) -> SceneBuildReport:
    path = _part_dir(output, rank, world) / "part-report.json"
    return SceneBuildReport(**json.loads(path.read_text()))


def merge_parts(output: str | Path) -> EmbeddingIndex:
    """Move the shards of the part indexes under `parts/` into the index at `output`, each once, and the parts'
    scenes into its manifest (under fresh names, with their digests); then remove the parts. Safe to re-run after
    an interruption: a shard copied but not yet in the manifest is copied again (the stray copy is removed by the
    next build)."""
    index = EmbeddingIndex.open(output)
    for manifest_path in sorted((index.directory / PARTS_DIR).glob(f"*/{MANIFEST_FILE}")):
        part = EmbeddingIndex.open(manifest_path.parent)
        merged = {shard.get("origin") for shard in index.manifest["shards"]}
        for shard in list(part.manifest["shards"]):
            origin = f"{part.directory.name}/{shard['name']}@{part.manifest['created']}"
            if origin not in merged:
                name = new_shard_name()
                for suffix in (".safetensors", ".parquet"):
                    shutil.copyfile(part.directory / f"{shard['name']}{suffix}", index.directory / f"{name}{suffix}")
                index.manifest["shards"].append({"name": name, "count": shard["count"], "origin": origin,
                                                 "digests": shard_digests(index.directory, name)})
                index.manifest["num_items"] += shard["count"]
                index._write_manifest()
        shutil.rmtree(part.directory)
    parts = index.directory / PARTS_DIR
    if parts.is_dir() and not any(parts.iterdir()):
        parts.rmdir()
    return index


# ----- hits ------------------------------------------------------------------------------------------------------
def merge_hits(hits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fuse overlapping hit windows of one scene into regions: each region is the bounding box of a connected group
    of overlapping windows, scored by its best window, re-ranked by score; `merged` counts its windows."""
    groups: list[list[dict[str, Any]]] = []
    for hit in hits:
        if "left" not in hit or hit["left"] is None:
            groups.append([hit])
            continue
        touching = [group for group in groups if any(_overlap(hit, other) for other in group)]
        merged = [hit] + [other for group in touching for other in group]
        groups = [group for group in groups if group not in touching] + [merged]
    regions = []
    for group in groups:
        best = max(group, key=lambda hit: hit["score"])
        region = dict(best)
        if len(group) > 1:
            left, top = min(hit["left"] for hit in group), min(hit["top"] for hit in group)
            right = max(hit["left"] + hit["width"] for hit in group)
            bottom = max(hit["top"] + hit["height"] for hit in group)
            box = PixelWindow(left, top, right - left, bottom - top)
            region.update(left=left, top=top, width=box.width, height=box.height, id=window_id(best["path"], box),
                          **_region_geometry(best, box))
        region["merged"] = len(group)
        regions.append(region)
    regions.sort(key=lambda hit: -hit["score"])
    return [{**region, "rank": rank} for rank, region in enumerate(regions, start=1)]


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["path"] == b["path"] and b.get("left") is not None
            and a["left"] < b["left"] + b["width"] and b["left"] < a["left"] + a["width"]
            and a["top"] < b["top"] + b["height"] and b["top"] < a["top"] + a["height"])


def _region_geometry(best: dict[str, Any], box: PixelWindow) -> dict[str, Any]:
    """Geometry columns of the pixel `box` of a merged region, through the map transform that the `best` window's
    corners fix (three corners: an exact affine transform)."""
    if best.get("scene_geometry") is None:
        return {}
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS
    from rasterio.transform import from_gcps

    corners = geo.wkb_ring(best["scene_geometry"])
    pixels = geo.pixel_ring(PixelWindow(best["left"], best["top"], best["width"], best["height"]))
    transform = from_gcps([GroundControlPoint(row=y, col=x, x=map_x, y=map_y)
                           for (x, y), (map_x, map_y) in zip(pixels[:3], corners[:3])])
    native = geo.window_ring(box, transform)
    lonlat = geo.to_lonlat(native, CRS.from_string(best["crs"]), best["path"])
    return {"scene_geometry": geo.polygon_wkb(native), "geometry": geo.polygon_wkb(lonlat),
            "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), geo.envelope(lonlat)))}


def hits_geojson(hits: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An RFC 7946 FeatureCollection (EPSG:4326, counter-clockwise rings) of the georeferenced hits only; the hits on
    scenes without a CRS are in `pixel_hits_geojson`. Properties: rank, score, scene, pixel window, id, crs (and the
    hit's `query` and `merged` when it has them)."""
    return geo.feature_collection([_hit_feature(hit, geo.wkb_ring(hit["geometry"]), geo.LONLAT)
                                   for hit in hits if hit.get("geometry") is not None])


def pixel_hits_geojson(hits: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The hits on scenes without a CRS as a FeatureCollection of pixel polygons (x right, y down; `"coordinates":
    "pixel"`): GeoJSON in shape, not in EPSG:4326, so kept apart from `hits_geojson` (`pixel_geojson_path`)."""
    return geo.feature_collection([
        _hit_feature(hit, geo.pixel_ring(PixelWindow(hit.get("left") or 0, hit.get("top") or 0,
                                                     hit.get("width") or 0, hit.get("height") or 0)), "pixel")
        for hit in hits if hit.get("geometry") is None])


def pixel_geojson_path(output: str | Path) -> Path:
    """Where the pixel hits of the GeoJSON file `output` go: `NAME.pixel.geojson` beside `NAME.geojson`."""
    output = Path(output)
    name = output.stem if output.suffix.lower() in (".geojson", ".json") else output.name
    return output.with_name(f"{name}.pixel.geojson")


def _hit_feature(hit: dict[str, Any], ring: geo.Ring, space: str) -> dict[str, Any]:
    properties = {"rank": hit["rank"], "score": hit["score"], "scene": hit["path"], "id": hit["id"],
                  "window": [hit.get("left"), hit.get("top"), hit.get("width"), hit.get("height")],
                  "crs": hit.get("crs"), "coordinates": space}
    if hit.get("query"):
        properties["query"] = hit["query"]
    if "merged" in hit:
        properties["merged"] = hit["merged"]
    return geo.feature(ring, properties)


def write_hits_parquet(hits: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write hits (with a `query` column) as GeoParquet: the item-table columns plus `query`, `rank`, `score`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pa.table({"query": pa.array([hit.get("query", "") for hit in hits], pa.string()),
                     "rank": pa.array([hit["rank"] for hit in hits], pa.int64()),
                     "score": pa.array([hit["score"] for hit in hits], pa.float64()),
                     "id": pa.array([hit["id"] for hit in hits], pa.string()),
                     "path": pa.array([hit["path"] for hit in hits], pa.string()),
                     "row": pa.array([hit.get("row", -1) for hit in hits], pa.int64())})
    pq.write_table(geo.scene_columns(base, hits), path)


__all__ = ["PARTS_DIR", "SceneBuildReport", "WindowOptions", "bbox_mask", "build_scene_index",
           "hits_geojson", "index_part", "launched_state", "merge_hits", "merge_parts", "pixel_geojson_path",
           "pixel_hits_geojson", "scene_files",
           "window_id", "window_record", "write_hits_parquet"]
