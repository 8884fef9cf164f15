"""STAC sources of scene indexes: a STAC Item, an ItemCollection (a saved STAC API search), a Catalog or Collection
(walked, with its children), or a stac-geoparquet file, as the scenes of one asset per item.

The asset is `asset` when given, else `visual`, else the item's first RGB Cloud-Optimized GeoTIFF (a COG media type
whose bands' common names include red, green and blue); an item with none of them is one error that lists its asset
keys. Relative hrefs resolve against the item's own location. Each scene carries its item's id, collection and
datetime (`STAC_COLUMNS`), which its windows record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from ..errors import UserError
from .remote import is_remote

#: Window columns of a STAC scene (null for other scenes).
STAC_COLUMNS = ("stac_item", "stac_collection", "stac_datetime")
DEFAULT_ASSET = "visual"
_STAC_TYPES = ("Feature", "FeatureCollection", "Catalog", "Collection")
_RGB = {"red", "green", "blue"}


@dataclass(frozen=True)
class StacScene:
    """The scene of one STAC item: the href of its asset (a URL or a local path) and the item's properties."""

    href: str
    item_id: str
    collection: str | None
    datetime: str | None

    @property
    def columns(self) -> dict[str, str | None]:
        """The `STAC_COLUMNS` of this scene's windows."""
        return dict(zip(STAC_COLUMNS, (self.item_id, self.collection, self.datetime)))


def is_stac_source(source: str | Path) -> bool:
    """Whether `source` is a local STAC JSON document (Item, ItemCollection, Catalog, Collection) or a
    stac-geoparquet file (a Parquet file with `stac_version` and `assets` columns)."""
    path = Path(source)
    if is_remote(str(source)) or not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix in (".json", ".geojson"):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(document, dict) and document.get("type") in _STAC_TYPES and (
            "stac_version" in document or document.get("type") == "FeatureCollection")
    if suffix in (".parquet", ".geoparquet"):
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        return {"stac_version", "assets", "id"} <= names
    return False


def stac_scenes(source: str | Path, asset: str | None = None) -> list[StacScene]:
    """The scenes of the STAC `source` (see the module docstring), one per item, in the source's order."""
    path = Path(source)
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        items = _geoparquet_items(path)
    else:
        items = _json_items(path)
    scenes = [_scene(item, base, asset, path) for item, base in items]
    if not scenes:
        raise UserError(f"--source {source}", "the STAC source holds no items", "give an Item, an ItemCollection, "
                        "a Catalog or Collection with items, or a stac-geoparquet file")
    return scenes


def _json_items(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(item dict, base href for its relative asset hrefs) of a STAC JSON file; catalogs are walked by pystac."""
    import pystac

    document = json.loads(path.read_text(encoding="utf-8"))
    kind = document.get("type")
    if kind == "Feature":
        yield document, _self_href(document, path)
    elif kind == "FeatureCollection":
        for feature in document.get("features", []):
            yield feature, _self_href(feature, path)
    else:  # Catalog or Collection: its items and those of its children, hrefs resolved by pystac
        try:
            catalog = pystac.read_file(str(path.resolve()))
        except (pystac.STACError, OSError, ValueError) as error:
            raise UserError(f"--source {path}", f"cannot read the STAC {kind} ({error})") from None
        for item in catalog.get_items(recursive=True):
            yield item.to_dict(transform_hrefs=False), item.get_self_href() or str(path.resolve())


def _geoparquet_items(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import stac_table_to_items

    for item in stac_table_to_items(pq.read_table(path)):
        yield item, str(path.resolve())


def _self_href(item: dict[str, Any], path: Path) -> str:
    """The item's `self` link when it has one, else the file it was read from."""
    links = [link.get("href") for link in item.get("links", []) if link.get("rel") == "self"]
    return links[0] if links and links[0] else str(path.resolve())


def _scene(item: dict[str, Any], base: str, asset: str | None, source: Path) -> StacScene:
    assets = item.get("assets") or {}
    item_id = item.get("id", "?")
    key = asset if asset is not None else (DEFAULT_ASSET if DEFAULT_ASSET in assets else _first_rgb_cog(assets))
    if key is None or key not in assets:
        wanted = f"no asset {asset!r}" if asset is not None else f"no asset {DEFAULT_ASSET!r} and no RGB COG asset"
        raise UserError(f"--source {source}", f"STAC item {item_id} has {wanted} (its assets: "
                        f"{', '.join(assets) or 'none'})", "pick one with --asset KEY")
    href = assets[key]["href"]
    if not is_remote(href) and not Path(href).is_absolute():
        href = urljoin(base, href) if is_remote(base) else str(Path(base).parent / href)
    properties = item.get("properties") or {}
    return StacScene(href=href, item_id=item_id, collection=item.get("collection"),
                     datetime=_rfc3339(properties.get("datetime") or properties.get("start_datetime")))


def _rfc3339(text: str | None) -> str | None:
    """A STAC datetime in pystac's RFC 3339 form (`2024-05-01T10:30:00Z`), whichever writer gave it."""
    from pystac.utils import datetime_to_str, str_to_datetime

    return None if text is None else datetime_to_str(str_to_datetime(text))


def _first_rgb_cog(assets: dict[str, dict[str, Any]]) -> str | None:
    """The key of the first asset that is a COG with red, green and blue bands (STAC 1.1 `bands` or `eo:bands`)."""
    for key, asset in assets.items():
        media = (asset.get("type") or "").replace(" ", "").lower()
        bands = asset.get("bands") or asset.get("eo:bands") or []
        names = {band.get("eo:common_name") or band.get("common_name") for band in bands if isinstance(band, dict)}
        if "profile=cloud-optimized" in media and _RGB <= names:
            return key
    return None


__all__ = ["DEFAULT_ASSET", "STAC_COLUMNS", "StacScene", "is_stac_source", "stac_scenes"]
