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

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from .commands import index as index_command
from .commands import search as search_command
from .commands.options import BANDS_HELP, ModelOptions, expand_images, parse_options
from .commands.options import check_options as _checked
from .commands.options import flag_help as _help
from .commands.options import load_model_for as _load
from .commands.output import emit
from .errors import EXIT_BAD_INPUT, UserError, entry_point

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


def _parse(options_class: type[_Args], name: str, argv: list[str]) -> _Args:
    return parse_options(options_class, argv, prog=f"rclip-hf {name}", description=COMMANDS[name].help)


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
    images = expand_images(options.images)
    model, processor = _load(options)
    top_k = min(options.top_k, len(resolve_labels(labels, templates)[0]))
    ranked = classify(images, labels, templates, model=model, processor=processor, top_k=top_k,
                      batch_size=options.batch_size, bands=parse_bands(options.bands))
    rows = [{"image": str(image), "rank": rank, "label": hit["label"], "score": hit["score"]}
            for image, hits in zip(images, ranked) for rank, hit in enumerate(hits, start=1)]
    emit(rows, options.format)
    return 0


COMMANDS["index"] = Command(help=index_command.HELP, run=index_command.run_index)


COMMANDS["search"] = Command(help=search_command.HELP, run=search_command.run_search)


@command("count", "count objects (1-10) with the RemoteCount protocol")
def run_count(argv: list[str]) -> int:
    """`rclip-hf count`: predicted count and the probability of each count, per image."""
    from .inference.count import count
    from .inference.windows import parse_bands

    options = _parse(CountOptions, "count", argv)
    bands = parse_bands(options.bands)
    images = expand_images(options.image)
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
