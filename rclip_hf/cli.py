"""`rclip-hf`: the command line of rclip-hf. Thin: each subcommand parses its options and calls a module.

    rclip-hf classify --model DIR --images a.jpg tiles/ --preset aid
    rclip-hf index    --model DIR --source tiles/ --output tiles.index
    rclip-hf index    --model DIR --source scenes/ --output scenes.index --window 256 --stride 128
    rclip-hf search   --model DIR --index tiles.index --text "a stadium next to a river" --top_k 5
    rclip-hf search   --model DIR --index scenes.index --text "airport" --merge --format geojson --html hits.html
    rclip-hf count    --model DIR --image harbour.png --object ship
    rclip-hf heatmap  --model DIR --image scene.tif --queries "airplane" "ship" --window 256 --output_dir maps/
    rclip-hf convert  --checkpoint RemoteCLIP-ViT-B-32.pt --arch ViT-B-32 --output DIR
    rclip-hf export   DIR --to open_clip --output OUT
    rclip-hf eval     --model DIR --benchmarks rsitmd,eurosat --data_dir DATA

Subcommands are entries of `COMMANDS` (a function taking the remaining arguments and returning an exit code) or of
`DELEGATED_COMMANDS` (a module whose `main(argv)` takes over; listed only when the module is importable). Results
are printed as a table, or as JSON / CSV with `--format`. Bad input (missing file, unknown preset, a folder that is
not a RemoteCLIP/CLIP model, an index of another model) prints one line `error: ...` and exits with 2 (`errors.py`;
`--debug` shows the traceback).
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import importlib
import importlib.util
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import EXIT_BAD_INPUT, UserError, entry_point
from .inference.search import COMMIT_EVERY, COMMIT_SECONDS

OutputFormat = Literal["table", "json", "csv"]
SearchFormat = Literal["table", "json", "csv", "geojson", "parquet"]
_Args = TypeVar("_Args")


@dataclass(frozen=True)
class Command:
    """A subcommand: one-line help and the function that runs it on the remaining arguments."""

    help: str
    run: Callable[[list[str]], int]


#: Subcommands implemented here, by name.
COMMANDS: dict[str, Command] = {}
#: Subcommands implemented by another module's `main(argv)`: name -> (module, help).
DELEGATED_COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("rclip_hf.convert", "convert an open_clip checkpoint (.pt) to a transformers folder"),
    "export": ("rclip_hf.export", "export a model folder back to open_clip (open_clip_config.json + safetensors)"),
    "eval": ("rclip_hf.evaluation.runner", "evaluate a model on benchmark datasets (results JSON + table)"),
    "push": ("rclip_hf.hub", "upload a model folder and its card to the Hugging Face Hub"),
    "explore": ("rclip_hf.explore.cli", "a local web app: query, label, train, review and export on a map"),
}


def command(name: str, help: str) -> Callable[[Callable[[list[str]], int]], Callable[[list[str]], int]]:
    """Decorator registering `function(argv) -> exit code` as subcommand `name`."""

    def register(function: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        COMMANDS[name] = Command(help=help, run=function)
        return function

    return register


# ----- options ------------------------------------------------------------------------------------------------------
def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass(kw_only=True)
class ModelOptions:
    """Options shared by the subcommands that run a model."""

    model: str = field(metadata=_help("RemoteCLIP/CLIP model folder (from `rclip-hf convert` or save_pretrained) or Hub id"))
    device: str | None = field(default=None, metadata=_help("Device, e.g. cpu or cuda (default: cuda when available)"))
    dtype: Literal["float32", "bfloat16", "float16"] | None = field(default=None, metadata=_help(
        "Precision of the model's weights, in the names training's --mixed_precision and eval's --dtype take "
        "(default: as saved)"))
    format: OutputFormat = field(default="table", metadata=_help("Output format"))
    max_pixels: int | None = field(default=None, metadata=_help(
        "Largest image read whole, in pixels (default: Pillow's limit, 89,478,485); heatmap reads larger scenes "
        "window by window"))


#: Help of every command's `--bands` (the rule: `images.colour_bands`).
BANDS_HELP = ("Bands of (Geo)TIFF rasters as R,G,B (or one grey band), e.g. 3,2,1 (default: the colour "
              "interpretation, else band descriptions such as red or B04, else 1,2,3); applied to each raster that "
              "has them, other files are read by their colours with a one-line note")


@dataclass(kw_only=True)
class ClassifyOptions(ModelOptions):
    """Options of `rclip-hf classify`."""

    images: list[str] = field(metadata=_help("Image files or folders (scanned recursively)", nargs="+"))
    labels: list[str] | None = field(default=None, metadata=_help("Class names (or use --preset)"))
    preset: str | None = field(default=None, metadata=_help("Benchmark preset with class names and templates, e.g. aid"))
    templates: list[str] | None = field(
        default=None, metadata=_help("Templates with {} (or 'paper' / 'ensemble'); default: the preset's or the paper's")
    )
    top_k: int = field(default=5, metadata=_help("Labels shown per image"))
    batch_size: int = field(default=32, metadata=_help("Images per batch"))
    bands: str | None = field(default=None, metadata=_help(BANDS_HELP))


@dataclass(kw_only=True)
class IndexOptions(ModelOptions):
    """Options of `rclip-hf index`."""

    model: str | None = field(default=None, metadata=_help("RemoteCLIP/CLIP model folder or Hub id (not with --verify)"))
    source: list[str] | None = field(default=None, metadata=_help(
        "Image folders or files, or a Hugging Face dataset folder (Parquet/Arrow files or save_to_disk) or Hub "
        "dataset id owner/name (its --split); with "
        "--window, scenes (repeatable), also COG URLs and STAC sources (see --asset); an index folder inside it is "
        "never read", nargs="+", action="extend"))
    output: str = field(metadata=_help(
        "Index folder or object-store URI such as s3://bucket/prefix (created, or resumed when it exists)"))
    window: int | None = field(default=None, metadata=_help("Cut each scene into windows of this many pixels"))
    stride: int | None = field(default=None, metadata=_help("Pixels between windows (default: the window)"))
    window_metres: float | None = field(
        default=None, metadata=_help("Window side in metres, by each GeoTIFF's ground sample distance"))
    stride_metres: float | None = field(default=None, metadata=_help("Stride in metres (default: the window)"))
    bands: str | None = field(default=None, metadata=_help(BANDS_HELP))
    asset: str | None = field(default=None, metadata=_help(
        "STAC sources (Item, ItemCollection, Catalog/Collection JSON, stac-geoparquet): the asset of each item "
        "(default: visual, else the first RGB COG)"))
    allow_full_download: bool = field(default=False, metadata=_help(
        "Read a remote scene that is not a COG by downloading it whole (else refused)"))
    max_nodata: float = field(default=0.5, metadata=_help("Skip windows with a larger share of nodata pixels"))
    num_processes: int = field(default=1, metadata=_help("Processes embedding windows (each loads the model)"))
    split: str = field(default="train", metadata=_help("Dataset split (dataset sources)"))
    image_column: str = field(default="image", metadata=_help("Image column (dataset sources)"))
    id_column: str | None = field(default=None, metadata=_help("Id column (dataset sources; default: row number)"))
    batch_size: int = field(default=32, metadata=_help("Images per batch"))
    num_workers: int = field(default=2, metadata=_help("Image-decoding threads"))
    build_ann: Literal["auto", "yes", "no"] = field(default="auto", metadata=_help(
        "Build the ANN (IVF-HNSW-SQ) index of the embeddings: auto = when the index holds 200,000 items or more"))
    commit_every: int = field(default=COMMIT_EVERY, metadata=_help("Commit progress every N embedded items"))
    commit_seconds: float = field(default=COMMIT_SECONDS, metadata=_help("... or every T seconds, whichever first"))
    prune: bool = field(default=False, metadata=_help(
        "Remove the items of image files and dataset rows that no longer exist (with --window: the windows of scenes "
        "not in --source)"))
    verify: bool = field(default=False, metadata=_help(
        "Only check the index (unique ids, unit-length embeddings of the model's size, metadata)"))
    add_source: bool = field(default=False, metadata=_help("Add a --source the index was not built from"))
    force: bool = field(default=False, metadata=_help("Let --prune remove more than half of the index"))
    storage_option: list[str] | None = field(default=None, metadata=_help(
        "Object-store option KEY=VALUE (repeatable), e.g. endpoint=http://127.0.0.1:9000 or region=eu-west-1; "
        "credentials come from the usual AWS environment and config", nargs="+", action="extend"))


@dataclass(kw_only=True)
class SearchOptions(ModelOptions):
    """Options of `rclip-hf search`."""

    index: str = field(metadata=_help("Index folder or object-store URI made by `rclip-hf index`"))
    text: list[str] | None = field(default=None, metadata=_help("Text queries"))
    image: list[str] | None = field(default=None, metadata=_help("Image files used as queries"))
    positive: list[str] | None = field(default=None, metadata=_help("Item ids of examples to find more of"))
    negative: list[str] | None = field(default=None, metadata=_help("Item ids of examples to avoid (with --positive)"))
    negative_weight: float = field(default=0.5, metadata=_help("Share of the negatives' mean taken off the query"))
    top_k: int = field(default=10, metadata=_help("Hits per query"))
    backend: Literal["auto", "exact", "ann"] = field(
        default="auto", metadata=_help("exact = chunked brute force; ann = the IVF-HNSW-SQ index; auto = ANN if built")
    )
    storage_option: list[str] | None = field(default=None, metadata=_help(
        "Object-store option KEY=VALUE (repeatable), as for `rclip-hf index`", nargs="+", action="extend"))
    bbox: str | None = field(default=None, metadata=_help("Keep windows meeting minx,miny,maxx,maxy (see --bbox-crs)"))
    bbox_crs: str = field(default="EPSG:4326", metadata=_help("CRS of --bbox"))
    merge: bool = field(default=False, metadata=_help("Fuse overlapping hit windows of a scene into one region"))
    format: SearchFormat = field(default="table", metadata=_help(
        "Output format; geojson = an RFC 7946 FeatureCollection in EPSG:4326 (hits on scenes without a CRS: in pixels, "
        "to NAME.pixel.geojson beside --output NAME.geojson); parquet = GeoParquet (needs --output)"))
    output: str | None = field(default=None, metadata=_help("Write the results to this file instead of stdout"))
    html: str | None = field(default=None, metadata=_help("Also write a self-contained results page (HTML)"))


@dataclass(kw_only=True)
class CountOptions(ModelOptions):
    """Options of `rclip-hf count`."""

    image: list[str] = field(metadata=_help("Image files", nargs="+"))
    object: str = field(metadata=_help("Object name, e.g. ship, plane, storage tank"))
    style: Literal["words", "digits"] = field(default="words", metadata=_help("Numbers in the captions: one / 1"))
    bands: str | None = field(default=None, metadata=_help(BANDS_HELP))


@dataclass(kw_only=True)
class HeatmapOptions(ModelOptions):
    """Options of `rclip-hf heatmap`."""

    image: str | None = field(default=None, metadata=_help("Scene: PNG/JPEG/(Geo)TIFF, read one row of windows at a time"))
    index: str | None = field(default=None, metadata=_help(
        "Instead of --image: an index made with `rclip-hf index --window`; the map comes from its windows"))
    scene: str | None = field(default=None, metadata=_help("With --index: the indexed scene to map"))
    queries: list[str] | None = field(default=None, metadata=_help(
        "Text queries (they may also follow the options, without --queries)", nargs="+"))
    output_dir: str = field(default="heatmap", metadata=_help("Folder for scores.npy, PNG overlays, GeoTIFFs"))
    grid: int = field(default=64, metadata=_help("Windows along the shorter side (the paper: 64)"))
    window: int | None = field(default=None, metadata=_help("Window side in pixels (overrides --grid)"))
    stride: int | None = field(default=None, metadata=_help("Pixels between windows (default: by --overlap)"))
    window_metres: float | None = field(default=None, metadata=_help(
        "Window side in metres, by the GeoTIFF's ground sample distance (overrides --grid)"))
    stride_metres: float | None = field(default=None, metadata=_help("Stride in metres (default: by --overlap)"))
    overlap: float = field(default=1 / 3, metadata=_help("Overlap of neighbouring windows without a stride (the paper: 1/3)"))
    batch_size: int = field(default=64, metadata=_help("Windows per batch"))
    overlay_size: int = field(default=1024, metadata=_help("Longer side of the overlays and score maps, in pixels"))
    bands: str | None = field(default=None, metadata=_help(BANDS_HELP + " (with --image; --index uses the index's)"))


#: Options that count something and must be at least 1 (0 would loop forever or divide by zero)
POSITIVE_OPTIONS = ("batch_size", "top_k", "commit_every", "grid", "window", "stride", "overlay_size",
                    "max_pixels")


def _parse(options_class: type[_Args], name: str, argv: list[str]) -> _Args:
    from .arguments import DataclassArgumentParser

    parser = DataclassArgumentParser(options_class, prog=f"rclip-hf {name}", description=COMMANDS[name].help)
    (options,) = parser.parse_args_into_dataclasses(args=argv)
    return _checked(options)


def _checked(options: _Args) -> _Args:
    """Counts must be at least 1; `--max-pixels` sets the pixel limit of `rclip_hf.images` (Pillow's own knob)."""
    for option in POSITIVE_OPTIONS:
        value = getattr(options, option, None)
        if value is not None and value < 1:
            raise UserError(f"--{option} {value}", "must be at least 1")
    if getattr(options, "max_pixels", None) is not None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = options.max_pixels
    return options


def _load(options: ModelOptions) -> tuple[Any, Any]:
    from .loading import load_model, resolve_device

    return load_model(options.model, dtype=options.dtype, device=resolve_device(options.device))


# ----- output -------------------------------------------------------------------------------------------------------
def emit(rows: list[dict[str, Any]], output_format: OutputFormat, document: Any = None) -> None:
    """Print `rows` as an aligned table or CSV, or `document` (default: the rows) as JSON."""
    if output_format == "json":
        print(json.dumps(rows if document is None else document, indent=2, default=str))
        return
    if not rows:
        return
    columns = list(rows[0])
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        print(buffer.getvalue(), end="")
        return
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip())
    print("  ".join("-" * width for width in widths))
    for line in cells:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _expand_images(paths: Sequence[str]) -> list[Path]:
    from .images import IMAGE_SUFFIXES, image_files

    images: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"image file not found: {path}")
    return images


