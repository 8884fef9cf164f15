"""Search inside large scenes: an embedding index of the windows of rasters, with where each window lies.

`build_scene_index` cuts every scene (GeoTIFF/COG, PNG, JPEG; files or folders; the rows of dataset folders) into
windows (`windows.py`) and embeds them into an `EmbeddingIndex`. A process opens each scene once: its windows are
counted (the progress bar's total) and read at that one opening, with at most `OPEN_AHEAD` scenes held open ahead of
the one being read. Each item is one window; besides `id`
(`<scene>#<left>,<top>,<width>,<height>`), `path` (the scene: a file, or `<folder>?split=S&image=C&row=N` for a
dataset row), `row` (the dataset row, -1 for files) and the scene's key (`size`, `mtime_ns`, `digest`), its
item-table row holds:

- `left`, `top`, `width`, `height`: the pixel window (clipped to the scene);
- `crs`: the scene's CRS (`EPSG:n` or WKT), null when the scene is not georeferenced;
- `scene_geometry`: WKB Polygon of the window in the scene's CRS (null when not georeferenced);
- `geometry`: WKB Polygon of the window in longitude/latitude (EPSG:4326), and its extent, stored as the columns
  `xmin`, `ymin`, `xmax`, `ymax` (which bbox prefilters read) and shown in a hit as `bbox`; `rclip-hf index export`
  writes the table as GeoParquet 1.1 (with `bbox` as its covering column) for geopandas, QGIS and DuckDB;
- `stac_item`, `stac_collection`, `stac_datetime`: the STAC item of a scene from a STAC source (`stac.py`; null for
  other scenes).

The index's `scenes` table maps each scene to its key: a file's size, mtime and BLAKE2b digest, a dataset row's byte
length and digest of its stored image (`row_key`, mtime -1), a remote COG's length, `Last-Modified` and `ETag`
(`remote.py`) — and the index's metadata records the window options (`windows`). A re-run embeds again the windows
of a scene whose file, row or remote copy changed (by the rule of image files and rows of image indexes), with
`prune` removes those of scenes no longer in the sources, and refuses other window options than the index's.

Many processes (`num_processes=N`, or `accelerate launch -m rclip_hf.cli index ...`, on one machine or several
writing to one object-store URI): the rows of windows of all scenes are grouped by the row of the raster's blocks
(tiles or strips) their top lies in, so that two processes do not both decompress one block, and group `g` of all
scenes' groups, in order, goes to process `g % N`. The first process creates the index and compares the scenes;
then each process upserts its windows straight into the index's table every `commit_every` windows or
`commit_seconds`, whichever comes first (Lance orders concurrent commits), so a kill loses at most the windows not
yet committed and a re-run skips the windows already embedded. Spawned processes end with their parent. Each
process uses `OMP_NUM_THREADS` torch threads when it is set (`accelerate launch` and torchrun set it), else its
share of the cores it may run on (`cores // N`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPModel, ProcessorMixin

from ..embeddings import encode_images
from ..errors import UserError
from ..images import IMAGE_SUFFIXES, image_files, printable_path
from ..loading import resolve_model
from ..progress import progress_bar
from ..staging import replaced_file
from . import geo
from .dataset_folder import ROW_BATCH, is_hub_dataset_id, numbered_rows
from .index import (
    EmbeddingIndex,
    ItemKey,
    check_prune,
    file_key,
    is_local,
    row_key,
    unstorable_name,
    write_failures,
)
from .remote import RemoteSceneError, is_remote, remote_stamp
from .search import (
    COMMIT_EVERY,
    COMMIT_SECONDS,
    AnnChoice,
    BuildReport,
    build_ann_if_wanted,
    check_not_output,
    is_dataset_folder,
    resolved_source,
)
from .stac import STAC_COLUMNS, is_stac_source, stac_scenes
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

#: Window options that fix the windows of a scene: an index holds windows of one setting of them.
GEOMETRY_OPTIONS = ("window", "stride", "window_metres", "stride_metres", "bands")


@dataclass(frozen=True)
class WindowOptions(WindowGeometry):
    """How scenes are cut: the window geometry (pixels or metres, checked by `WindowGeometry`), bands, nodata share."""

    bands: tuple[int, ...] | None = None
    max_nodata: float = MAX_NODATA_FRACTION
    allow_full_download: bool = False  # remote scenes that are not COGs: download them whole (else refused)

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
                image_column: str = "image", asset: str | None = None,
                stac_columns: dict[str, dict[str, Any]] | None = None) -> list[Path | str]:
    """The scenes of `sources`: raster files (files, and folders scanned recursively, sorted, without those in
    `exclude`), the rows of dataset folders (their `split`, images in `image_column`) as `dataset_row_scene`
    names, URLs of remote COGs, and the `asset` of each item of STAC sources (`stac.py`; their `STAC_COLUMNS` go
    to `stac_columns`, by scene)."""
    excluded = Path(exclude).resolve() if exclude is not None else None
    files: list[Path | str] = []
    for source in sources:
        path = Path(source)
        if is_remote(str(source)):
            files.append(str(source))
        elif is_stac_source(path):
            for scene in stac_scenes(path, asset):
                files.append(scene.href if is_remote(scene.href) else Path(scene.href))
                if stac_columns is not None:
                    stac_columns[str(files[-1])] = scene.columns
        elif path.is_file():
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
        elif is_hub_dataset_id(source):
            raise UserError(f"--source {source}", "a Hub dataset id is indexed as whole images, not in windows",
                            "leave --window out, or save the dataset to a folder and give that")
        else:
            raise FileNotFoundError(f"index source not found: {path}")
    return list(dict.fromkeys(files))  # a scene listed twice (STAC items sharing an asset) is read once


def window_id(scene: str, window: PixelWindow) -> str:
    """The item id of a window: `<scene>#<left>,<top>,<width>,<height>`."""
    return f"{scene}#{window.left},{window.top},{window.width},{window.height}"


def window_record(scene: Scene, window: PixelWindow, stac: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scene columns of one window (see the module docstring); `stac`: its scene's `STAC_COLUMNS`."""
    record: dict[str, Any] = {"left": window.left, "top": window.top, "width": window.width,
                              "height": window.height, "crs": None, "scene_geometry": None, "geometry": None,
                              "bbox": None, **dict.fromkeys(STAC_COLUMNS), **(stac or {})}
    if scene.crs is not None:
        native = geo.window_ring(window, scene.transform)
        lonlat = geo.to_lonlat(native, scene.crs, scene.path)
        record.update(crs=geo.crs_string(scene.crs), scene_geometry=geo.polygon_wkb(native),
                      geometry=geo.polygon_wkb(lonlat), bbox=dict(zip(("xmin", "ymin", "xmax", "ymax"),
                                                                     geo.envelope(lonlat))))
    return record


