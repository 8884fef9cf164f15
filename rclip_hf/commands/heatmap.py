"""`rclip-hf heatmap`: scores of overlapping windows of a scene (or of an index's windows) against text queries,
written as a score grid, PNG overlays and GeoTIFFs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .options import BANDS_HELP, ModelOptions, check_options, flag_help, load_model_for
from .output import emit

HELP = "score overlapping windows of a scene against text queries (PNG overlays, GeoTIFF)"


@dataclass(kw_only=True)
class HeatmapOptions(ModelOptions):
    """Options of `rclip-hf heatmap`."""

    image: str | None = field(default=None, metadata=flag_help(
        "Scene: PNG/JPEG/(Geo)TIFF, read one row of windows at a time"))
    index: str | None = field(default=None, metadata=flag_help(
        "Instead of --image: an index made with `rclip-hf index --window`; the map comes from its windows"))
    scene: str | None = field(default=None, metadata=flag_help("With --index: the indexed scene to map"))
    queries: list[str] | None = field(default=None, metadata=flag_help(
        "Text queries (they may also follow the options, without --queries)", nargs="+"))
    output_dir: str = field(default="heatmap", metadata=flag_help("Folder for scores.npy, PNG overlays, GeoTIFFs"))
    grid: int = field(default=64, metadata=flag_help("Windows along the shorter side (the paper: 64)"))
    window: int | None = field(default=None, metadata=flag_help("Window side in pixels (overrides --grid)"))
    stride: int | None = field(default=None, metadata=flag_help("Pixels between windows (default: by --overlap)"))
    window_metres: float | None = field(default=None, metadata=flag_help(
        "Window side in metres, by the GeoTIFF's ground sample distance (overrides --grid)"))
    stride_metres: float | None = field(default=None, metadata=flag_help(
        "Stride in metres (default: by --overlap)"))
    overlap: float = field(default=1 / 3, metadata=flag_help(
        "Overlap of neighbouring windows without a stride (the paper: 1/3)"))
    batch_size: int = field(default=64, metadata=flag_help("Windows per batch"))
    overlay_size: int = field(default=1024, metadata=flag_help(
        "Longer side of the overlays and score maps, in pixels"))
    bands: str | None = field(default=None, metadata=flag_help(
        BANDS_HELP + " (with --image; --index uses the index's)"))


def run_heatmap(argv: list[str]) -> int:
    """`rclip-hf heatmap`: writes the score grid and overlays; prints the best window of each query."""
    import numpy as np

    from ..arguments import DataclassArgumentParser
    from ..inference.heatmap import heatmap, heatmap_from_index
    from ..inference.windows import WindowGeometry, parse_bands

    parser = DataclassArgumentParser(HeatmapOptions, prog="rclip-hf heatmap", description=HELP)
    options, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)  # rest: queries
    options = check_options(options)
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
    model, processor = load_model_for(options)
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
