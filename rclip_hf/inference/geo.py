"""Where windows lie: polygons in a scene's CRS and in longitude/latitude, WKB, GeoParquet metadata, GeoJSON (RFC 7946).

Polygons are lists of (x, y) corners, closed (the first corner repeated last), in the order top-left, top-right,
bottom-right, bottom-left of the pixel window. Longitude/latitude is EPSG:4326 in GIS axis order (x = longitude,
y = latitude), which is also GeoParquet's default CRS (OGC:CRS84). WKB is written and read here by its
specification (ISO 19125, little-endian Polygon), so no geometry library is needed; `scene_columns` adds the item
table's scene columns and GeoParquet `geo` metadata to a pyarrow table.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

from .windows import PixelWindow

Ring = list[tuple[float, float]]
#: The CRS of the `geometry` column of item tables and of GeoJSON output.
LONLAT = "EPSG:4326"
#: Item-table columns of windows of scenes, after `id`, `path`, `row` (see `scenes.py`).
SCENE_COLUMNS = ("left", "top", "width", "height", "crs", "scene_geometry", "geometry", "bbox")
#: GeoParquet version written in the `geo` metadata.
GEOPARQUET_VERSION = "1.1.0"

_WKB_POLYGON = 3
_LITTLE_ENDIAN = 1


class ReprojectionError(ValueError):
    """A scene's CRS cannot be transformed to longitude/latitude; the message names the scene and the CRS."""


def crs_string(crs: Any) -> str:
    """`EPSG:n` when the CRS has an EPSG code, else its WKT."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def pixel_ring(window: PixelWindow) -> Ring:
    """The window's corners in pixel coordinates (x right, y down), closed."""
    left, top, right, bottom = window.box
    return [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]


def window_ring(window: PixelWindow, transform: Any) -> Ring:
    """The window's corners in the scene's CRS, through its affine `transform` (pixel -> map), closed."""
    return [tuple(transform @ corner) for corner in pixel_ring(window)]


def to_lonlat(ring: Ring, crs: Any, scene: str = "") -> Ring:
    """`ring` from `crs` to EPSG:4326 (longitude, latitude); `ReprojectionError` naming `scene` and the CRS."""
    from rasterio._err import CPLE_BaseError
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform

    try:
        xs, ys = transform(crs, CRS.from_string(LONLAT), [x for x, _ in ring], [y for _, y in ring])
    except (CPLE_BaseError, CRSError) as error:
        raise ReprojectionError(f"scene {scene or '<unknown>'}: cannot reproject from CRS {_short(crs)} to "
                                f"{LONLAT} ({_short(str(error).split(' from ')[0])})") from None
    if not all(map(math.isfinite, xs + ys)):
        raise ReprojectionError(f"scene {scene or '<unknown>'}: CRS {_short(crs)} gives no finite "
                                f"{LONLAT} coordinates for window corners {ring[:4]}")
    return list(zip(xs, ys))


def bbox_to_lonlat(bbox: Sequence[float], crs: str) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) in `crs` -> its bounds in EPSG:4326."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform_bounds

    try:
        source = CRS.from_string(crs)
    except CRSError as error:
        raise ValueError(f"--bbox-crs {crs!r} is not a CRS rasterio knows ({error}); e.g. EPSG:4326") from None
    if source == CRS.from_string(LONLAT):
        return tuple(bbox)
    return transform_bounds(source, CRS.from_string(LONLAT), *bbox, densify_pts=21)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """`"minx,miny,maxx,maxy"` -> four floats with min < max."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
        raise ValueError(f"--bbox {text!r}: give minx,miny,maxx,maxy with minx < maxx and miny < maxy")
    return values


def envelope(ring: Ring) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of a ring."""
    xs, ys = [x for x, _ in ring], [y for _, y in ring]
    return min(xs), min(ys), max(xs), max(ys)


def intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two (minx, miny, maxx, maxy) boxes overlap (touching counts)."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def polygon_wkb(ring: Ring) -> bytes:
    """A one-ring Polygon as little-endian WKB."""
    head = struct.pack("<BIII", _LITTLE_ENDIAN, _WKB_POLYGON, 1, len(ring))
    return head + struct.pack(f"<{2 * len(ring)}d", *(value for point in ring for value in point))


def wkb_ring(data: bytes) -> Ring:
    """The outer ring of a WKB Polygon (either byte order)."""
    order = "<" if data[0] == _LITTLE_ENDIAN else ">"
    kind, rings = struct.unpack_from(f"{order}II", data, 1)
    if kind != _WKB_POLYGON or rings < 1:
        raise ValueError(f"expected a WKB Polygon, got geometry type {kind} with {rings} rings")
    (count,) = struct.unpack_from(f"{order}I", data, 9)
    values = struct.unpack_from(f"{order}{2 * count}d", data, 13)
    return list(zip(values[0::2], values[1::2]))


def geo_metadata(bboxes: Sequence[Sequence[float] | None]) -> dict[str, Any]:
    """GeoParquet `geo` metadata of an item table: a WKB Polygon `geometry` column in OGC:CRS84 (no `crs` key: the
    default), `bbox` covering. `scene_geometry` is not declared: GeoParquet gives a column one CRS, and its CRS is
    each row's `crs`."""
    known = [box for box in bboxes if box is not None]
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Polygon"] if known else [],
                              "covering": {"bbox": {key: ["bbox", key] for key in ("xmin", "ymin", "xmax", "ymax")}}}
    if known:
        column["bbox"] = [min(box[0] for box in known), min(box[1] for box in known),
                          max(box[2] for box in known), max(box[3] for box in known)]
    return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}


def scene_columns(table: Any, records: Sequence[dict[str, Any]]) -> Any:
    """`table` (pyarrow) with the scene columns of `records` appended and GeoParquet `geo` metadata."""
    import pyarrow as pa

    types = {"left": pa.int64(), "top": pa.int64(), "width": pa.int64(), "height": pa.int64(), "crs": pa.string(),
             "scene_geometry": pa.binary(), "geometry": pa.binary(),
             "bbox": pa.struct([(key, pa.float64()) for key in ("xmin", "ymin", "xmax", "ymax")])}
    for name in SCENE_COLUMNS:
        table = table.append_column(name, pa.array([record.get(name) for record in records], types[name]))
    boxes = [None if record.get("bbox") is None else list(record["bbox"].values()) for record in records]
    metadata = {**(table.schema.metadata or {}), b"geo": json.dumps(geo_metadata(boxes)).encode()}
    return table.replace_schema_metadata(metadata)


def feature_collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of `features`."""
    return {"type": "FeatureCollection", "features": features}


def counter_clockwise(ring: Ring) -> Ring:
    """`ring` running counter-clockwise (positive shoelace area, x right and y up), as RFC 7946 wants exterior rings;
    a clockwise ring is reversed, keeping its first corner."""
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring))
    return ring if area >= 0 else ring[::-1]


def feature(ring: Ring, properties: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON Polygon Feature, its exterior ring counter-clockwise (RFC 7946, section 3.1.6)."""
    coordinates = [[list(point) for point in counter_clockwise(ring)]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": coordinates}, "properties": properties}


def _short(crs: Any) -> str:
    text = crs if isinstance(crs, str) else crs.to_string()
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["GEOPARQUET_VERSION", "LONLAT", "SCENE_COLUMNS", "ReprojectionError", "bbox_to_lonlat", "counter_clockwise", "crs_string",
           "envelope", "feature", "feature_collection", "geo_metadata", "intersects", "parse_bbox", "pixel_ring",
           "polygon_wkb", "scene_columns", "to_lonlat", "window_ring", "wkb_ring"]
