"""`rclip-hf index --window` on COGs over HTTP (a range-capable server on 127.0.0.1, started here) and on STAC sources
(Item, ItemCollection, Catalog, stac-geoparquet): only the windows' tiles are fetched, re-runs key remote scenes by
ETag/Last-Modified, bad remote input is one line, and windows carry their STAC item id, collection and datetime."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from PIL import Image
from range_server import range_server
from test_scene_windows import write_geotiff

from rclip_hf import cli
from rclip_hf.inference import remote
from rclip_hf.inference.index import EmbeddingIndex

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model

cogeo = pytest.importorskip("rio_cogeo.cogeo")
pystac = pytest.importorskip("pystac")

BLOCK, WINDOW, STRIDE = 128, 128, 512
DATETIME = "2024-05-01T10:30:00Z"


def make_cog(pixels: np.ndarray, path: Path, work: Path) -> Path:
    """(3, H, W) uint8 pixels as a georeferenced (UTM 17N, 0.5 m) COG with BLOCK px deflate tiles, no overviews."""
    from rio_cogeo.profiles import cog_profiles

    source = write_geotiff(work / f"{path.stem}-source.tif", pixels, crs="EPSG:32617", origin=(404_000.0, 3_285_000.0),
                           gsd=0.5)
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=BLOCK, blockysize=BLOCK)
    cogeo.cog_translate(str(source), str(path), profile, overview_level=0, quiet=True)
    return path


def p0706(shared_data: Path) -> np.ndarray:
    """DOTA P0706 (1111 x 1182 RGB) as (3, H, W) uint8."""
    return np.asarray(Image.open(shared_data / "dota" / "images" / "P0706.png").convert("RGB")).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):
    """(folder, base URL, log): a COG of P0706 (`scene.tif`) and NEON's striped GeoTIFF (`striped.tif`, not a COG)."""
    root = tmp_path_factory.mktemp("served")
    make_cog(p0706(shared_data), root / "scene.tif", tmp_path_factory.mktemp("work"))
    shutil.copy(shared_data / "neon_trees" / "OSBS_029.tif", root / "striped.tif")
    with range_server(root) as (url, log):
        yield root, url, log


