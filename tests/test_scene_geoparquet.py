"""The item tables of a windowed index (and `--format parquet` hits) read by other tools as they are: geopandas
(GeoParquet: one CRS per geometry column, longitude/latitude for `geometry`) and DuckDB's core (its GEOMETRY type
and the `geo` key of `parquet_kv_metadata`), against hand-computed window polygons and our GeoJSON corners."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import geopandas
import numpy as np
import pytest
import shapely
from test_scene_windows import dota_pixels, write_geotiff

from rclip_hf.inference.scenes import WindowOptions, build_scene_index, hits_geojson, write_hits_parquet
from rclip_hf.inference.search import EmbeddingIndex, search

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model

UTM, MERCATOR = (500_000.0, 1_000.0), (1_000_000.0, 5_000_000.0)  # top-left corners: 1 m and 2 m pixels


@pytest.fixture(scope="module")
def index(shared_data: Path, tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    """An index of 256 px windows of P1888 in EPSG:32633 and in EPSG:3857, and of a non-georeferenced PNG."""
    model, processor = tiny_model
    folder = tmp_path_factory.mktemp("geoparquet")
    pixels = dota_pixels(shared_data)  # 712 x 557: 3 x 3 windows of 256 px
    scenes = [write_geotiff(folder / "utm.tif", pixels, crs="EPSG:32633", origin=UTM, gsd=1.0),
              write_geotiff(folder / "mercator.tif", pixels, crs="EPSG:3857", origin=MERCATOR, gsd=2.0),
              folder / "p0005.png"]
    shutil.copy(shared_data / "isaid" / "train" / "images" / "P0005.png", scenes[2])
    build_scene_index(scenes, folder / "index", model, processor, options=WindowOptions(window=256))
    EmbeddingIndex.open(folder / "index").export(folder / "items.parquet")
    return folder / "index"


def _shards(index: Path) -> list[Path]:
    return [index.parent / "items.parquet"]


def _read(index: Path) -> geopandas.GeoDataFrame:
    """Every shard's item table, read by geopandas, as one frame."""
    return geopandas.pd.concat([geopandas.read_parquet(path) for path in _shards(index)], ignore_index=True)


def _window_ring(origin: tuple[float, float], gsd: float, left: int, top: int, width: int, height: int) -> np.ndarray:
    """The window's corners in its scene's CRS, by hand (x = x0 + col * gsd, y = y0 - row * gsd): top-left,
    top-right, bottom-right, bottom-left, top-left."""
    x0, y0 = origin
    xs, ys = (x0 + left * gsd, x0 + (left + width) * gsd), (y0 - top * gsd, y0 - (top + height) * gsd)
    return np.array([(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1]), (xs[0], ys[0])])


def test_geopandas_reads_lonlat_geometry_and_each_crs_group(index: Path) -> None:
    table = _read(index)
    assert len(table) == 2 * 9 + 16 and table.geometry.name == "geometry"
    assert table.crs == "OGC:CRS84"  # GeoParquet's one CRS of the column, for every item
    assert table.crs.equals("OGC:CRS84") and not table.crs.equals("EPSG:3857")
    plain = table[table["crs"].isna()]
    assert len(plain) == 16 and plain.geometry.isna().all()  # the PNG: no place
    for crs, origin, gsd in (("EPSG:32633", UTM, 1.0), ("EPSG:3857", MERCATOR, 2.0)):
        group = table[table["crs"] == crs]
        assert len(group) == 9
        native = geopandas.GeoSeries.from_wkb(group["scene_geometry"], crs=crs, index=group.index)
        for (_, item), polygon in zip(group.iterrows(), native):
            expected = _window_ring(origin, gsd, item["left"], item["top"], item["width"], item["height"])
            np.testing.assert_array_equal(shapely.get_coordinates(polygon), expected)
        reprojected = native.to_crs("OGC:CRS84")  # pyproj, independently of rasterio
        for ours, theirs in zip(group.geometry, reprojected):
            np.testing.assert_allclose(shapely.get_coordinates(ours), shapely.get_coordinates(theirs), atol=1e-9, rtol=0)