def bbox_mask(index: EmbeddingIndex, bbox: Sequence[float], bbox_crs: str = geo.LONLAT) -> torch.Tensor:
    """Bool (N,): the items whose longitude/latitude extent meets `bbox` (in `bbox_crs`; touching counts)."""
    return index.bbox_mask(geo.bbox_to_lonlat(bbox, bbox_crs))


# ----- building ------------------------------------------------------------------------------------------------
def build_scene_index(
    sources: Sequence[str | Path],
    output: str | Path,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    *,
    options: WindowOptions,
    batch_size: int = 32,
    num_processes: int = 1,
    device: str | None = None,
    ann: AnnChoice = "auto",
    commit_every: int = COMMIT_EVERY,
    commit_seconds: float = COMMIT_SECONDS,
    prune: bool = False,
    split: str = "train",
    image_column: str = "image",
    storage_options: dict[str, str] | None = None,
    add_source: bool = False,
    force: bool = False,
    asset: str | None = None,
    dtype: str | None = None,
) -> SceneBuildReport:
    """Embed every window of the scenes of `sources` (raster files, folders of them, dataset folders: `split`,
    `image_column`; remote COGs; STAC sources: their `asset`) into the index at `output` (a folder or object-store URI, resumed when it exists), on
    `num_processes` processes, or on the processes of an `accelerate launch` (see the module docstring). The first
    process re-embeds the scenes whose file changed and, with `prune`, removes the windows of scenes that are not in
    `sources` any more; then every process upserts its windows straight into the index. Sources are deduplicated
    by their resolved path and remembered by the index (another source needs `add_source`); a prune of more than
    half of the index needs `force`. Spawned processes load `model` in `dtype` (a `torch_dtype` name)."""
    unique: dict[str, str | Path] = {}
    for source in sources:
        unique.setdefault(resolved_source(source), source)
    sources = list(unique.values())  # by resolved path: a file given twice is read once
    for source in sources:
        check_not_output(source, str(output))
    stac: dict[str, dict[str, Any]] = {}  # the STAC columns of each scene of a STAC source
    files = scene_files(sources, exclude=output if is_local(output) else None, split=split,
                        image_column=image_column, asset=asset, stac_columns=stac)
    rank, world = _launched_rank()
    if num_processes > 1 and world > 1:
        raise ValueError("--num-processes spawns processes itself: do not combine it with accelerate launch")
    if num_processes > 1 and not isinstance(model, (str, Path)):
        raise ValueError("num_processes > 1 needs the model as a folder or Hub id (each process loads it)")
    output, commits = str(output), (commit_every, commit_seconds)
    # Spawned processes start first: they import torch and load the model while this one prepares the index.
    workers, ready, reports = (_start_workers(files, output, str(model), options, batch_size, num_processes, device,
                                              commits, storage_options, stac, dtype)
                               if num_processes > 1 else ([], None, None))
    try:
        if rank == 0:
            model, processor = resolve_model(model, processor)
            index = EmbeddingIndex.open_or_create(output, model, source=", ".join(map(str, sources)),
                                                  storage_options=storage_options, scenes=True)
            _record_options(index, options)
            index.check_sources([resolved_source(source) for source in sources], add_source)
            sync = _sync_scenes(index, files, prune, force)
    except BaseException:
        for worker in workers:
            worker.terminate()
            worker.join()
        raise
    if num_processes > 1:
        ready.set()
        parts = _worker_reports(workers, reports)
    elif world > 1:
        from accelerate.utils import gather_object

        state = launched_state()
        set_process_threads(int(os.environ.get("LOCAL_WORLD_SIZE", world)), rank, world)
        if rank != 0:
            model, processor = resolve_model(model, processor)
        state.wait_for_everyone()  # rank 0 has created the index and compared the scenes
        part = index_part(files, output, model, processor, options, batch_size, rank, world, commits,
                          storage_options, stac)
        parts = [SceneBuildReport(**report) for report in gather_object([asdict(part)])]
        if rank != 0:
            return part
    else:
        parts = [index_part(files, output, model, processor, options, batch_size, 0, 1, commits, storage_options,
                            stac)]
    index.refresh()
    failures = [failure for part in parts for failure in part.failures]
    write_failures(index, failures)
    build_ann_if_wanted(index, ann)
    return SceneBuildReport(index=index.uri, added=sum(part.added for part in parts),
                            already_indexed=sum(part.already_indexed for part in parts), total=len(index),
                            failures=failures, ann=index.has_ann(),
                            nodata_windows=sum(part.nodata_windows for part in parts), scenes=len(files),
                            processes=max(num_processes, world), **asdict(sync), threads=parts[0].threads,
                            part_seconds=[seconds for part in parts for seconds in part.part_seconds])


