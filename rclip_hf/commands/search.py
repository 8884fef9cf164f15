"""`rclip-hf search`: the top-k items of an index for text queries, image queries and queries by example."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UserError
from ..staging import replaced_file
from .options import ModelOptions, expand_images, flag_help, load_model_for, parse_options, storage_options
from .output import emit, printed_to

HELP = "top-k items of an index for text or image queries"
SearchFormat = Literal["table", "json", "csv", "geojson", "parquet"]


@dataclass(kw_only=True)
class SearchOptions(ModelOptions):
    """Options of `rclip-hf search`."""

    index: str = field(metadata=flag_help("Index folder or object-store URI made by `rclip-hf index`"))
    text: list[str] | None = field(default=None, metadata=flag_help("Text queries"))
    image: list[str] | None = field(default=None, metadata=flag_help("Image files used as queries"))
    positive: list[str] | None = field(default=None, metadata=flag_help("Item ids of examples to find more of"))
    negative: list[str] | None = field(default=None, metadata=flag_help(
        "Item ids of examples to avoid (with --positive)"))
    negative_weight: float = field(default=0.5, metadata=flag_help(
        "Share of the negatives' mean taken off the query"))
    top_k: int = field(default=10, metadata=flag_help("Hits per query"))
    backend: Literal["auto", "exact", "ann"] = field(default="auto", metadata=flag_help(
        "exact = chunked brute force; ann = the IVF-HNSW-SQ index; auto = ANN if built"))
    storage_option: list[str] | None = field(default=None, metadata=flag_help(
        "Object-store option KEY=VALUE (repeatable), as for `rclip-hf index`", nargs="+", action="extend"))
    bbox: str | None = field(default=None, metadata=flag_help(
        "Keep windows meeting minx,miny,maxx,maxy (see --bbox-crs)"))
    bbox_crs: str = field(default="EPSG:4326", metadata=flag_help("CRS of --bbox"))
    merge: bool = field(default=False, metadata=flag_help("Fuse overlapping hit windows of a scene into one region"))
    format: SearchFormat = field(default="table", metadata=flag_help(
        "Output format; geojson = an RFC 7946 FeatureCollection in EPSG:4326 (hits on scenes without a CRS: in pixels, "
        "to NAME.pixel.geojson beside --output NAME.geojson); parquet = GeoParquet (needs --output)"))
    output: str | None = field(default=None, metadata=flag_help("Write the results to this file instead of stdout"))
    html: str | None = field(default=None, metadata=flag_help("Also write a self-contained results page (HTML)"))


def run_search(argv: list[str]) -> int:
    """`rclip-hf search`: hits for each --text and --image query."""
    from ..inference.geo import parse_bbox
    from ..inference.index import EmbeddingIndex
    from ..inference.results_page import write_results_page
    from ..inference.scenes import (
        hits_geojson,
        merge_hits,
        pixel_geojson_path,
        pixel_hits_geojson,
        write_hits_parquet,
    )
    from ..inference.search import Examples, search

    options = parse_options(SearchOptions, argv, prog="rclip-hf search", description=HELP)
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
    queries: list[Any] = list(options.text or []) + expand_images(options.image or [])
    if options.positive:
        queries.append(Examples(options.positive, options.negative or (), options.negative_weight))
    model, processor = load_model_for(options)
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
        with replaced_file(pixel_path) as handle:
            handle.write(json.dumps(pixel_hits, indent=2).encode())
        print(f"rclip-hf search: {len(pixel_hits['features'])} hit(s) on scenes without a CRS written to "
              f"{pixel_path} (pixel coordinates)", file=sys.stderr)
    with printed_to(options.output):
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
