"""`rclip-hf index`: build, resume, prune or verify an embedding index of image files, a dataset or the windows of
scenes; `rclip-hf index migrate` and `rclip-hf index export` convert and export one."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import UserError
from ..inference.search import COMMIT_EVERY, COMMIT_SECONDS
from .options import BANDS_HELP, ModelOptions, flag_help, load_model_for, parse_options, storage_options
from .output import emit

HELP = "build (or resume) an embedding index over an image folder or a dataset"


@dataclass(kw_only=True)
class IndexOptions(ModelOptions):
    """Options of `rclip-hf index`."""

    model: str | None = field(default=None, metadata=flag_help(
        "RemoteCLIP/CLIP model folder or Hub id (not with --verify)"))
    source: list[str] | None = field(default=None, metadata=flag_help(
        "Image folders or files, or a Hugging Face dataset folder (Parquet/Arrow files or save_to_disk) or Hub "
        "dataset id owner/name (its --split); with "
        "--window, scenes (repeatable), also COG URLs and STAC sources (see --asset); an index folder inside it is "
        "never read", nargs="+", action="extend"))
    output: str = field(metadata=flag_help(
        "Index folder or object-store URI such as s3://bucket/prefix (created, or resumed when it exists)"))
    window: int | None = field(default=None, metadata=flag_help("Cut each scene into windows of this many pixels"))
    stride: int | None = field(default=None, metadata=flag_help("Pixels between windows (default: the window)"))
    window_metres: float | None = field(default=None, metadata=flag_help(
        "Window side in metres, by each GeoTIFF's ground sample distance"))
    stride_metres: float | None = field(default=None, metadata=flag_help("Stride in metres (default: the window)"))
    bands: str | None = field(default=None, metadata=flag_help(BANDS_HELP))
    asset: str | None = field(default=None, metadata=flag_help(
        "STAC sources (Item, ItemCollection, Catalog/Collection JSON, stac-geoparquet): the asset of each item "
        "(default: visual, else the first RGB COG)"))
    allow_full_download: bool = field(default=False, metadata=flag_help(
        "Read a remote scene that is not a COG by downloading it whole (else refused)"))
    max_nodata: float = field(default=0.5, metadata=flag_help("Skip windows with a larger share of nodata pixels"))
    num_processes: int = field(default=1, metadata=flag_help("Processes embedding windows (each loads the model)"))
    split: str = field(default="train", metadata=flag_help("Dataset split (dataset sources)"))
    image_column: str = field(default="image", metadata=flag_help("Image column (dataset sources)"))
    id_column: str | None = field(default=None, metadata=flag_help(
        "Id column (dataset sources; default: row number)"))
    batch_size: int = field(default=32, metadata=flag_help("Images per batch"))
    num_workers: int = field(default=2, metadata=flag_help("Image-decoding threads"))
    build_ann: Literal["auto", "yes", "no"] = field(default="auto", metadata=flag_help(
        "Build the ANN (IVF-HNSW-SQ) index of the embeddings: auto = when the index holds 200,000 items or more"))
    commit_every: int = field(default=COMMIT_EVERY, metadata=flag_help("Commit progress every N embedded items"))
    commit_seconds: float = field(default=COMMIT_SECONDS, metadata=flag_help(
        "... or every T seconds, whichever first"))
    prune: bool = field(default=False, metadata=flag_help(
        "Remove the items of image files and dataset rows that no longer exist (with --window: the windows of scenes "
        "not in --source)"))
    verify: bool = field(default=False, metadata=flag_help(
        "Only check the index (unique ids, unit-length embeddings of the model's size, metadata)"))
    add_source: bool = field(default=False, metadata=flag_help("Add a --source the index was not built from"))
    force: bool = field(default=False, metadata=flag_help("Let --prune remove more than half of the index"))
    storage_option: list[str] | None = field(default=None, metadata=flag_help(
        "Object-store option KEY=VALUE (repeatable), e.g. endpoint=http://127.0.0.1:9000 or region=eu-west-1; "
        "credentials come from the usual AWS environment and config", nargs="+", action="extend"))


def run_index(argv: list[str]) -> int:
    """`rclip-hf index`: embed a source into an index; prints what was added and what failed. `rclip-hf index
    migrate OLD NEW` converts an index of the format before LanceDB, `rclip-hf index export INDEX --output F`
    writes its items as GeoParquet."""
    from ..inference.search import build_index, verify_index
    from ..inference.windows import WindowGeometry, parse_bands

    if argv and argv[0] in ("migrate", "export"):
        return _index_tool(argv)
    options = parse_options(IndexOptions, argv, prog="rclip-hf index", description=HELP)
    storage = storage_options(options.storage_option)
    if options.verify:
        problems = verify_index(options.output, storage)
        for problem in problems:
            print(f"{options.output}: {problem}", file=sys.stderr)
        if problems:
            raise UserError(options.output, f"the index is damaged ({len(problems)} problem(s) above)",
                            "build it again into a new folder")
        emit([{"index": options.output, "verified": True}], options.format)
        return 0
    for flag in ("model", "source"):
        if getattr(options, flag) is None:
            raise UserError(f"--{flag}", "required to build an index", "or pass --verify to check one")
    if options.commit_seconds <= 0:
        raise UserError(f"--commit_seconds {options.commit_seconds}", "must be positive")
    from ..inference.dataset_folder import is_hub_dataset_id
    from ..inference.remote import check_remote, is_remote
    from ..inference.stac import is_stac_source

    for source in options.source:
        if is_remote(source):
            check_remote(source, options.allow_full_download)  # a 404, a timeout, not a COG: one line
        elif not Path(source).exists() and not is_hub_dataset_id(source):  # a Hub id loads through load_dataset
            raise FileNotFoundError(f"index source not found: {source}")
    if WindowGeometry(options.window, options.stride, options.window_metres, options.stride_metres).given:
        return _index_scenes(options)  # (a stride alone is refused by WindowGeometry, not ignored)
    scene_only = [source for source in options.source if is_remote(source) or is_stac_source(source)]
    if scene_only or options.asset is not None:
        raise UserError(f"--source {scene_only[0] if scene_only else options.source[0]}", "STAC sources and remote "
                        "COGs are scenes", "give --window PX or --window-metres M")
    if options.num_processes != 1:
        raise ValueError("--num-processes works on windows of scenes: give --window or --window-metres too")
    if len(options.source) > 1:  # item ids are paths relative to the source: two folders could share ids
        raise ValueError(f"--source: {len(options.source)} sources given; whole images are indexed from one folder "
                         "or dataset per index (several sources work with --window)")
    model, processor = load_model_for(options)
    report = build_index(options.source[0], options.output, model, processor, batch_size=options.batch_size,
                         num_workers=options.num_workers, split=options.split,
                         image_column=options.image_column, id_column=options.id_column, ann=options.build_ann,
                         commit_every=options.commit_every, commit_seconds=options.commit_seconds,
                         prune=options.prune, storage_options=storage, add_source=options.add_source,
                         force=options.force, bands=parse_bands(options.bands))
    rows = [{"index": report.index, "added": report.added, "changed": report.changed,
             "already_indexed": report.already_indexed, "pruned": report.pruned, "missing": report.missing,
             "total": report.total, "failed": len(report.failures), "ann": report.ann,
             "failure_report": _failure_report(report.index)}]
    emit(rows, options.format, document=asdict(report))
    return 0


def _index_scenes(options: IndexOptions) -> int:
    """`rclip-hf index --window ...`: windows of scenes, on one or many processes."""
    from ..inference.scenes import WindowOptions, build_scene_index
    from ..inference.windows import parse_bands

    windows = WindowOptions(window=options.window, stride=options.stride, window_metres=options.window_metres,
                            stride_metres=options.stride_metres, bands=parse_bands(options.bands),
                            max_nodata=options.max_nodata, allow_full_download=options.allow_full_download)
    if options.num_processes < 1:
        raise ValueError(f"--num-processes {options.num_processes}: must be >= 1")
    if options.id_column is not None:
        raise ValueError(f"--id-column {options.id_column}: windows of dataset rows are named by the row number; "
                         "leave --id-column out with --window")
    if options.num_processes > 1:
        model, processor = options.model, None  # each process loads it
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:  # accelerate launch: each process on its own device
        from ..inference.scenes import launched_state
        from ..loading import load_model

        model, processor = load_model(options.model, dtype=options.dtype, device=str(launched_state().device))
    else:
        model, processor = load_model_for(options)
    report = build_scene_index(options.source, options.output, model, processor, options=windows,
                               batch_size=options.batch_size, num_processes=options.num_processes,
                               device=options.device, ann=options.build_ann, commit_every=options.commit_every,
                               commit_seconds=options.commit_seconds, prune=options.prune, split=options.split,
                               image_column=options.image_column, asset=options.asset,
                               storage_options=storage_options(options.storage_option),
                               add_source=options.add_source, force=options.force, dtype=options.dtype)
    rows = [{"index": report.index, "scenes": report.scenes, "added": report.added,
             "already_indexed": report.already_indexed, "nodata_windows": report.nodata_windows,
             "changed_scenes": report.changed_scenes, "pruned_windows": report.pruned,
             "missing_scenes": report.missing_scenes,
             "total": report.total, "failed": len(report.failures), "processes": report.processes,
             "threads": report.threads, "ann": report.ann, "failure_report": _failure_report(report.index)}]
    emit(rows, options.format, document=asdict(report))
    return 0


def _failure_report(index: str) -> str:
    """Where a build's failures are: `failures.json` of a local index; the printed report for object storage."""
    from ..inference.index import FAILURES_FILE, is_local

    return str(Path(index) / FAILURES_FILE) if is_local(index) else "(this report: --format json lists them)"