def index_part(files: Sequence[Path], output: str, model: CLIPModel, processor: ProcessorMixin,
               options: WindowOptions, batch_size: int, rank: int, world: int,
               commits: tuple[int, float] = (COMMIT_EVERY, COMMIT_SECONDS),
               storage_options: dict[str, str] | None = None,
               stac: dict[str, dict[str, Any]] | None = None) -> SceneBuildReport:
    """Process `rank` of `world`: embed its rows of windows (group `g` of all scenes' groups of rows that share a
    row of blocks goes to `g % world`) that the index does not hold yet, and upsert them into it every `commits` =
    (windows, seconds); `stac`: the STAC columns of the scenes of STAC sources, by scene."""
    start = time.monotonic()
    index = EmbeddingIndex.open(output, storage_options)
    index.check_model(model)
    done = set(index.ids())
    keys = index.scene_keys()
    stac = stac or {}
    report = SceneBuildReport(index=index.uri, added=0, already_indexed=0, total=0, scenes=len(files),
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
                  keys=[keys.get(item.scene, ItemKey()) for _, item in batch],
                  extra=[window_record(scene, item.window, stac.get(item.scene)) for scene, item in batch])
        report.added += len(batch)
        batch.clear()
        if index.queued >= commit_every or time.monotonic() - last_commit >= commit_seconds:
            index.commit()
            last_commit = time.monotonic()

    with _OpenAhead(_my_scenes(files, options, rank, world, report), OPEN_AHEAD) as scenes:
        progress = progress_bar(total=scenes.windows, desc=f"index windows (process {rank + 1}/{world})",
                                unit="window")
        for scene, rows in scenes:
            if progress.total != scenes.windows:  # scenes opened since: their windows join the total
                progress.total = scenes.windows
                progress.refresh()
            with scene:
                for top, lefts, side in rows:
                    wanted = [left for left in lefts
                              if window_id(scene.path, _window(scene, left, top, side)) not in done]
                    report.already_indexed += len(lefts) - len(wanted)
                    try:
                        read, skipped = scene.read_row(top, wanted, side, options.max_nodata) if wanted else ([], 0)
                    except (OSError, ValueError) as error:
                        read, skipped = [], 0
                        report.failures.append({"id": scene.path, "path": scene.path, "reason": str(error)})
                        logger.warning("skipped windows of %s: %s", scene.path, error)
                    report.nodata_windows += skipped
                    for item in read:
                        batch.append((scene, item))
                        if len(batch) == batch_size:
                            embed()
                    progress.update(len(lefts))
    embed()
    progress.close()
    index.commit()
    report.total = len(index)
    report.part_seconds = [time.monotonic() - start]
    return report