# ----- subcommands --------------------------------------------------------------------------------------------------
@command("classify", "zero-shot classification of images against class names or a benchmark preset")
def run_classify(argv: list[str]) -> int:
    """`rclip-hf classify`: ranked labels with probabilities for each image."""
    from .inference.classify import classify, resolve_labels
    from .inference.windows import parse_bands

    options = _parse(ClassifyOptions, "classify", argv)
    parse_bands(options.bands)  # a bad --bands is refused before the model loads
    if (options.labels is None) == (options.preset is None):
        raise ValueError("give exactly one of --labels (class names) or --preset (e.g. aid, eurosat)")
    labels = options.preset if options.preset is not None else options.labels
    templates = options.templates[0] if options.templates and len(options.templates) == 1 else options.templates
    resolve_labels(labels, templates)  # reject an unknown preset or a bad template before loading the model
    images = _expand_images(options.images)
    model, processor = _load(options)
    top_k = min(options.top_k, len(resolve_labels(labels, templates)[0]))
    ranked = classify(images, labels, templates, model=model, processor=processor, top_k=top_k,
                      batch_size=options.batch_size, bands=parse_bands(options.bands))
    rows = [{"image": str(image), "rank": rank, "label": hit["label"], "score": hit["score"]}
            for image, hits in zip(images, ranked) for rank, hit in enumerate(hits, start=1)]
    emit(rows, options.format)
    return 0