def _index_tool(argv: list[str]) -> int:
    """`rclip-hf index migrate OLD NEW` and `rclip-hf index export INDEX --output FILE.parquet`."""
    from ..arguments import ArgumentParser
    from ..inference.index import EmbeddingIndex, migrate_index

    parser = ArgumentParser(prog=f"rclip-hf index {argv[0]}")
    if argv[0] == "migrate":
        parser.description = "convert an index of the format before LanceDB (index.json and shards) into a new index"
        parser.add_argument("old", help="index folder of the old format")
        parser.add_argument("new", help="new index folder or object-store URI")
    else:
        parser.description = "write an index's items (without embeddings) as GeoParquet 1.1"
        parser.add_argument("index", help="index folder or object-store URI")
        parser.add_argument("--output", required=True, help="GeoParquet file to write")
    parser.add_argument("--storage-option", "--storage_option", dest="storage_option", nargs="+", action="extend",
                        help="object-store option KEY=VALUE (repeatable)")
    options = parser.parse_args(argv[1:])
    storage = storage_options(options.storage_option)
    if argv[0] == "migrate":
        rows = [{"index": options.new, "migrated_from": options.old,
                 "items": migrate_index(options.old, options.new, storage)}]
    else:
        rows = [{"index": options.index, "output": options.output,
                 "items": EmbeddingIndex.open(options.index, storage).export(options.output)}]
    emit(rows, "table")
    return 0
