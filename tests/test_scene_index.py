"""Tests of windowed indexing of scenes and search with places: item tables, GeoParquet, GeoJSON, bbox (exact and
as an ANN prefilter), examples, merged hits, and many processes writing into one table."""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from test_scene_windows import dota_pixels, write_geotiff

from rclip_hf.inference import geo
from rclip_hf.inference.scenes import (
    WindowOptions,
    build_scene_index,
    hits_geojson,
    merge_hits,
    pixel_hits_geojson,
    write_hits_parquet,
)
from rclip_hf.inference.search import EmbeddingIndex, Examples, search
from rclip_hf.inference.windows import PixelWindow

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model

ORIGIN = (1_000_000.0, 5_000_000.0)  # EPSG:3857, 2 m pixels


@pytest.fixture
def scenes(shared_data: Path, tmp_path: Path) -> Path:
    """A folder with a georeferenced GeoTIFF (P1888 in EPSG:3857) and a non-georeferenced iSAID PNG."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    write_geotiff(folder / "p1888.tif", dota_pixels(shared_data), origin=ORIGIN, gsd=2.0)
    shutil.copy(shared_data / "isaid" / "train" / "images" / "P0005.png", folder / "p0005.png")  # 884 x 977
    return folder


def test_items_hold_windows_crs_and_polygons_as_geoparquet(scenes: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    report = build_scene_index([scenes], tmp_path / "index", model, processor,
                               options=WindowOptions(window=256, stride=256), batch_size=8, commit_every=10)
    assert report.scenes == 2 and report.added == 9 + 16 == report.total and report.failures == []
    index = EmbeddingIndex.open(tmp_path / "index")
    geotiff = str(scenes / "p1888.tif")
    assert index.export(tmp_path / "items.parquet") == 25
    table = pq.read_table(tmp_path / "items.parquet")
    metadata = json.loads(table.schema.metadata[b"geo"])
    assert metadata["primary_column"] == "geometry" and metadata["columns"]["geometry"]["encoding"] == "WKB"
    rows = {row["id"]: row for row in table.to_pylist()}
    assert len(rows) == 25 and rows == {item["id"]: {**item, **{key: rows[item["id"]][key] for key in (
        "size", "mtime_ns", "digest")}} for item in index.items(range(25))}
    item = rows[f"{geotiff}#256,256,256,256"]
    assert (item["path"], item["left"], item["top"], item["crs"]) == (geotiff, 256, 256, "EPSG:3857")
    assert geo.wkb_ring(item["scene_geometry"]) == [(1_000_512.0, 4_999_488.0), (1_001_024.0, 4_999_488.0),
                                                    (1_001_024.0, 4_998_976.0), (1_000_512.0, 4_998_976.0),
                                                    (1_000_512.0, 4_999_488.0)]
    lon, lat = geo.wkb_ring(item["geometry"])[0]
    assert lon == pytest.approx(np.degrees(1_000_512.0 / 6378137.0), abs=1e-9)
    assert lat == pytest.approx(np.degrees(np.arctan(np.sinh(4_999_488.0 / 6378137.0))), abs=1e-9)
    assert item["bbox"]["xmin"] == pytest.approx(lon)
    png = rows[f"{scenes / 'p0005.png'}#628,721,256,256"]  # last column and row end at the far edges
    assert png["crs"] is None and png["geometry"] is None and png["width"] == 256

    again = build_scene_index([scenes], tmp_path / "index", model, processor,
                              options=WindowOptions(window=256, stride=256), batch_size=8)
    assert (again.added, again.already_indexed, again.total) == (0, 25, 25)
    assert len(index.ids()) == len(set(EmbeddingIndex.open(tmp_path / "index").ids())) == 25


def test_window_metres_use_each_scenes_ground_sample_distance(scenes: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    report = build_scene_index([scenes / "p1888.tif", scenes / "p0005.png"], tmp_path / "index", model, processor,
                               options=WindowOptions(window_metres=512.0, stride_metres=256.0))
    ids = EmbeddingIndex.open(tmp_path / "index").ids()
    assert report.added == len(ids) == 5 * 4  # 2 m pixels: 256 px windows every 128 px over 712 x 557
    assert f"{scenes / 'p1888.tif'}#128,128,256,256" in ids
    assert [failure["path"] for failure in report.failures] == [str(scenes / "p0005.png")]
    assert "--window-metres needs a georeferenced scene" in report.failures[0]["reason"]


def test_window_embeddings_equal_the_models_embeddings_of_the_crops(scenes: Path, tmp_path: Path,
                                                                    tiny_model) -> None:
    model, processor = tiny_model
    build_scene_index([scenes / "p0005.png"], tmp_path / "index", model, processor,
                      options=WindowOptions(window=300, stride=300), batch_size=4)
    index = EmbeddingIndex.open(tmp_path / "index")
    crop = Image.open(scenes / "p0005.png").convert("RGB").crop((300, 600, 600, 900))
    hit = search(index, crop, k=1, model=model, processor=processor)[0]
    assert (hit["left"], hit["top"], hit["width"], hit["height"]) == (300, 600, 300, 300)
    assert hit["score"] == pytest.approx(1.0, abs=1e-5)


def test_search_text_bbox_examples_geojson_and_parquet(scenes: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    build_scene_index([scenes], tmp_path / "index", model, processor, options=WindowOptions(window=256))
    hits = search(tmp_path / "index", "many airplanes", k=25, model=model, processor=processor)
    assert [hit["rank"] for hit in hits] == list(range(1, 26))
    assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(hits))

    # bbox in EPSG:3857 over the top-left 300 x 300 px of the GeoTIFF: the 4 windows that touch it
    bbox = (ORIGIN[0], ORIGIN[1] - 600.0, ORIGIN[0] + 600.0, ORIGIN[1])
    inside = search(tmp_path / "index", "many airplanes", k=25, model=model, processor=processor, bbox=bbox,
                    bbox_crs="EPSG:3857")
    assert sorted((hit["left"], hit["top"]) for hit in inside) == [(0, 0), (0, 256), (256, 0), (256, 256)]
    assert search(tmp_path / "index", "x", k=5, model=model, processor=processor, bbox=(-10, -10, -9, -9)) == []

    positive = [hit["id"] for hit in hits[:2]]
    negative = [hits[-1]["id"]]
    by_examples = search(tmp_path / "index", Examples(positive, negative), k=5, model=model, processor=processor)
    index = EmbeddingIndex.open(tmp_path / "index")
    query = index.embeddings_of(positive).mean(0) - 0.5 * index.embeddings_of(negative).mean(0)
    expected = (index.embeddings_of(index.ids()) @ (query / query.norm())).tolist()
    ranked = sorted((score, item_id) for item_id, score in zip(index.ids(), expected)
                    if item_id not in positive + negative)[::-1][:5]
    assert [hit["id"] for hit in by_examples] == [item_id for _, item_id in ranked]
    assert [hit["score"] for hit in by_examples] == pytest.approx([score for score, _ in ranked], abs=1e-5)
    with pytest.raises(KeyError, match="no item with id 'nope'"):
        search(index, Examples(["nope"]), k=5, model=model, processor=processor)

    labelled = [{**hit, "query": "many airplanes"} for hit in hits]
    collection, pixels = hits_geojson(labelled), pixel_hits_geojson(labelled)
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) + len(pixels["features"]) == 25
    assert {feature["properties"]["coordinates"] for feature in collection["features"]} == {"EPSG:4326"}
    assert {feature["properties"]["coordinates"] for feature in pixels["features"]} == {"pixel"}
    pixel = pixels["features"][0]
    left, top, width, height = pixel["properties"]["window"]
    assert pixel["geometry"]["coordinates"][0][2] == [left + width, top + height]
    assert {feature["properties"]["query"] for feature in collection["features"]} == {"many airplanes"}
    json.dumps(collection)  # serialisable

    write_hits_parquet([{**hit, "query": "many airplanes"} for hit in hits], tmp_path / "hits.parquet")
    table = pq.read_table(tmp_path / "hits.parquet")
    assert table.column("rank").to_pylist() == list(range(1, 26)) and b"geo" in table.schema.metadata


def test_merge_fuses_overlapping_windows_of_one_scene() -> None:
    def hit(left: int, top: int, score: float, path: str = "a.tif") -> dict:
        native = geo.window_ring(PixelWindow(left, top, 100, 100), _transform())
        return {"rank": 0, "id": f"{path}#{left}", "path": path, "row": -1, "left": left, "top": top, "width": 100,
                "height": 100, "crs": "EPSG:3857", "scene_geometry": geo.polygon_wkb(native),
                "geometry": None, "bbox": None, "score": score}
    hits = [hit(0, 0, 0.9), hit(50, 50, 0.95), hit(400, 0, 0.5), hit(0, 0, 0.7, "b.tif"), hit(200, 0, 0.2)]
    regions = merge_hits(hits)
    assert [(r["path"], r["left"], r["top"], r["width"], r["height"], r["score"], r["merged"]) for r in regions] == [
        ("a.tif", 0, 0, 150, 150, 0.95, 2), ("b.tif", 0, 0, 100, 100, 0.7, 1), ("a.tif", 400, 0, 100, 100, 0.5, 1),
        ("a.tif", 200, 0, 100, 100, 0.2, 1)]
    assert [r["rank"] for r in regions] == [1, 2, 3, 4]
    assert geo.wkb_ring(regions[0]["scene_geometry"])[2] == pytest.approx((150 * 2.0, -150 * 2.0))
    chained = merge_hits([hit(0, 0, 0.1), hit(180, 0, 0.3), hit(90, 0, 0.2)])  # 0-90-180 chain: one region
    assert [(r["left"], r["width"], r["merged"]) for r in chained] == [(0, 280, 3)]


def _transform():
    from rasterio.transform import from_origin

    return from_origin(0.0, 0.0, 2.0, 2.0)


def test_ann_search_takes_the_bbox_as_a_prefilter(scenes: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    build_scene_index([scenes], tmp_path / "index", model, processor, options=WindowOptions(window=128))
    index = EmbeddingIndex.open(tmp_path / "index")
    index.build_ann(num_partitions=4)
    bbox = (ORIGIN[0], ORIGIN[1] - 600.0, ORIGIN[0] + 600.0, ORIGIN[1])  # the top-left 300 x 300 px of the GeoTIFF
    exact = search(index, "a harbour", k=5, model=model, processor=processor, bbox=bbox, bbox_crs="EPSG:3857",
                   backend="exact")
    ann = search(index, "a harbour", k=5, model=model, processor=processor, bbox=bbox, bbox_crs="EPSG:3857",
                 backend="ann")
    assert len(exact) == 5 and {hit["left"] for hit in exact} | {hit["top"] for hit in exact} <= {0, 128, 256}
    assert [hit["id"] for hit in ann] == [hit["id"] for hit in exact]  # 9 windows pass: all re-scored exactly
    assert [hit["score"] for hit in ann] == pytest.approx([hit["score"] for hit in exact], abs=1e-4)


def test_scenes_in_different_crss_share_an_index(shared_data: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    pixels = dota_pixels(shared_data)
    utm = write_geotiff(tmp_path / "utm.tif", pixels, crs="EPSG:32633", origin=(500_000.0, 1_000.0), gsd=1.0)
    mercator = write_geotiff(tmp_path / "mercator.tif", pixels, origin=ORIGIN, gsd=2.0)
    build_scene_index([utm, mercator], tmp_path / "index", model, processor, options=WindowOptions(window=712))
    hits = search(tmp_path / "index", "a harbour", k=2, model=model, processor=processor)
    by_scene = {Path(hit["path"]).name: hit for hit in hits}
    assert {name: hit["crs"] for name, hit in by_scene.items()} == {"utm.tif": "EPSG:32633",
                                                                    "mercator.tif": "EPSG:3857"}
    lon, lat = geo.wkb_ring(by_scene["utm.tif"]["geometry"])[0]  # the top-left corner, on the central meridian
    assert lon == pytest.approx(15.0, abs=1e-9) and lat == pytest.approx(1_000.0 / 110_574.0, abs=1e-5)
    near_equator = search(tmp_path / "index", "a harbour", k=2, model=model, processor=processor,
                          bbox=(14.9, -0.1, 15.1, 0.1))
    assert [Path(hit["path"]).name for hit in near_equator] == ["utm.tif"]


def test_unreprojectable_crs_is_a_failure_naming_the_scene_and_crs(shared_data: Path, tmp_path: Path,
                                                                   tiny_model) -> None:
    model, processor = tiny_model
    local = ('LOCAL_CS["site grid",LOCAL_DATUM["arbitrary",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]')
    path = write_geotiff(tmp_path / "site.tif", dota_pixels(shared_data), crs=local)
    report = build_scene_index([path], tmp_path / "index", model, processor, options=WindowOptions(window=512))
    assert report.added == 0 and len(report.failures) == 1
    assert "site.tif: cannot reproject from CRS LOCAL_CS" in report.failures[0]["reason"]


def test_processes_get_rows_that_share_no_block_and_equal_shares(scenes: Path, tmp_path: Path, tiny_model) -> None:
    from rclip_hf.inference.scenes import index_part

    model, processor = tiny_model
    options = WindowOptions(window=128, stride=64)  # p1888.tif has 128 px tiles: two rows of windows per tile row
    tops = {}
    for rank in (0, 1):
        EmbeddingIndex.open_or_create(tmp_path / f"index{rank}", model, scenes=True)
        report = index_part([scenes / "p1888.tif"], str(tmp_path / f"index{rank}"), model, processor, options, 16,
                            rank, 2)
        part = EmbeddingIndex.open(tmp_path / f"index{rank}")
        tops[rank] = sorted({int(item_id.split(",")[1]) for item_id in part.ids()})
        assert report.added == 4 * 11 and len(report.part_seconds) == 1  # 11 windows a row, 4 rows each
    assert tops == {0: [0, 64, 256, 320], 1: [128, 192, 384, 429]}  # tile rows 0 and 2 / 1 and 3


def test_each_process_bar_counts_the_windows_of_its_rows(scenes: Path, tmp_path: Path, tiny_model,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.inference import scenes as scene_module
    from rclip_hf.progress import progress_bar

    bars = []

    def recording_bar(*args, **kwargs):
        bars.append(progress_bar(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(scene_module, "progress_bar", recording_bar)
    model, processor = tiny_model
    options = WindowOptions(window=128, stride=64)
    EmbeddingIndex.open_or_create(tmp_path / "index", model, scenes=True)
    for rank in (0, 1):
        scene_module.index_part([scenes / "p1888.tif"], str(tmp_path / "index"), model, processor, options, 16,
                                rank, 2)
    scene_module.index_part([scenes / "p1888.tif"], str(tmp_path / "index"), model, processor, options, 16, 0, 1)
    assert [(bar.total, bar.n) for bar in bars] == [(4 * 11, 4 * 11)] * 2 + [(8 * 11, 8 * 11)]  # 11 windows a row
    # (the last run finds every window indexed: its bar still runs to its total)


def counted_scenes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Count the scenes that the scene index opens (by name), how many are open now and the most open at once."""
    from rclip_hf.inference import scenes as scene_module

    counts: dict[str, Any] = {"opened": collections.Counter(), "open": 0, "most": 0}
    open_scene = scene_module.open_scene

    def counting_open(path, *args):
        scene = open_scene(path, *args)
        counts["opened"][Path(str(path)).name] += 1
        counts["open"] += 1
        counts["most"] = max(counts["most"], counts["open"])
        close = scene.close

        def counting_close() -> None:
            counts["open"] -= 1
            close()

        scene.close = counting_close
        return scene

    monkeypatch.setattr(scene_module, "open_scene", counting_open)
    return counts