@command("index", "build (or resume) an embedding index over an image folder or a dataset")
def run_index(argv: list[str]) -> int:
    """`rclip-hf index`: embed a source into an index; prints what was added and what failed. `rclip-hf index
    migrate OLD NEW` converts an index of the format before LanceDB, `rclip-hf index export INDEX --output F`
    writes its items as GeoParquet."""
    from .inference.search import build_index, verify_index
    from .inference.windows import WindowGeometry, parse_bands

    if argv and argv[0] in ("migrate", "export"):
        return _index_tool(argv)
    options = _parse(IndexOptions, "index", argv)
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
    from .inference.dataset_folder import is_hub_dataset_id
    from .inference.remote import check_remote, is_remote
    from .inference.stac import is_stac_source

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
    model, processor = _load(options)
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
    from .inference.scenes import WindowOptions, build_scene_index
    from .inference.windows import parse_bands

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
        from .inference.scenes import launched_state
        from .loading import load_model

        model, processor = load_model(options.model, dtype=options.dtype, device=str(launched_state().device))
    else:
        model, processor = _load(options)
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
    from .inference.index import FAILURES_FILE, is_local

    return str(Path(index) / FAILURES_FILE) if is_local(index) else "(this report: --format json lists them)"


def storage_options(values: list[str] | None) -> dict[str, str]:
    """`--storage-option KEY=VALUE ...` as a dict."""
    options = {}
    for value in values or []:
        key, equals, setting = value.partition("=")
        if not equals or not key:
            raise UserError(f"--storage-option {value}", "expected KEY=VALUE", "e.g. endpoint=http://127.0.0.1:9000")
        options[key] = setting
    return options