def test_lonlat_geometry_equals_the_geojson_corners_and_the_mercator_formula(index: Path, tiny_model) -> None:
    model, processor = tiny_model
    table = _read(index)
    hits = search(index, "a harbour", k=len(table), model=model, processor=processor)
    features = {feature["properties"]["id"]: feature for feature in hits_geojson(hits)["features"]}
    placed = table[table["crs"].notna()]
    for item_id, polygon in zip(placed["id"], placed.geometry):
        corners = np.asarray(features[item_id]["geometry"]["coordinates"][0])  # counter-clockwise (RFC 7946)
        np.testing.assert_allclose(shapely.get_coordinates(shapely.geometry.polygon.orient(polygon, 1.0)), corners,
                                   atol=1e-9, rtol=0)
    radius = 6378137.0  # EPSG:3857 by hand: lon = x / R, lat = atan(sinh(y / R))
    item = placed[placed["id"].str.endswith("mercator.tif#256,256,256,256")].iloc[0]
    x, y = MERCATOR[0] + 256 * 2.0, MERCATOR[1] - 256 * 2.0
    lon, lat = shapely.get_coordinates(item.geometry)[0]
    assert lon == pytest.approx(np.degrees(x / radius), abs=1e-9)
    assert lat == pytest.approx(np.degrees(np.arctan(np.sinh(y / radius))), abs=1e-9)


def test_hits_parquet_is_geoparquet_for_geopandas(index: Path, tiny_model, tmp_path: Path) -> None:
    model, processor = tiny_model
    hits = search(index, "a harbour", k=5, model=model, processor=processor, bbox=(14.9, -0.1, 15.1, 0.1))
    write_hits_parquet(hits, tmp_path / "hits.parquet")
    table = geopandas.read_parquet(tmp_path / "hits.parquet")
    assert table.crs == "OGC:CRS84" and list(table["rank"]) == [1, 2, 3, 4, 5]
    assert set(table["crs"]) == {"EPSG:32633"}  # the bbox is around the UTM scene's corner on the equator
    assert table.geometry.intersects(shapely.box(14.9, -0.1, 15.1, 0.1)).all()


def test_duckdb_reads_the_item_tables_geometry_and_geo_metadata(index: Path) -> None:
    pattern = str(index.parent / "items.parquet")
    connection = duckdb.connect()
    rows = connection.execute(
        "SELECT id, crs, ST_AsWKB(geometry), scene_geometry, ST_AsText(geometry) FROM read_parquet(?) ORDER BY id",
        [pattern]).fetchall()
    assert len(rows) == 2 * 9 + 16
    item = next(row for row in rows if row[0].endswith("utm.tif#256,0,256,256"))
    table = _read(index).set_index("id")
    assert shapely.from_wkb(bytes(item[2])).equals_exact(table.loc[item[0]].geometry, 0)  # the same polygon
    np.testing.assert_array_equal(shapely.get_coordinates(shapely.from_wkb(bytes(item[3]))),
                                  _window_ring(UTM, 1.0, 256, 0, 256, 256))
    assert item[4].startswith("POLYGON ((15")  # x = longitude (GIS axis order), on the UTM 33N central meridian
    assert sum(row[2] is None for row in rows) == 16  # the PNG's windows have no geometry
    (geometry_type,) = connection.execute("SELECT typeof(geometry) FROM read_parquet(?) LIMIT 1",
                                          [pattern]).fetchone()
    assert geometry_type.startswith("GEOMETRY") and "CRS84" in geometry_type  # read as GeoParquet, not as a blob
    for path in _shards(index):
        (value,) = connection.execute("SELECT value FROM parquet_kv_metadata(?) WHERE key = 'geo'",
                                      [str(path)]).fetchone()
        metadata = json.loads(value)
        column = metadata["columns"]["geometry"]
        assert metadata["primary_column"] == "geometry" and column["encoding"] == "WKB"
        assert "crs" not in column  # absent: OGC:CRS84, what the column holds
        assert set(metadata["columns"]) == {"geometry"}  # scene_geometry (one CRS per row) is not declared
