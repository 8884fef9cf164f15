"""Tests of windows of Hugging Face dataset rows: each row is a scene, cut into windows like a file, searched, merged,
written as pixel GeoJSON, drawn on the results page and mapped from the index."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageOps
from test_scene_cli import CHROMIUM

from rclip_hf import cli
from rclip_hf.inference.index import row_key
from rclip_hf.inference.scenes import WindowOptions, build_scene_index, index_part, scene_files
from rclip_hf.inference.search import EmbeddingIndex, search
from rclip_hf.inference.windows import PixelWindow, dataset_row_scene, open_scene

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model

SMALL = (40, 60, 240, 210)  # a 200 x 150 px crop of P1888: smaller than the window, one padded window


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def dataset_folder(shared_data: Path, tmp_path: Path) -> Path:
    """A Parquet dataset folder: row 0 DOTA P1888 (712 x 557), row 1 iSAID P0005 (884 x 977), row 2 a 200 x 150
    crop of P1888; images as PNG bytes, with a `name` column."""
    p1888 = Image.open(shared_data / "dota" / "images" / "P1888.png").convert("RGB")
    images = [p1888, Image.open(shared_data / "isaid" / "train" / "images" / "P0005.png").convert("RGB"),
              p1888.crop(SMALL)]
    dataset = datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(image), "path": None} for image in images], "name": ["p1888", "p0005", "small"]},
        features=datasets.Features({"image": datasets.Image(), "name": datasets.Value("string")}))
    folder = tmp_path / "aerial"
    dataset.to_parquet(str(folder / "data" / "train-00000.parquet"))
    return folder


def _expected_windows(folder: Path) -> set[str]:
    """Hand-computed 256 px windows (stride 256) of the three rows: starts 0, 256, then one at the far edge."""
    boxes = {0: [(left, top, 256, 256) for top in (0, 256, 301) for left in (0, 256, 456)],  # 712 x 557
             1: [(left, top, 256, 256) for top in (0, 256, 512, 721) for left in (0, 256, 512, 628)],  # 884 x 977
             2: [(0, 0, 200, 150)]}
    return {f"{dataset_row_scene(folder, 'train', 'image', row)}#{','.join(map(str, box))}"
            for row, row_boxes in boxes.items() for box in row_boxes}


def test_dataset_rows_are_cut_into_windows(dataset_folder: Path, tmp_path: Path, tiny_model, shared_data) -> None:
    model, processor = tiny_model
    scenes = scene_files([dataset_folder], exclude=tmp_path / "index")
    assert scenes == [f"{dataset_folder}?split=train&image=image&row={row}" for row in range(3)]
    report = build_scene_index([dataset_folder], tmp_path / "index", model, processor,
                               options=WindowOptions(window=256), batch_size=8)
    assert (report.scenes, report.added, report.total, report.failures) == (3, 9 + 16 + 1, 26, [])
    index = EmbeddingIndex.open(tmp_path / "index")
    assert set(index.ids()) == _expected_windows(dataset_folder) and len(index.ids()) == 26
    rows = index.items(range(len(index)))
    assert {row["row"] for row in rows} == {0, 1, 2}
    assert all(row["path"].endswith(f"&row={row['row']}") and row["crs"] is None and row["geometry"] is None
               for row in rows)

    # a window's embedding is the model's embedding of that crop of the row (the pixel box is the right one)
    p0005 = Image.open(shared_data / "isaid" / "train" / "images" / "P0005.png").convert("RGB")
    hit = search(index, p0005.crop((512, 721, 768, 977)), k=1, model=model, processor=processor)[0]
    assert (hit["path"], hit["row"], hit["left"], hit["top"], hit["width"], hit["height"]) == (
        dataset_row_scene(dataset_folder, "train", "image", 1), 1, 512, 721, 256, 256)
    assert hit["score"] == pytest.approx(1.0, abs=1e-5)
    padded = Image.new("RGB", (256, 256))
    padded.paste(Image.open(shared_data / "dota" / "images" / "P1888.png").convert("RGB").crop(SMALL))
    small = search(index, padded, k=1, model=model, processor=processor)[0]  # padded as the processor sees it
    assert (small["row"], small["width"], small["height"], small["score"]) == (2, 200, 150, pytest.approx(1.0, abs=1e-5))

    again = build_scene_index([dataset_folder], tmp_path / "index", model, processor, options=WindowOptions(window=256))
    assert (again.added, again.already_indexed, again.total) == (0, 26, 26)


def test_dataset_rows_split_across_processes_by_dataset_row(dataset_folder: Path, tmp_path: Path,
                                                            tiny_model) -> None:
    model, processor = tiny_model
    options = WindowOptions(window=256)
    EmbeddingIndex.open_or_create(tmp_path / "index", model, scenes=True)
    files = scene_files([dataset_folder], exclude=tmp_path / "index")
    part = index_part(files, str(tmp_path / "index"), model, processor, options, 8, 1, 2)
    # a dataset image is decoded whole, so all its rows of windows go to one process: rows 0 and 2 to process 0,
    # row 1 (tops 0, 256, 512, 721, four windows each) to process 1
    done = EmbeddingIndex.open(tmp_path / "index").ids()
    assert {(item_id.split("row=")[1].split("#")[0], int(item_id.split(",")[1])) for item_id in done} == {
        ("1", 0), ("1", 256), ("1", 512), ("1", 721)}
    assert part.added == len(done) == 4 * 4
    report = build_scene_index([dataset_folder], tmp_path / "index", model, processor, options=options)
    assert (report.already_indexed, report.added, report.total) == (16, 10, 26)  # the killed part is kept
    ids = EmbeddingIndex.open(tmp_path / "index").ids()
    assert len(ids) == len(set(ids)) == 26 and set(ids) == _expected_windows(dataset_folder)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_index_search_geojson_merge_html_and_heatmap_of_dataset_rows(dataset_folder: Path, tmp_path: Path,
                                                                         tiny_model_dir: Path, capsys) -> None:
    index = tmp_path / "aerial.index"
    code, out, err = _run(["index", "--model", str(tiny_model_dir), "--source", str(dataset_folder), "--output",
                           str(index), "--window", "256", "--stride", "128", "--format", "json"], capsys)
    assert code == 0, err
    # 256 px every 128 px: 712 x 557 -> 5 x 4, 884 x 977 -> 6 x 7, 200 x 150 -> 1
    assert json.loads(out)["scenes"] == 3 and json.loads(out)["added"] == 5 * 4 + 6 * 7 + 1

    search = ["search", "--model", str(tiny_model_dir), "--index", str(index), "--text", "many airplanes"]
    code, out, _ = _run(search + ["--top_k", "63", "--format", "geojson", "--output", str(tmp_path / "hits.geojson")],
                        capsys)
    features = json.loads((tmp_path / "hits.pixel.geojson").read_text())["features"]  # rows have no CRS
    assert code == 0 and len(features) == 63 and json.loads((tmp_path / "hits.geojson").read_text())["features"] == []
    for feature in features:
        properties = feature["properties"]
        left, top, width, height = properties["window"]
        assert properties["coordinates"] == "pixel" and properties["crs"] is None
        assert properties["scene"].startswith(f"{dataset_folder}?split=train&image=image&row=")
        assert feature["geometry"]["coordinates"] == [[[left, top], [left + width, top],  # counter-clockwise by
                                                       [left + width, top + height], [left, top + height],  # x, y
                                                       [left, top]]]
    small = next(f for f in features if f["properties"]["scene"].endswith("row=2"))
    assert small["properties"]["window"] == [0, 0, 200, 150]

    code, out, _ = _run(search + ["--top_k", "63", "--merge", "--format", "json"], capsys)
    regions = json.loads(out)
    assert code == 0 and len(regions) == 3 and sum(region["merged"] for region in regions) == 63  # one per row
    by_row = {int(region["path"].rsplit("row=", 1)[1]): region for region in regions}
    assert [by_row[row][key] for row in (0, 1, 2) for key in ("left", "top", "width", "height")] == [
        0, 0, 712, 557, 0, 0, 884, 977, 0, 0, 200, 150]

    page = tmp_path / "hits.html"
    code, _, err = _run(search + ["--top_k", "5", "--html", str(page)], capsys)
    assert code == 0, err
    text = page.read_text()
    assert text.count("class='thumbnail'") == 5 and text.count("<rect class='hit'") == 5
    overviews = text.count("class='overview-image'")
    assert 1 <= overviews <= 3 and "row=" in text
    if CHROMIUM is not None:
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", f"--user-data-dir={tmp_path / 'chromium'}",
                              "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        rendered = json.loads(re.search(r'data-rendered="([^"]*)"', dom)[1].replace("&quot;", '"'))
        assert rendered == {"thumbnails": 5, "overviews": overviews, "boxes": 5}

    scene = dataset_row_scene(dataset_folder, "train", "image", 0)
    code, out, err = _run(["heatmap", "--model", str(tiny_model_dir), "--index", str(index), "--scene", scene,
                           "many airplanes", "--output_dir", str(tmp_path / "maps"), "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["windows"] == [4, 5]  # rows x columns of P1888's windows
    with open_scene(scene) as opened:  # a row read back for pages and maps: the row's image by the image rule
        assert (opened.width, opened.height, opened.crs) == (712, 557, None)
        whole = opened.read_window(PixelWindow(0, 0, 712, 557))
    assert np.array_equal(np.asarray(whole), np.asarray(_row_image(dataset_folder, 0)))


def _row_image(folder: Path, row: int) -> Image.Image:
    table = pq.read_table(folder / "data" / "train-00000.parquet")
    return Image.open(io.BytesIO(table.column("image")[row].as_py()["bytes"])).convert("RGB")


def test_dataset_bad_input(dataset_folder: Path, tmp_path: Path, tiny_model_dir: Path, tiny_model, capsys,
                           caplog) -> None:
    base = ["index", "--model", str(tiny_model_dir), "--source", str(dataset_folder), "--output",
            str(tmp_path / "x"), "--window", "256"]
    code, _, err = _run(base + ["--image-column", "picture"], capsys)
    assert code == 2 and "has no column 'picture' (columns: image, name): give --image-column" in err
    code, _, err = _run(base + ["--split", "test"], capsys)
    assert code == 2 and f"dataset {dataset_folder}:" in err and "test" in err
    code, _, err = _run(base + ["--id-column", "name"], capsys)
    assert code == 2 and "--id-column name: windows of dataset rows are named by the row number" in err
    model, processor = tiny_model
    with caplog.at_level(logging.WARNING, logger="rclip_hf.images"):
        report = build_scene_index([dataset_folder], tmp_path / "y", model, processor,
                                   options=WindowOptions(window=256, bands=(3, 2, 1)))
    assert report.added == 3 * 3 + 4 * 4 + 1 and report.failures == []  # rows are RGB: read by the image rule
    notes = [record.getMessage() for record in caplog.records if "--bands" in record.getMessage()]
    assert len(notes) == 3 and all("--bands 3,2,1 not applied (a dataset row is read as RGB" in note for note in notes)


def test_rows_gone_from_a_dataset_are_pruned(dataset_folder: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    build_scene_index([dataset_folder], tmp_path / "index", model, processor, options=WindowOptions(window=256))
    parquet = dataset_folder / "data" / "train-00000.parquet"
    pq.write_table(pq.read_table(parquet).slice(0, 2), parquet)  # the 200 x 150 row 2 is gone
    kept = build_scene_index([dataset_folder], tmp_path / "index", model, processor, options=WindowOptions(window=256))
    assert (kept.scenes, kept.added, kept.missing_scenes, kept.missing, kept.total) == (2, 0, 1, 1, 26)
    pruned = build_scene_index([dataset_folder], tmp_path / "index", model, processor,
                               options=WindowOptions(window=256), prune=True)
    assert (pruned.added, pruned.pruned_scenes, pruned.pruned, pruned.total) == (0, 1, 1, 25)
    ids = EmbeddingIndex.open(tmp_path / "index").ids()
    assert set(ids) == {item_id for item_id in _expected_windows(dataset_folder) if "&row=2#" not in item_id}


def _replace_row_image(folder: Path, row: int, image: Image.Image) -> None:
    """Save the dataset folder again with the image of `row` replaced (as PNG bytes)."""
    parquet = folder / "data" / "train-00000.parquet"
    table = pq.read_table(parquet)
    cells = table.column("image").to_pylist()
    cells[row] = {"bytes": _png(image), "path": None}
    column = table.schema.get_field_index("image")
    pq.write_table(table.set_column(column, table.field(column), pa.array(cells, table.field(column).type)), parquet)


def test_a_changed_row_is_embedded_again(dataset_folder: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    index_dir = tmp_path / "index"
    build_scene_index([dataset_folder], index_dir, model, processor, options=WindowOptions(window=256))
    scenes = [dataset_row_scene(dataset_folder, "train", "image", row) for row in range(3)]
    keys = EmbeddingIndex.open(index_dir).scene_keys()
    assert [keys[scene].digest for scene in scenes] == [
        row_key(pq.read_table(dataset_folder / "data" / "train-00000.parquet").column("image")[row].as_py(),
                None)[0].digest for row in range(3)]
    before = EmbeddingIndex.open(index_dir)
    changed = [item_id for item_id in before.ids() if item_id.startswith(f"{scenes[0]}#")]
    others = [item_id for item_id in before.ids() if item_id not in changed]
    old, kept = before.embeddings_of(changed), before.embeddings_of(others)

    _replace_row_image(dataset_folder, 0, ImageOps.mirror(_row_image(dataset_folder, 0)))  # same size: same ids
    report = build_scene_index([dataset_folder], index_dir, model, processor, options=WindowOptions(window=256))
    assert (report.changed_scenes, report.changed, report.added, report.already_indexed, report.total) == (
        1, 9, 9, 17, 26)
    after = EmbeddingIndex.open(index_dir)
    assert after.verify() == [] and set(after.ids()) == _expected_windows(dataset_folder)
    assert torch.equal(after.embeddings_of(others), kept)
    fresh = build_scene_index([dataset_folder], tmp_path / "fresh", model, processor, options=WindowOptions(window=256))
    assert fresh.added == 26 and len(changed) == 9
    torch.testing.assert_close(after.embeddings_of(changed),
                               EmbeddingIndex.open(tmp_path / "fresh").embeddings_of(changed), atol=1e-5, rtol=0)
    assert not torch.allclose(after.embeddings_of(changed), old, atol=1e-3)

    again = build_scene_index([dataset_folder], index_dir, model, processor, options=WindowOptions(window=256))
    assert (again.changed_scenes, again.added, again.already_indexed) == (0, 0, 26)


def test_rows_of_older_scene_indexes_keep_their_windows_and_get_keys(dataset_folder: Path, tmp_path: Path,
                                                                     tiny_model) -> None:
    model, processor = tiny_model
    build_scene_index([dataset_folder], tmp_path / "index", model, processor, options=WindowOptions(window=256))
    older = EmbeddingIndex.open(tmp_path / "index")
    older.record_scenes({}, remove=older.scene_keys())  # no scene keys: as older builds left it (migrated)
    before = older.embeddings_of(older.ids())
    _replace_row_image(dataset_folder, 2, ImageOps.mirror(_row_image(dataset_folder, 2)))  # not seen: no key
    kept = build_scene_index([dataset_folder], tmp_path / "index", model, processor,
                             options=WindowOptions(window=256))
    assert (kept.changed_scenes, kept.added, kept.already_indexed) == (0, 0, 26)
    index = EmbeddingIndex.open(tmp_path / "index")
    assert torch.equal(index.embeddings_of(older.ids()), before)
    assert len(index.scene_keys()) == 3  # recorded now, so the next change is seen
    _replace_row_image(dataset_folder, 2, _row_image(dataset_folder, 0).crop(SMALL))
    report = build_scene_index([dataset_folder], tmp_path / "index", model, processor,
                               options=WindowOptions(window=256))
    assert (report.changed_scenes, report.changed, report.added, report.total) == (1, 1, 1, 26)


@pytest.mark.slow
def test_two_spawned_processes_index_dataset_rows_like_one(dataset_folder: Path, tmp_path: Path,
                                                          tiny_model_dir: Path, tiny_model) -> None:
    model, processor = tiny_model
    one = build_scene_index([dataset_folder], tmp_path / "one", model, processor, options=WindowOptions(window=256))
    two = build_scene_index([dataset_folder], tmp_path / "two", tiny_model_dir, options=WindowOptions(window=256),
                            num_processes=2)
    assert (two.processes, two.added, two.total) == (2, one.added, 26)
    ids = EmbeddingIndex.open(tmp_path / "one").ids()
    assert sorted(EmbeddingIndex.open(tmp_path / "two").ids()) == sorted(ids)
    torch.testing.assert_close(EmbeddingIndex.open(tmp_path / "two").embeddings_of(ids),
                               EmbeddingIndex.open(tmp_path / "one").embeddings_of(ids), atol=1e-5, rtol=0)