def _index_tool(argv: list[str]) -> int:
    """`rclip-hf index migrate OLD NEW` and `rclip-hf index export INDEX --output FILE.parquet`."""
    import argparse

    from .inference.index import EmbeddingIndex, migrate_index

    parser = argparse.ArgumentParser(prog=f"rclip-hf index {argv[0]}")
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


@command("search", "top-k items of an index for text or image queries")
def run_search(argv: list[str]) -> int:
    """`rclip-hf search`: hits for each --text and --image query."""
    from .inference.geo import parse_bbox
    from .inference.index import EmbeddingIndex
    from .inference.results_page import write_results_page
    from .inference.scenes import (
        hits_geojson,
        merge_hits,
        pixel_geojson_path,
        pixel_hits_geojson,
        write_hits_parquet,
    )
    from .inference.search import Examples, search

    options = _parse(SearchOptions, "search", argv)
    if not options.text and not options.image and not options.positive:
        raise ValueError("give at least one query: --text \"...\", --image FILE and/or --positive ID ...")
    if options.negative and not options.positive:
        raise ValueError("--negative needs --positive: the query is the positives' mean minus the negatives'")
    if options.format == "parquet" and not options.output:
        raise ValueError("--format parquet writes a file: give --output FILE.parquet")
    bbox = parse_bbox(options.bbox) if options.bbox else None
    index = EmbeddingIndex.open(options.index, storage_options(options.storage_option))
    if len(index) == 0:
        raise UserError(f"--index {options.index}", "the index holds no items yet",
                        "run `rclip-hf index` on a folder with images first")
    queries: list[Any] = list(options.text or []) + _expand_images(options.image or [])
    if options.positive:
        queries.append(Examples(options.positive, options.negative or (), options.negative_weight))
    model, processor = _load(options)
    results = search(index, queries, k=min(options.top_k, len(index)), model=model, processor=processor,
                     backend=options.backend, bbox=bbox, bbox_crs=options.bbox_crs)
    if options.merge:
        results = [merge_hits(hits) for hits in results]
    labelled = [(_query_label(query), hits) for query, hits in zip(queries, results)]
    if bbox is not None and not any(hits for _, hits in labelled):
        print(f"rclip-hf search: no indexed window meets --bbox {options.bbox} ({options.bbox_crs})", file=sys.stderr)
    if options.html:
        write_results_page(options.html, labelled, index)
    all_hits = [{**hit, "query": label} for label, hits in labelled for hit in hits]
    if options.format == "parquet":
        write_hits_parquet(all_hits, options.output)
        return 0
    pixel_hits = pixel_hits_geojson(all_hits) if options.format == "geojson" else {"features": []}
    if pixel_hits["features"]:  # RFC 7946 GeoJSON is EPSG:4326: hits without a CRS go to a file of their own
        if options.output is None:
            raise UserError("--format geojson", f"{len(pixel_hits['features'])} hit(s) lie on scenes without a CRS, "
                            "which EPSG:4326 GeoJSON cannot hold", "give --output NAME.geojson: they are written "
                            "to NAME.pixel.geojson")
        pixel_path = pixel_geojson_path(options.output)
        pixel_path.write_text(json.dumps(pixel_hits, indent=2))
        print(f"rclip-hf search: {len(pixel_hits['features'])} hit(s) on scenes without a CRS written to "
              f"{pixel_path} (pixel coordinates)", file=sys.stderr)
    with _output(options.output):
        if options.format == "geojson":
            print(json.dumps(hits_geojson(all_hits), indent=2))
        else:
            emit([_hit_row(hit) for hit in all_hits], options.format)
    return 0