def test_each_scene_is_opened_once_with_a_bounded_number_open(scenes: Path, tmp_path: Path, tiny_model,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.inference import scenes as scene_module
    from rclip_hf.progress import progress_bar

    shutil.copy(scenes / "p1888.tif", scenes / "p1888-copy.tif")
    bars = []

    def recording_bar(*args, **kwargs):
        bars.append(progress_bar(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(scene_module, "progress_bar", recording_bar)
    monkeypatch.setattr(scene_module, "OPEN_AHEAD", 1)
    counts = counted_scenes(monkeypatch)
    model, processor = tiny_model
    report = build_scene_index([scenes], tmp_path / "index", model, processor, options=WindowOptions(window=256))
    assert report.added == 16 + 9 + 9 and report.failures == []
    assert counts["opened"] == {"p0005.png": 1, "p1888.tif": 1, "p1888-copy.tif": 1}  # counted and read at one opening
    assert (counts["most"], counts["open"]) == (2, 0)  # the scene read and 1 ahead; all closed at the end
    assert [(bar.total, bar.n) for bar in bars] == [(34, 34)]  # the total grew as scenes were opened


def test_a_scene_note_of_the_image_reader_is_logged_once(scenes: Path, tmp_path: Path, tiny_model,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from rclip_hf import images

    live = []  # whether the image reader's logger was on each time it chose bands (where its notes are made)
    colour_bands = images.colour_bands

    def watched(*args, **kwargs):
        live.append(not logging.getLogger(images.__name__).disabled)
        return colour_bands(*args, **kwargs)

    monkeypatch.setattr(images, "colour_bands", watched)
    model, processor = tiny_model
    with caplog.at_level(logging.WARNING, logger=images.__name__):
        report = build_scene_index([scenes], tmp_path / "index", model, processor,
                                   options=WindowOptions(window=256, bands=(4, 2, 1)))
    assert report.added == 16 + 9 and report.failures == []
    notes = sorted(record.getMessage() for record in caplog.records if record.name == images.__name__)
    assert len(notes) == 2  # one a scene: not repeated
    assert notes[0].startswith(f"{scenes / 'p0005.png'}: --bands 4,2,1 not applied (--bands applies to (Geo)TIFF")
    assert notes[1].startswith(f"{scenes / 'p1888.tif'}: --bands 4,2,1 not applied (it has 3 band(s)); read as bands")
    assert live == [True, True]  # one choice of bands a scene, never muted


def test_spawned_processes_load_the_model_in_the_dtype(scenes: Path, tmp_path: Path, tiny_model_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import queue
    import threading

    from rclip_hf import cli, loading
    from rclip_hf.inference import scenes as scene_module

    class Worker(threading.Thread):
        exitcode = 0

        def terminate(self) -> None:
            pass

    class ThreadContext:
        """The spawn context, as threads of this process: the worker function runs with the arguments given."""
        Event, Queue = threading.Event, queue.Queue

        def Process(self, target, args, daemon):
            spawned.append(args)
            return Worker(target=target, args=args, daemon=daemon)

    def recording_load(*args, **kwargs):
        with one_at_a_time:  # from_pretrained sets torch's default dtype while it builds: not thread-safe
            model, processor = real_load(*args, **kwargs)
        if isinstance(threading.current_thread(), Worker):  # (the first process loads it too, to create the index)
            loaded.append((kwargs.get("dtype"), next(model.parameters()).dtype))
        return model, processor

    spawned, loaded, real_load, threads = [], [], loading.load_model, torch.get_num_threads()
    one_at_a_time = threading.Lock()
    monkeypatch.setattr(scene_module.multiprocessing, "get_context", lambda method: ThreadContext())
    monkeypatch.setattr(loading, "load_model", recording_load)
    try:
        assert cli.main(["index", "--model", str(tiny_model_dir), "--source", str(scenes / "p1888.tif"), "--output",
                         str(tmp_path / "index"), "--window", "256", "--num-processes", "2", "--dtype", "bfloat16",
                         "--format", "json"]) == 0
    finally:
        torch.set_num_threads(threads)  # each worker set its share of the cores
    assert len(spawned) == 2 and loaded == [("bfloat16", torch.bfloat16)] * 2
    assert len(EmbeddingIndex.open(tmp_path / "index")) == 3 * 3  # 712 x 557 in 256 px windows


def test_spawned_processes_end_when_the_index_cannot_be_opened(scenes: Path, tmp_path: Path, tiny_model_dir: Path,
                                                                other_model_dir: Path) -> None:
    import multiprocessing

    from rclip_hf.inference.index import IndexModelMismatchError
    from rclip_hf.loading import load_model

    EmbeddingIndex.open_or_create(tmp_path / "index", load_model(other_model_dir)[0])
    with pytest.raises(IndexModelMismatchError, match="embeddings of different models cannot be mixed"):
        build_scene_index([scenes], tmp_path / "index", tiny_model_dir, options=WindowOptions(window=256),
                          num_processes=2)
    assert multiprocessing.active_children() == []  # started before the check, ended by it


def test_a_jpeg_decoded_whole_goes_to_one_process_and_only_it_decodes(shared_data: Path, tmp_path: Path, tiny_model,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.inference import windows
    from rclip_hf.inference.scenes import index_part

    model, processor = tiny_model
    image = Image.open(shared_data / "dota" / "images" / "P1888.png").convert("RGB")  # 712 x 557
    scenes = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for scene in scenes:
        image.save(scene, quality=90)
    decoded = []
    monkeypatch.setattr(windows, "load_image", lambda path: decoded.append(Path(path).name) or Image.open(path))
    EmbeddingIndex.open_or_create(tmp_path / "index", model, scenes=True)
    index_part(scenes, str(tmp_path / "index"), model, processor, WindowOptions(window=256), 16, 1, 2)
    ids = EmbeddingIndex.open(tmp_path / "index").ids()
    assert {Path(item_id.split("#")[0]).name for item_id in ids} == {"b.jpg"} and len(ids) == 3 * 3
    assert decoded == ["b.jpg"]  # a.jpg (process 0's) was opened for its grid, not decoded


def test_processes_share_the_cores_unless_omp_num_threads_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.inference.scenes import process_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 5}, raising=False)
    assert (process_threads(1), process_threads(2), process_threads(8)) == (5, 2, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # as accelerate launch and torchrun set it
    assert process_threads(2) == 3


@pytest.mark.slow
def test_two_processes_finish_a_killed_build_without_duplicates(scenes: Path, tmp_path: Path, tiny_model_dir: Path,
                                                                tiny_model) -> None:
    from rclip_hf.inference.scenes import index_part, scene_files

    model, processor = tiny_model
    options = WindowOptions(window=128, stride=128)
    single = build_scene_index([scenes], tmp_path / "one", model, processor, options=options)
    one = EmbeddingIndex.open(tmp_path / "one")

    # A killed 2-process run: rank 1 committed its windows into the table and rank 0 nothing.
    EmbeddingIndex.open_or_create(tmp_path / "two", model, scenes=True)
    index_part(scene_files([scenes]), str(tmp_path / "two"), model, processor, options, 8, 1, 2)
    rows = {(Path(item_id.split("#")[0]).name, int(item_id.split(",")[1]))
            for item_id in EmbeddingIndex.open(tmp_path / "two").ids()}
    # groups of rows sharing a row of blocks, in order: p0005.png (a PNG: one pixel row a block) tops 0, 128, ...,
    # 768, 849 (groups 0-7), p1888.tif (128 px tiles) tops 0, 128, 256 (groups 8-10) and 384 with 429 (group 11)
    assert rows == {("p0005.png", 128), ("p0005.png", 384), ("p0005.png", 640), ("p0005.png", 849),
                    ("p1888.tif", 128), ("p1888.tif", 384), ("p1888.tif", 429)}  # rank 1 of 2: the odd groups
    written = len(EmbeddingIndex.open(tmp_path / "two"))

    report = build_scene_index([scenes], tmp_path / "two", tiny_model_dir, options=options, num_processes=2)
    assert report.processes == 2 and report.already_indexed == written and len(report.part_seconds) == 2
    assert report.threads == max(1, len(os.sched_getaffinity(0)) // 2)
    assert report.added == single.total - written and report.total == single.total
    two = EmbeddingIndex.open(tmp_path / "two")
    assert sorted(two.ids()) == sorted(one.ids()) and len(set(two.ids())) == len(two)
    torch.testing.assert_close(two.embeddings_of(one.ids()), one.embeddings_of(one.ids()), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_sigkill_of_a_two_process_build_then_a_rerun_gives_every_window_once(scenes: Path, tmp_path: Path,
                                                                              tiny_model_dir: Path, tiny_model) -> None:
    model, processor = tiny_model
    options = WindowOptions(window=128, stride=128)
    expected = build_scene_index([scenes], tmp_path / "one", model, processor, options=options)
    command = [sys.executable, "-m", "rclip_hf.cli", "index", "--model", str(tiny_model_dir), "--source", str(scenes),
               "--output", str(tmp_path / "two"), "--window", "128", "--num-processes", "2", "--commit-every", "8",
               "--batch-size", "4"]
    build = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not _committed(tmp_path / "two") and build.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(build.pid, signal.SIGKILL)
            pytest.fail("no windows committed within 240 s")
        time.sleep(0.05)
    os.killpg(build.pid, signal.SIGKILL)  # the parent and both workers, mid-build
    build.wait()
    written = len(EmbeddingIndex.open(tmp_path / "two"))
    assert 0 < written < expected.total  # killed in the middle: some commits kept, not all windows
    report = build_scene_index([scenes], tmp_path / "two", model, processor, options=options)
    assert report.already_indexed == written and report.total == expected.total
    ids = EmbeddingIndex.open(tmp_path / "two").ids()
    assert len(ids) == len(set(ids)) == expected.total
    assert set(ids) == set(EmbeddingIndex.open(tmp_path / "one").ids())


def _committed(index: Path) -> int:
    """Windows committed into the index so far (0 while it does not exist)."""
    try:
        return len(EmbeddingIndex.open(index))
    except (FileNotFoundError, ValueError, OSError):
        return 0
