"""A self-contained HTML page of search results: per query, an overview of each scene with hits (the hit windows
drawn and numbered) and a grid of the top hits' thumbnails with their scores.

Everything is inside the one file (images as `data:` URIs, boxes as inline SVG, no script or style from anywhere
else), so it opens offline and can be mailed or archived as it is. When the page has loaded, a small inline script
writes what rendered (thumbnails decoded, boxes with a size) into the `data-rendered` attribute of `<body>`.

The page shows only the index's own images, read through the index: a hit's file (or dataset row) is embedded only
when its bytes have the digest the index recorded for it, so a received index that names other local files cannot
pull them into the page. A stored path that is relative (to where the index was built) is looked for from the
current folder, then beside the index folder and inside it. A hit whose image is not found this way gets a tile
saying so, and is logged as a warning: never a silent grey tile. Scenes are drawn with the bands the index was built
with (`index --window --bands`), so the page shows what the model saw.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import UserError
from ..images import load_image
from ..staging import replaced_file
from .index import EmbeddingIndex, file_digest, row_key
from .windows import PixelWindow, dataset_row_scene, dataset_rows, open_scene, parse_dataset_row

logger = logging.getLogger(__name__)

#: Longer side of the scene overviews and of the thumbnails, in pixels.
OVERVIEW_SIZE = 768
THUMBNAIL_SIZE = 192

_STYLE = """body{font-family:sans-serif;margin:1em 2em;background:#fafafa}h2{margin-top:1.5em}
.scene{display:inline-block;margin:0 1em 1em 0;vertical-align:top}.scene p{margin:.2em 0;font-size:.85em}
.overview{position:relative;display:inline-block}.overview svg{position:absolute;left:0;top:0}
.grid{display:flex;flex-wrap:wrap;gap:.6em}figure{margin:0;width:%dpx;font-size:.8em}
figure img{width:%dpx;height:%dpx;object-fit:contain;background:#000}
.missing{width:%dpx;height:%dpx;background:#fdd;color:#900;display:flex;align-items:center;justify-content:center}
rect.hit{fill:none;stroke:#ff2020;stroke-width:2}text.rank{fill:#ffff00;font:bold 14px sans-serif}"""
_CHECK = """window.addEventListener("load",function(){
var thumbs=document.querySelectorAll("img.thumbnail"),overviews=document.querySelectorAll("img.overview-image");
var ok=function(list){return Array.prototype.filter.call(list,function(i){return i.complete&&i.naturalWidth>0}).length};
var boxes=Array.prototype.filter.call(document.querySelectorAll("rect.hit"),function(r){
var b=r.getBoundingClientRect();return b.width>0&&b.height>0}).length;
document.body.setAttribute("data-rendered",JSON.stringify({thumbnails:ok(thumbs),overviews:ok(overviews),boxes:boxes}));
});"""


def write_results_page(path: str | Path, results: Sequence[tuple[str, Sequence[dict[str, Any]]]],
                       index: EmbeddingIndex, title: str = "rclip-hf search results") -> Path:
    """Write the page for `(query, hits)` pairs (hits of `index` as `search` returns them) to `path`."""
    images = _IndexImages(index)
    sections = [_query_section(query, hits, images) for query, hits in results]
    if images.unresolved:
        logger.warning("%s: %d image(s) of the index not shown, not found as indexed (moved, changed, or named by "
                       "the index outside this machine's files): %s", path, len(images.unresolved),
                       ", ".join(sorted(images.unresolved)[:5]) + (" ..." if len(images.unresolved) > 5 else ""))
    thumbnail = THUMBNAIL_SIZE
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE % ((thumbnail,) * 5)}</style></head>\n<body>"
            f"<h1>{html.escape(title)}</h1>\n{''.join(sections)}<script>{_CHECK}</script></body></html>\n")
    path = Path(path)
    with replaced_file(path) as file:  # never through a symlink
        file.write(page.encode("utf-8"))
    return path


class _IndexImages:
    """The images of an index's hits, found and checked against the digests the index recorded for them."""

    def __init__(self, index: EmbeddingIndex):
        self.index = index
        self.bands = index.bands
        self.keys = index.item_keys()
        self.found: dict[str, str | None] = {}  # stored scene name -> the name it was found under (None: not)
        self.unresolved: set[str] = set()

    def scene(self, hit: dict[str, Any]) -> str | None:
        """The name to open a hit's image (file or dataset row) under, or None when it is not the indexed one."""
        stored = hit["path"]
        if stored not in self.found:
            key = self.keys.get(hit["id"])
            self.found[stored] = next((name for name in self._candidates(stored)
                                       if key is not None and key.digest and _digest(name) == key.digest), None)
            if self.found[stored] is None:
                self.unresolved.add(stored)
        return self.found[stored]

    def _candidates(self, stored: str) -> list[str]:
        """Where a stored path may be: as is, then, when relative, beside the index folder and inside it."""
        parsed = parse_dataset_row(stored)
        file = Path(parsed[0] if parsed else stored)
        if file.is_absolute():
            return [stored]
        places = [file, self.index.directory.parent / file, self.index.directory / file]
        return [dataset_row_scene(place, *parsed[1:]) if parsed else str(place) for place in places]


def _digest(name: str) -> str | None:
    """The digest the index keys a scene by: of the file's bytes, or of a dataset row's stored image."""
    parsed = parse_dataset_row(name)
    try:
        if parsed is None:
            return file_digest(name) if Path(name).is_file() else None
        source, split, column, row = parsed
        if not _holds_a_dataset(Path(source)):  # never walk a folder such as / that a received index names
            return None
        key, _ = row_key(dataset_rows(source, split, column)[row][column], None)
    except (OSError, ValueError, KeyError, IndexError, UserError):  # no such file, dataset folder, split or row
        return None
    return key.digest if key is not None else None


def _holds_a_dataset(folder: Path) -> bool:
    """Whether a folder holds a dataset at its top or one level down (a card, a saved dataset's JSON, shards)."""
    markers = ("README.md", "dataset_dict.json", "state.json", "dataset_info.json")
    return folder.is_dir() and (any((folder / name).is_file() for name in markers)
                                or any(next(folder.glob(pattern), None) for pattern in
                                       ("*.parquet", "*.arrow", "*/*.parquet", "*/*.arrow")))


def _query_section(query: str, hits: Sequence[dict[str, Any]], images: _IndexImages) -> str:
    parts = [f"<section><h2>{html.escape(query)}</h2>"]
    if not hits:
        return parts[0] + "<p>No hits.</p></section>\n"
    scenes: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        if hit.get("left") is not None and images.scene(hit) is not None:
            scenes.setdefault(images.scene(hit), []).append(hit)
    for scene_path, scene_hits in scenes.items():
        parts.append(_overview(scene_path, scene_hits, images.bands))
    figures = []
    for hit in hits:
        caption = f"#{hit['rank']} &middot; {hit['score']:.4f}<br>{html.escape(Path(hit['path']).name)}"
        if hit.get("left") is not None:
            caption += f" ({hit['left']}, {hit['top']}, {hit['width']}&times;{hit['height']})"
        scene = images.scene(hit)
        if scene is None:
            caption += "<br><b>image not shown: not found as indexed</b>"
            image = f"<div class='missing' title='{html.escape(hit['path'])}'>not found</div>"
        else:
            image = f"<img class='thumbnail' alt='hit {hit['rank']}' src='{_data_uri(_thumbnail(scene, hit, images.bands))}'>"
        figures.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    parts.append(f"<div class='grid'>{''.join(figures)}</div></section>\n")
    return "".join(parts)


def _overview(scene_path: str, hits: Sequence[dict[str, Any]], bands: Sequence[int] | None) -> str:
    with open_scene(scene_path, bands) as scene:
        image = scene.overview(OVERVIEW_SIZE)
        scale = image.width / scene.width
        size = f"{scene.width}&times;{scene.height} px" + (f", {html.escape(scene.crs.to_string())}"
                                                           if scene.crs is not None else "")
    boxes = []
    for hit in hits:
        x, y = hit["left"] * scale, hit["top"] * scale
        width, height = max(1.0, hit["width"] * scale), max(1.0, hit["height"] * scale)
        boxes.append(f"<rect class='hit' x='{x:.1f}' y='{y:.1f}' width='{width:.1f}' height='{height:.1f}'/>"
                     f"<text class='rank' x='{x + 3:.1f}' y='{y + 15:.1f}'>{hit['rank']}</text>")
    return (f"<div class='scene'><div class='overview'><img class='overview-image' alt='overview' "
            f"src='{_data_uri(image)}' width='{image.width}' height='{image.height}'>"
            f"<svg width='{image.width}' height='{image.height}' viewBox='0 0 {image.width} {image.height}'>"
            f"{''.join(boxes)}</svg></div><p>{html.escape(scene_path)} ({size})</p></div>")


def _thumbnail(scene_path: str, hit: dict[str, Any], bands: Sequence[int] | None) -> Image.Image:
    """The hit's window of its scene (read with `bands`), or its whole image, at thumbnail size."""
    if hit.get("left") is not None:
        with open_scene(scene_path, bands) as scene:
            return scene.read_window(PixelWindow(hit["left"], hit["top"], hit["width"], hit["height"]),
                                     THUMBNAIL_SIZE)
    image = load_image(scene_path)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return image


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = ["OVERVIEW_SIZE", "THUMBNAIL_SIZE", "write_results_page"]