def _query_label(query: Any) -> str:
    if hasattr(query, "positive"):
        negatives = f" -{' -'.join(query.negative)}" if query.negative else ""
        return f"examples: +{' +'.join(query.positive)}{negatives}"
    return str(query)


def _hit_row(hit: dict[str, Any]) -> dict[str, Any]:
    row = {"query": hit["query"], "rank": hit["rank"], "score": hit["score"], "id": hit["id"], "path": hit["path"]}
    if hit.get("left") is not None:
        row.update({key: hit[key] for key in ("left", "top", "width", "height")}, crs=hit.get("crs") or "")
        if "merged" in hit:
            row["merged"] = hit["merged"]
    return row


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[None]:
    """Send what is printed inside to the file at `path` (when given) instead of stdout."""
    if path is None:
        yield
        return
    with open(path, "w") as handle, contextlib.redirect_stdout(handle):
        yield


@command("count", "count objects (1-10) with the RemoteCount protocol")
def run_count(argv: list[str]) -> int:
    """`rclip-hf count`: predicted count and the probability of each count, per image."""
    from .inference.count import count
    from .inference.windows import parse_bands

    options = _parse(CountOptions, "count", argv)
    bands = parse_bands(options.bands)
    images = _expand_images(options.image)
    model, processor = _load(options)
    results = [count(image, options.object, model=model, processor=processor, style=options.style, bands=bands)
               for image in images]
    rows = [{"image": str(image), "count": number, "probability": probability, "predicted": number == result.count,
             "caption": caption}
            for image, result in zip(images, results)
            for number, (probability, caption) in enumerate(zip(result.probabilities, result.captions), start=1)]
    document = [{"image": str(image), "object": options.object, **result.as_dict()}
                for image, result in zip(images, results)]
    emit(rows, options.format, document=document)
    return 0