def window_tile_ranges(path: Path) -> tuple[int, list[tuple[int, int]]]:
    """(first tile byte, [(start, end) byte ranges of the tiles that the WINDOW/STRIDE windows meet])."""
    from rclip_hf.inference.windows import window_starts

    with rasterio.open(path) as dataset:
        width, height = dataset.width, dataset.height
        tiles = {(col, row) for col in range(-(-width // BLOCK)) for row in range(-(-height // BLOCK))}
        offsets = {tile: (int(dataset.get_tag_item(f"BLOCK_OFFSET_{tile[0]}_{tile[1]}", "TIFF", bidx=1)),
                          int(dataset.get_tag_item(f"BLOCK_SIZE_{tile[0]}_{tile[1]}", "TIFF", bidx=1)))
                   for tile in tiles}
    wanted = set()
    for left in window_starts(width, WINDOW, STRIDE):
        for top in window_starts(height, WINDOW, STRIDE):
            for col in range(left // BLOCK, (min(left + WINDOW, width) - 1) // BLOCK + 1):
                for row in range(top // BLOCK, (min(top + WINDOW, height) - 1) // BLOCK + 1):
                    wanted.add((col, row))
    assert len(wanted) < len(tiles) / 4  # the windows miss most tiles
    first = min(offset for offset, _ in offsets.values())
    return first, [(offsets[tile][0], offsets[tile][0] + offsets[tile][1] - 1) for tile in wanted]


def _index(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict | None, str]:
    code = cli.main(["index", *argv, "--format", "json"])
    captured = capsys.readouterr()
    errors = "".join(line + "\n" for line in captured.err.splitlines() if line.startswith("error:"))  # no progress bars
    return code, json.loads(captured.out) if code == 0 else None, errors


def test_remote_cog_reads_only_its_windows_tiles_and_rekeys_by_etag(served, tiny_model_dir: Path, tmp_path: Path,
                                                                    capsys) -> None:
    root, url, log = served
    index = tmp_path / "remote.index"
    argv = ["--model", str(tiny_model_dir), "--source", f"{url}/scene.tif", "--output", str(index),
            "--window", str(WINDOW), "--stride", str(STRIDE)]
    log.clear()
    code, report, err = _index(argv, capsys)
    assert code == 0, err
    assert (report["scenes"], report["added"], report["failures"]) == (1, 3 * 4, [])  # x: 0 512 983; y: 0 512 1024 1054

    size = (root / "scene.tif").stat().st_size
    first_tile, tile_ranges = window_tile_ranges(root / "scene.tif")
    ranges = [(start, end) for name, start, end in log.ranges if name == "scene.tif"]
    assert log.bytes_of("scene.tif") < 0.4 * size  # never the whole file
    for start, end in ranges:  # each request is the header or meets a tile of a window
        assert start < first_tile or any(start <= t_end and t_start <= end for t_start, t_end in tile_ranges), \
            (start, end)
    items = EmbeddingIndex.open(index)
    assert set(items.column("path")) == {f"{url}/scene.tif"}
    assert set(items.column("crs")) == {"EPSG:32617"} and set(items.column("stac_item")) == {None}
    assert items.manifest["scenes"][f"{url}/scene.tif"]["digest"].startswith('etag:"')

    code, report, err = _index(argv, capsys)  # unchanged ETag and Last-Modified: nothing to embed
    assert code == 0 and (report["added"], report["already_indexed"], report["changed_scenes"]) == (0, 12, 0), err
    flipped = p0706_cog_flipped(root, url, tmp_path)
    assert flipped != items.manifest["scenes"][f"{url}/scene.tif"]["digest"]
    code, report, err = _index(argv, capsys)
    assert code == 0 and (report["added"], report["changed_scenes"], report["total"]) == (12, 1, 12), err


def test_one_build_opens_each_scene_once(served, shared_data: Path, tiny_model, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.inference.scenes import WindowOptions, build_scene_index

    _, url, log = served
    local = write_geotiff(tmp_path / "local.tif", p0706(shared_data), crs="EPSG:32617",
                          origin=(404_000.0, 3_285_000.0), gsd=0.5)
    opened = collections.Counter()
    rasterio_open = rasterio.open

    def counting_open(path, *args, **kwargs):
        opened[str(path)] += 1
        return rasterio_open(path, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", counting_open)
    log.clear()
    model, processor = tiny_model
    report = build_scene_index([local, f"{url}/scene.tif"], tmp_path / "index", model, processor,
                               options=WindowOptions(window=WINDOW, stride=STRIDE))
    assert (report.scenes, report.added, report.failures) == (2, 2 * 3 * 4, [])
    assert opened == {str(local): 1, f"{url}/scene.tif": 1}  # its windows counted and read at one opening
    header_reads = [start for name, start, _ in log.ranges if name == "scene.tif" and start == 0]
    assert len(header_reads) == 1  # the COG's header is fetched once


def p0706_cog_flipped(root: Path, url: str, work: Path) -> str:
    """Replace the served scene.tif by a COG of its pixels upside down; returns the ETag the server now sends."""
    with rasterio.open(root / "scene.tif") as dataset:
        pixels = dataset.read()[:, ::-1].copy()
    make_cog(pixels, work / "flipped.tif", work)
    shutil.move(work / "flipped.tif", root / "scene.tif")
    return "etag:" + remote.head(f"{url}/scene.tif")["etag"]


def test_remote_bad_input_is_one_line(served, tiny_model_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    root, url, log = served
    base = ["--model", str(tiny_model_dir), "--output", str(tmp_path / "bad.index"), "--window", "256"]
    code, _, err = _index(base + ["--source", f"{url}/missing.tif"], capsys)
    assert (code, err) == (2, f"error: remote scene {url}/missing.tif: HTTP 404 Not Found\n")
    monkeypatch.setattr(remote, "HTTP_TIMEOUT", 0.5)
    code, _, err = _index(base + ["--source", f"{url}/slow/scene.tif"], capsys)
    assert (code, err) == (2, f"error: remote scene {url}/slow/scene.tif: no answer within 0.5 s (timeout)\n")
    monkeypatch.undo()
    code, _, err = _index(base + ["--source", f"{url}/striped.tif"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: remote scene {url}/striped.tif is not a Cloud-Optimized GeoTIFF") and \
        "--allow-full-download" in err
    log.clear()
    code, report, err = _index(base + ["--source", f"{url}/striped.tif", "--allow-full-download"], capsys)
    assert code == 0 and report["added"] == 4 and report["failures"] == [], err  # 400 x 400 px: 2 x 2 windows
    assert log.bytes_of("striped.tif") >= (root / "striped.tif").stat().st_size  # downloaded whole, as asked
    assert not list(Path(remote.tempfile.gettempdir()).glob("rclip-hf-scene-*"))  # the download is deleted


def stac_item(item_id: str, href: str, key: str = "visual", collection: str | None = "dota-demo",
              bands: bool = False) -> pystac.Item:
    """A STAC item over UTM 17N near Gainesville with one asset `key` at `href`."""
    item = pystac.Item(id=item_id, geometry={"type": "Point", "coordinates": [-82.0, 29.7]},
                       bbox=[-82.0, 29.7, -82.0, 29.7], datetime=pystac.utils.str_to_datetime(DATETIME),
                       properties={}, collection=collection)
    extra = {"eo:bands": [{"name": n, "common_name": n} for n in ("red", "green", "blue")]} if bands else {}
    item.add_asset(key, pystac.Asset(href=href, media_type=pystac.MediaType.COG, roles=["data"], extra_fields=extra))
    item.add_asset("thumbnail", pystac.Asset(href="thumb.png", media_type=pystac.MediaType.PNG))
    return item


def test_stac_sources_record_item_collection_and_datetime(served, tiny_model_dir: Path, tmp_path: Path,
                                                         capsys) -> None:
    root, url, _ = served
    local = tmp_path / "stac"
    local.mkdir()
    shutil.copy(root / "scene.tif", local / "scene.tif")
    # an Item whose `visual` asset is the remote COG
    (tmp_path / "item.json").write_text(json.dumps(stac_item("remote-1", f"{url}/scene.tif").to_dict()))
    # an ItemCollection (a saved search): a relative `visual` href, and an item with only an RGB COG under "image"
    collection = pystac.ItemCollection([stac_item("local-1", "scene.tif"),
                                        stac_item("local-2", "scene.tif", key="image", bands=True, collection=None)])
    (local / "search.json").write_text(json.dumps(collection.to_dict(transform_hrefs=False)))
    # a Catalog with the local item, written self-contained (relative links), and a stac-geoparquet file of it
    catalog = pystac.Catalog(id="demo", description="demo catalog")
    catalog.add_item(stac_item("catalog-1", str(local / "scene.tif")))
    catalog.normalize_and_save(str(tmp_path / "catalog"), pystac.CatalogType.SELF_CONTAINED)
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    items = parse_stac_items_to_arrow([stac_item("parquet-1", str(local / "scene.tif"))])
    to_parquet(items, tmp_path / "items.parquet")

    index = tmp_path / "stac.index"
    sources = [tmp_path / "item.json", local / "search.json", tmp_path / "catalog" / "catalog.json",
               tmp_path / "items.parquet"]
    argv = ["--model", str(tiny_model_dir), "--output", str(index), "--window", "512", "--stride", "4096"]
    for source in sources:
        argv += ["--source", str(source)]
    code, report, err = _index(argv, capsys)
    assert code == 0, err
    # scenes: the remote COG, and the local one (listed by the ItemCollection, the Catalog and the Parquet file)
    assert report["failures"] == [] and report["scenes"] == 2 and report["added"] == 2 * 4
    items = EmbeddingIndex.open(index)
    rows = {(path, item, collection_id, when) for path, item, collection_id, when in zip(
        items.column("path"), items.column("stac_item"), items.column("stac_collection"),
        items.column("stac_datetime"))}
    assert rows == {(f"{url}/scene.tif", "remote-1", "dota-demo", DATETIME),
                    (str(local / "scene.tif"), "parquet-1", "dota-demo", DATETIME)}  # the last source's item wins

    search = ["search", "--model", str(tiny_model_dir), "--index", str(index), "--text", "airplanes", "--top_k", "3"]
    assert cli.main(search + ["--format", "geojson"]) == 0
    properties = json.loads(capsys.readouterr().out)["features"][0]["properties"]
    assert properties["stac_item"] in ("remote-1", "parquet-1") and properties["stac_datetime"] == DATETIME
    assert cli.main(search + ["--format", "parquet", "--output", str(tmp_path / "hits.parquet")]) == 0
    table = pq.read_table(tmp_path / "hits.parquet")
    assert {"stac_item", "stac_collection", "stac_datetime"} <= set(table.column_names)
    assert set(table.column("stac_collection").to_pylist()) == {"dota-demo"}

    # --bands maps the asset's bands as for files: band 2 as grey gives other embeddings of the same windows
    grey = tmp_path / "grey.index"
    code, report, err = _index(["--model", str(tiny_model_dir), "--output", str(grey), "--window", "512", "--stride",
                                "4096", "--bands", "2", "--source", str(local / "search.json")], capsys)
    assert code == 0 and report["added"] == 4, err
    grey_items = EmbeddingIndex.open(grey)
    assert grey_items.manifest["windows"]["bands"] == [2] and set(grey_items.column("stac_item")) == {"local-2"}
    ids = grey_items.ids()
    assert not np.allclose(grey_items.embeddings_of(ids).numpy(), items.embeddings_of(ids).numpy(), atol=1e-3)


def test_stac_asset_choice_and_errors(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    from rclip_hf.inference.stac import stac_scenes

    (tmp_path / "scene.tif").touch()
    items = pystac.ItemCollection([stac_item("a", "scene.tif"), stac_item("b", "scene.tif", key="image", bands=True),
                                   stac_item("c", "scene.tif", key="data")])
    (tmp_path / "items.json").write_text(json.dumps(items.to_dict(transform_hrefs=False)))
    (tmp_path / "two.json").write_text(json.dumps(pystac.ItemCollection(list(items)[:2]).to_dict(
        transform_hrefs=False)))
    scenes = stac_scenes(tmp_path / "two.json")  # a: its `visual` asset; b: its RGB COG `image`
    assert [(scene.item_id, scene.href) for scene in scenes] == [("a", str(tmp_path / "scene.tif")),
                                                                  ("b", str(tmp_path / "scene.tif"))]
    assert [scene.item_id for scene in stac_scenes(tmp_path / "items.json", asset="thumbnail")] == ["a", "b", "c"]
    argv = ["--model", str(tiny_model_dir), "--output", str(tmp_path / "x.index"), "--window", "256", "--source",
            str(tmp_path / "items.json")]
    code, _, err = _index(argv, capsys)
    assert (code, err) == (2, (f"error: --source {tmp_path / 'items.json'}: STAC item c has no asset 'visual' and "
                               "no RGB COG asset (its assets: data, thumbnail) (pick one with --asset KEY)\n"))
    code, _, err = _index(argv + ["--asset", "nir"], capsys)
    assert code == 2 and "STAC item a has no asset 'nir' (its assets: visual, thumbnail)" in err
    code, _, err = _index(argv[:4] + ["--source", str(tmp_path / "items.json")], capsys)
    assert (code, err) == (2, (f"error: --source {tmp_path / 'items.json'}: STAC sources and remote COGs are "
                               "scenes (give --window PX or --window-metres M)\n"))