#: The rows of windows of a scene that one process reads: [(top, lefts, window side)].
_Rows = list[tuple[int, tuple[int, ...], int]]
#: Scenes a process holds open ahead of the one it reads (`_OpenAhead`): the progress bar's total counts their windows
#: before they are read (it is exact from the start for up to this many scenes), and no scene is opened twice.
OPEN_AHEAD = 8


def _my_scenes(files: Sequence[Path | str], options: WindowOptions, rank: int, world: int,
               report: SceneBuildReport) -> Iterator[tuple[Scene, _Rows]]:
    """Each scene of `files` that holds rows of windows of process `rank` of `world`, open (the caller closes it),
    with those rows; the other scenes are closed once their rows are counted. Group `g` of all scenes' groups of rows
    that share a row of blocks goes to process `g % world`. Each scene is opened once; scenes that fail to open or
    whose windows cannot be placed are reported."""
    group = 0
    for path in files:
        if reason := unstorable_name(path):
            report.failures.append({"id": printable_path(path), "path": printable_path(path), "reason": reason})
            logger.warning("skipped scene %s", reason)
            continue
        scene = _open_scene(path, options, report)
        if scene is None:
            continue
        try:
            side, stride = options.resolve(scene)
            window_record(scene, PixelWindow(0, 0, 1, 1))  # a CRS that cannot be reprojected fails here, once
        except BaseException as error:
            scene.close()
            if not isinstance(error, ValueError):
                raise
            report.failures.append({"id": str(path), "path": str(path), "reason": str(error)})
            logger.warning("skipped scene %s: %s", path, error)
            continue
        lefts, tops = scene.grid(side, stride)
        mine = []
        for _, block_rows in itertools.groupby(tops, key=lambda top: top // scene.block_height):
            if group % world == rank:
                mine.extend((top, lefts, side) for top in block_rows)
            group += 1
        if mine:
            yield scene, mine
        else:
            scene.close()


class _OpenAhead:
    """In a `with` block, iterate over `scenes` (`_my_scenes`) holding up to `size` more of them open than the one
    returned; `windows` counts the windows of the scenes opened so far. Leaving the block closes the scenes not
    returned."""

    def __init__(self, scenes: Iterator[tuple[Scene, _Rows]], size: int):
        self._scenes, self._size, self._ahead, self.windows = scenes, size, collections.deque(), 0

    def _open_next(self) -> bool:
        opened = next(self._scenes, None)
        if opened is None:
            return False
        self._ahead.append(opened)
        self.windows += sum(len(lefts) for _, lefts, _ in opened[1])
        return True

    def __iter__(self) -> _OpenAhead:
        return self

    def __next__(self) -> tuple[Scene, _Rows]:
        self._open_next()  # before the next scene leaves the queue, which closes the scenes still in it
        if not self._ahead:
            raise StopIteration
        return self._ahead.popleft()

    def __enter__(self) -> _OpenAhead:  # noqa: PYI034
        try:
            while len(self._ahead) < self._size and self._open_next():
                pass
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._ahead:
            self._ahead.popleft()[0].close()


def _open_scene(path: Path | str, options: WindowOptions, report: SceneBuildReport) -> Scene | None:
    """The scene at `path`, None (reported) when it cannot be opened."""
    try:
        return open_scene(path, options.bands, options.allow_full_download)
    except (OSError, ValueError) as error:
        report.failures.append({"id": str(path), "path": str(path), "reason": str(error)})
        logger.warning("skipped scene %s: %s", path, error)
        return None


def _row(scene: str) -> int:
    """The dataset row of a dataset-row scene; -1 for a file."""
    parsed = parse_dataset_row(scene)
    return -1 if parsed is None else parsed[3]


def _window(scene: Scene, left: int, top: int, side: int) -> PixelWindow:
    return PixelWindow(left, top, min(side, scene.width - left), min(side, scene.height - top))


def _record_options(index: EmbeddingIndex, options: WindowOptions) -> None:
    """Record the window options in the index's metadata; refuse options that cut scenes otherwise than the windows
    the index holds (`GEOMETRY_OPTIONS`), naming the flag."""
    previous = index.metadata.get("windows")
    current = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(options).items()}
    if previous is not None and len(index) > 0:
        before, now = _geometry(previous), _geometry(current)
        differing = sorted((name for name in GEOMETRY_OPTIONS if before[name] != now[name]),
                           key=lambda name: now[name] is None)  # name a flag given now first
        if differing:
            name = differing[0]
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"{flag} {_flag_value(now[name])}",
                            f"the index at {index.uri} holds windows made with {flag} "
                            f"{_flag_value(before[name])}, and windows of different settings are not mixed",
                            f"give {flag} {_flag_value(before[name])}, or build into a new --output folder")
    if previous != current:
        index.update_metadata(windows=current)


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