@command("heatmap", "score overlapping windows of a scene against text queries (PNG overlays, GeoTIFF)")
def run_heatmap(argv: list[str]) -> int:
    """`rclip-hf heatmap`: writes the score grid and overlays; prints the best window of each query."""
    import numpy as np

    from .arguments import DataclassArgumentParser
    from .inference.heatmap import heatmap, heatmap_from_index
    from .inference.windows import WindowGeometry, parse_bands

    parser = DataclassArgumentParser(HeatmapOptions, prog="rclip-hf heatmap", description=COMMANDS["heatmap"].help)
    options, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)  # rest: queries
    options = _checked(options)
    queries = [*(options.queries or []), *rest]
    if not queries:
        raise ValueError("give at least one text query: --queries \"...\" (or the queries after the options)")
    if (options.image is None) == (options.index is None) or (options.index is None) != (options.scene is None):
        raise ValueError("give either --image SCENE, or --index INDEX --scene SCENE (a scene indexed with --window)")
    if options.image is not None and not Path(options.image).is_file():
        raise FileNotFoundError(f"image file not found: {options.image}")
    if options.index is not None and options.bands is not None:
        raise UserError(f"--bands {options.bands}", "a map from --index uses the bands its windows were indexed with",
                        "leave --bands out")
    bands = parse_bands(options.bands)
    WindowGeometry(options.window, options.stride, options.window_metres, options.stride_metres)  # checked first
    model, processor = _load(options)
    if options.index is not None:
        result = heatmap_from_index(options.index, options.scene, queries, model=model, processor=processor,
                                    overlay_size=options.overlay_size, output_dir=options.output_dir)
    else:
        result = heatmap(options.image, queries, model=model, processor=processor, grid=options.grid,
                         window=options.window, overlap=options.overlap, batch_size=options.batch_size,
                         overlay_size=options.overlay_size, output_dir=options.output_dir, bands=bands,
                         stride=options.stride, window_metres=options.window_metres,
                         stride_metres=options.stride_metres)
    rows = []
    for query, scores in zip(result.queries, result.scores):
        row, col = divmod(int(np.nanargmax(scores)), scores.shape[1])  # windows not indexed (nodata) are NaN
        rows.append({"query": query, "best_score": float(np.nanmax(scores)), "best_window_left": result.grid.lefts[col],
                     "best_window_top": result.grid.tops[row], "window": result.grid.window,
                     "overlay": result.files[f"png:{query}"], "geotiff": result.files.get(f"geotiff:{query}", "")})
    emit(rows, options.format, document={"windows": list(result.scores.shape[1:]), "files": result.files,
                                         "queries": rows})
    return 0