def _sync_scenes(index: EmbeddingIndex, files: Sequence[Path | str], prune: bool, force: bool = False) -> _SceneSync:
    """Key the scenes of `files` (the index's `scenes` table) as image files and dataset rows of image indexes are
    keyed (remote COGs by `ETag` and `Last-Modified`); drop the windows of scenes whose file, row or remote copy changed (the build re-embeds them), and with `prune` those
    of scenes not in `files`, in one commit; then record the new keys (a kill in between re-embeds those scenes).
    Scenes indexed without a recorded key (older indexes, and dataset rows before rows were keyed) keep their
    windows and get their key recorded."""
    windows_of: dict[str, list[str]] = {}
    for item_id, path in zip(index.ids(), index.column("path")):
        windows_of.setdefault(path, []).append(item_id)
    recorded = index.scene_keys()
    sync, remove, new_keys = _SceneSync(), set(), {}
    row_keys = _row_keys([file for file in files if isinstance(file, str) and not is_remote(file)], recorded)
    for file in files:
        name = str(file)
        old = recorded.get(name)
        # an unreadable file, row or URL is reported when it is opened
        if is_remote(file):
            key = _remote_key(name, old)
        else:
            key = row_keys[name] if isinstance(file, str) else file_key(file, old)[0]
        if key is None:
            continue
        new_keys[name] = key
        if old is not None and name in windows_of:  # windows without a recorded key (older indexes) are kept
            sync.changed_scenes += 1
            sync.changed += len(windows_of[name])
            remove.update(windows_of[name])
    listed = {str(file) for file in files}
    gone = sorted(set(windows_of) - listed)
    if gone and prune:
        check_prune(index, sum(len(windows_of[scene]) for scene in gone), force)
        sync.pruned_scenes, sync.pruned = len(gone), sum(len(windows_of[scene]) for scene in gone)
        remove.update(item_id for scene in gone for item_id in windows_of[scene])
        logger.info("removed %d window(s) of %d scene(s) no longer in the sources", sync.pruned, len(gone))
    elif gone:
        sync.missing_scenes, sync.missing = len(gone), sum(len(windows_of[scene]) for scene in gone)
        logger.warning("%d indexed scene(s) are not in the sources (e.g. %s): pass --prune to remove their windows",
                       len(gone), gone[0])
    index.commit(remove=remove)
    index.record_scenes(new_keys, remove=gone if prune else ())
    return sync


def _remote_key(url: str, old: ItemKey | None) -> ItemKey | None:
    """The new key of a remote scene (`remote_stamp`: length, `Last-Modified`, `ETag`), None when unchanged since
    its `old` key or when it does not answer (reported when it is opened)."""
    try:
        key = ItemKey(*remote_stamp(url))
    except RemoteSceneError:
        return None
    return None if key == old else key


def _row_keys(scenes: Sequence[str], recorded: dict[str, ItemKey]) -> dict[str, ItemKey | None]:
    """The new key (`row_key`) of each dataset-row scene in `scenes`, None when unchanged since its `recorded` key or
    unreadable; the rows' undecoded image cells are read a batch at a time, each dataset once."""
    rows_of: dict[tuple[str, str, str], dict[int, str]] = {}
    for scene in scenes:
        source, split, column, row = parse_dataset_row(scene)
        rows_of.setdefault((source, split, column), {})[row] = scene
    keys: dict[str, ItemKey | None] = {}
    for (source, split, column), wanted in rows_of.items():
        dataset = dataset_rows(source, split, column)
        progress = progress_bar(total=len(wanted), desc=f"key rows of {source}", unit="row",
                                disable=len(wanted) <= ROW_BATCH)
        for row, values in numbered_rows(dataset):
            if row in wanted:
                scene = wanted[row]
                keys[scene] = row_key(values[column], recorded.get(scene))[0]
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


def _start_workers(files: Sequence[Path], output: str, model: str, options: WindowOptions, batch_size: int,
                   world: int, device: str | None, commits: tuple[int, float],
                   storage_options: dict[str, str] | None,
                   stac: dict[str, dict[str, Any]], dtype: str | None = None) -> tuple[list[Any], Any, Any]:
    """Spawn the `world` index processes, each loading `model` in `dtype`; returns them, the event that lets them start once the index is ready
    (created, scenes compared) and the queue of their reports."""
    context = multiprocessing.get_context("spawn")
    threads = process_threads(world)
    logger.info("spawning %d index processes with %d torch thread(s) each", world, threads)
    ready, reports = context.Event(), context.Queue()
    workers = [context.Process(target=_part_worker, daemon=True,
                               args=(files, output, model, options, batch_size, rank, world, device, commits,
                                     storage_options, stac, threads, ready, reports, dtype))
               for rank in range(world)]
    for worker in workers:
        worker.start()
    return workers, ready, reports


def _part_worker(files: Sequence[Path], output: str, model: str, options: WindowOptions, batch_size: int,
                 rank: int, world: int, device: str | None, commits: tuple[int, float],
                 storage_options: dict[str, str] | None, stac: dict[str, dict[str, Any]], threads: int, ready: Any,
                 reports: Any, dtype: str | None = None) -> None:
    from ..loading import load_model

    _exit_with_parent()
    set_process_threads(world, rank, world, threads)
    loaded, processor = load_model(model, dtype=dtype, device=device or "cpu")
    ready.wait()  # the index is ready
    report = index_part(files, output, loaded, processor, options, batch_size, rank, world, commits,
                        storage_options, stac)
    reports.put(asdict(report))


def _exit_with_parent() -> None:
    """End this process as soon as its parent ends, even when the parent is killed (SIGKILL): a thread waits on
    the parent's sentinel (portable: no POSIX signals)."""
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    if parent is not None:
        threading.Thread(target=watch, daemon=True).start()


def _worker_reports(workers: Sequence[Any], reports: Any) -> list[SceneBuildReport]:
    """The reports of the spawned index processes, once all have ended; `RuntimeError` naming those that failed."""
    import queue

    found: list[SceneBuildReport] = []
    while len(found) < len(workers):
        try:
            found.append(SceneBuildReport(**reports.get(timeout=1.0)))
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers) and reports.empty():
                break
    for worker in workers:
        worker.join()
    failed = [rank for rank, worker in enumerate(workers) if worker.exitcode != 0]
    if failed or len(found) < len(workers):
        raise RuntimeError(f"index worker(s) {failed} failed (see their messages above); re-run the same "
                           "command to finish: finished windows are kept")
    return found


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
    properties.update({name: hit[name] for name in STAC_COLUMNS if hit.get(name) is not None})
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
    with replaced_file(path) as file:
        pq.write_table(geo.scene_columns(base, hits), file)


__all__ = ["SceneBuildReport", "WindowOptions", "bbox_mask", "build_scene_index",
           "hits_geojson", "index_part", "launched_state", "merge_hits", "pixel_geojson_path",
           "pixel_hits_geojson", "scene_files",
           "window_id", "window_record", "write_hits_parquet"]