def _delegate(name: str, module_name: str) -> Callable[[list[str]], int]:
    """Run `module.main(argv)` as `rclip-hf <name>`: its usage line names the subcommand, and `--flag_name` is
    given to it as `--flag-name` (every delegate accepts the dash spelling; plain argparse ones only that)."""

    def run(argv: list[str]) -> int:
        program = sys.argv[0]
        sys.argv[0] = f"rclip-hf {name}"  # argparse's default prog
        try:
            outcome = importlib.import_module(module_name).main([_dash_spelling(token) for token in argv])
        finally:
            sys.argv[0] = program
        return outcome if isinstance(outcome, int) else 0

    return run


def _dash_spelling(token: str) -> str:
    """`--flag_name[=value]` -> `--flag-name[=value]`; any other token as it is."""
    if not token.startswith("--"):
        return token
    option, equals, value = token.partition("=")
    return option.replace("_", "-") + equals + value


def available_commands() -> dict[str, Command]:
    """All subcommands: those of `COMMANDS` and the delegated ones whose module is importable."""
    commands = dict(COMMANDS)
    for name, (module_name, help_text) in DELEGATED_COMMANDS.items():
        if importlib.util.find_spec(module_name) is not None:
            commands[name] = Command(help=help_text, run=_delegate(name, module_name))
    return commands


def _usage(commands: dict[str, Command]) -> str:
    width = max(map(len, commands))
    lines = [f"  {name.ljust(width)}  {entry.help}" for name, entry in commands.items()]
    return ("usage: rclip-hf <command> [options]   (rclip-hf <command> --help for its options)\n"
            "       rclip-hf --version\n\ncommands:\n" + "\n".join(lines))


@entry_point
def main(argv: list[str]) -> int:
    """Entry point of `rclip-hf`; returns the exit code (0 ok, 2 bad input or usage)."""
    commands = available_commands()
    if argv[:1] == ["--version"]:
        from . import __version__

        print(f"rclip-hf {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(commands))
        return 0 if argv else EXIT_BAD_INPUT
    name, rest = argv[0], argv[1:]
    if name not in commands:
        close = difflib.get_close_matches(name, list(commands), n=1)
        suggestion = f"did you mean {close[0]}? " if close else ""
        raise UserError(f"unknown command {name!r} ({suggestion}commands: {', '.join(commands)})")
    from PIL import Image

    pixel_limit = Image.MAX_IMAGE_PIXELS  # --max-pixels changes it for one command
    try:
        return commands[name].run(rest)
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_BAD_INPUT
    finally:
        Image.MAX_IMAGE_PIXELS = pixel_limit


if __name__ == "__main__":
    sys.exit(main())
