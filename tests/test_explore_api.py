"""Tests of the explore app's JSON API with FastAPI's TestClient, on a small real scene index: tiles against rio-tiler
called directly, search against `search()`, labels and their restart, the classifier, detections, uncertainty
sampling, merged regions, the heat map from the index, exports, the token, path and HTML injection, label files of
the earlier layout moved into the label table, and an index in object storage (a local S3 server)."""

from __future__ import annotations

import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from explore_fixtures import HTML_NAME, STAC_ITEM, build_explore_index
from fastapi.testclient import TestClient
from PIL import Image
from test_explore_browser import explore_server

from rclip_hf import cli
from rclip_hf.errors import UserError
from rclip_hf.explore import create_app
from rclip_hf.inference import EmbeddingIndex, Examples, search
from rclip_hf.inference.scenes import merge_hits
from rclip_hf.inference.windows import PixelWindow, open_scene

pytest_plugins = ("inference_fixtures", "explore_fixtures", "storage_fixtures")

TOKEN = "test-token-0123456789"


def _client(index: Path, model_dir: Path, **options) -> TestClient:
    client = TestClient(create_app(index, model_dir, token=TOKEN, **options))
    client.headers["Authorization"] = f"token {TOKEN}"
    return client


@pytest.fixture
def client(index_copy: Path, tiny_model_dir: Path) -> TestClient:
    return _client(index_copy, tiny_model_dir)


def _scenes(client: TestClient) -> dict[str, dict]:
    return {scene["name"]: scene for scene in client.get("/api/scenes").json()}


def _png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def test_scenes_tiles_and_thumbnails(client: TestClient, explore_scenes: Path, index_copy: Path) -> None:
    from morecantile import tms
    from rio_tiler.io import Reader

    scenes = _scenes(client)
    assert set(scenes) == {"p1888.tif", HTML_NAME, "aerial row 0"}
    geo, png, row = scenes["p1888.tif"], scenes[HTML_NAME], scenes["aerial row 0"]
    assert (geo["space"], geo["crs"], geo["windows"], geo["width"], geo["height"]) == ("lonlat", "EPSG:3857", 9, 712, 557)
    assert (png["space"], png["windows"], png["width"], png["height"]) == ("pixel", 25, 1111, 1182)
    assert (row["space"], row["windows"], row["width"], row["height"]) == ("pixel", 2, 300, 200)

    lon, lat = (geo["bounds"][0] + geo["bounds"][2]) / 2, (geo["bounds"][1] + geo["bounds"][3]) / 2
    for zoom in (13, 16):
        tile = tms.get("WebMercatorQuad").tile(lon, lat, zoom)
        response = client.get(f"/api/scenes/{geo['id']}/tiles/{zoom}/{tile.x}/{tile.y}.png")
        with Reader(explore_scenes / "p1888.tif") as source:
            direct = source.tile(tile.x, tile.y, zoom, indexes=(1, 2, 3)).render(img_format="PNG")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content == direct
    far = client.get(f"/api/scenes/{geo['id']}/tiles/16/0/0.png")
    assert far.status_code == 404 and "outside the scene" in far.json()["detail"]

    scene = np.asarray(Image.open(explore_scenes / HTML_NAME).convert("RGB"))
    tile = _png_pixels(client.get(f"/api/scenes/{png['id']}/tiles/0/1/2.png").content)  # pixels 256..512, 512..768
    assert (tile[..., :3] == scene[512:768, 256:512]).all() and (tile[..., 3] == 255).all()
    edge = _png_pixels(client.get(f"/api/scenes/{png['id']}/tiles/0/4/4.png").content)  # 1024..1111, 1024..1182
    assert (edge[:158, :87, :3] == scene[1024:, 1024:]).all() and (edge[:, 87:, 3] == 0).all()
    zoomed_out = _png_pixels(client.get(f"/api/scenes/{png['id']}/tiles/-3/0/0.png").content)  # 1111 x 1182 / 8
    assert zoomed_out[:147, :138, 3].min() == 255 and zoomed_out[149:, :, 3].max() == zoomed_out[:, 140:, 3].max() == 0
    assert client.get(f"/api/scenes/{png['id']}/tiles/0/5/0.png").status_code == 404

    row_tile = _png_pixels(client.get(f"/api/scenes/{row['id']}/tiles/0/1/0.png").content)  # pixels 256..300
    crop = np.asarray(Image.open(explore_scenes / "p1888.tif").convert("RGB"))[200:400, 100:400]  # the row's image
    assert (row_tile[:200, :44, :3] == crop[:, 256:]).all() and row_tile[200:, :, 3].max() == 0

    ids = EmbeddingIndex.open(index_copy).ids()
    position = ids.index(f"{explore_scenes / HTML_NAME}#512,256,256,256")
    thumbnail = Image.open(io.BytesIO(client.get(f"/api/windows/{position}/thumbnail.png").content))
    with open_scene(explore_scenes / HTML_NAME) as source:  # the package's window reader, decimated
        expected = source.read_window(PixelWindow(512, 256, 256, 256), max_side=128)
    assert thumbnail.size == (128, 128) and (np.asarray(thumbnail) == np.asarray(expected)).all()


def test_search_is_search(client: TestClient, index_copy: Path, tiny_model_dir: Path,
                          shared_data: Path) -> None:
    response = client.post("/api/search", json={"text": "many airplanes", "k": 12})
    expected = search(index_copy, "many airplanes", k=12, model=tiny_model_dir)
    hits = response.json()["hits"]
    assert [hit["id"] for hit in hits] == [hit["id"] for hit in expected]
    assert [hit["score"] for hit in hits] == pytest.approx([hit["score"] for hit in expected], abs=1e-6)
    first = hits[0]
    assert first["position"] == EmbeddingIndex.open(index_copy).ids().index(first["id"]) and first["label"] is None

    image_bytes = (shared_data / "dota" / "images" / "P1888.png").read_bytes()
    by_image = client.post("/api/search/image", files={"image": ("q.png", image_bytes, "image/png")},
                           data={"k": "5"}).json()["hits"]
    expected = search(index_copy, Image.open(io.BytesIO(image_bytes)), k=5, model=tiny_model_dir)
    assert [hit["id"] for hit in by_image] == [hit["id"] for hit in expected]

    ids = [hit["id"] for hit in hits]
    for item_id, label in ((ids[0], "positive"), (ids[1], "positive"), (ids[5], "negative")):
        assert client.post("/api/labels", json={"id": item_id, "label": label}).status_code == 200
    by_examples = client.post("/api/search", json={"examples": True, "k": 6}).json()["hits"]
    expected = search(index_copy, Examples([ids[0], ids[1]], [ids[5]], 0.5), k=6, model=tiny_model_dir)
    assert [hit["id"] for hit in by_examples] == [hit["id"] for hit in expected]

    merged = client.post("/api/search", json={"text": "many airplanes", "k": 12, "merge": True}).json()["hits"]
    regions = merge_hits(search(index_copy, "many airplanes", k=12, model=tiny_model_dir))
    assert [(hit["id"], hit["merged"]) for hit in merged] == [(hit["id"], hit["merged"]) for hit in regions]
    assert sum(hit["merged"] for hit in merged) == 12

    assert client.post("/api/search", json={"text": "  "}).status_code == 400
    assert client.post("/api/search", json={}).json()["detail"] == "give either a query text or examples: true"


def test_hits_carry_their_stac_item_collection_and_datetime(stac_explore_index: Path, tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    index = Path(shutil.copytree(stac_explore_index, tmp_path / "stac.index"))
    client = _client(index, tiny_model_dir)
    scenes = {scene["id"]: Path(scene["name"]).name for scene in client.get("/api/scenes").json()}
    no_stac = dict.fromkeys(STAC_ITEM)

    def check(hits: list[dict]) -> None:
        assert {scenes[hit["scene"]] for hit in hits} == {"item.tif", "plain.tif"}
        for hit in hits:
            assert {name: hit[name] for name in STAC_ITEM} == (STAC_ITEM if scenes[hit["scene"]] == "item.tif"
                                                                else no_stac), hit

    hits = client.post("/api/search", json={"text": "many airplanes", "k": 8}).json()["hits"]
    assert len(hits) == 8
    check(hits)
    check(client.post("/api/search", json={"text": "many airplanes", "k": 8, "merge": True}).json()["hits"])
    stac_hit = next(hit for hit in hits if hit["stac_item"])
    plain_hit = next(hit for hit in hits if not hit["stac_item"])
    for hit, label in ((stac_hit, "positive"), (plain_hit, "negative")):
        assert client.post("/api/labels", json={"id": hit["id"], "label": label}).status_code == 200
    assert client.post("/api/train").status_code == 200
    detections = client.get("/api/detections", params={"threshold": 0.0}).json()
    assert detections["total"] == 8
    check(detections["hits"])


def stored_labels(index: str | Path, storage_options: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(label set, id, label) of every row of the index's label table, sorted."""
    table = EmbeddingIndex.open(index, storage_options).open_table("labels").to_arrow()
    assert table.column_names == ["id", "label", "label_set", "time"]
    return sorted(zip(*(table.column(name).to_pylist() for name in ("label_set", "id", "label"))))


def test_labels_round_trip_and_restart(client: TestClient, index_copy: Path, tiny_model_dir: Path) -> None:
    ids = EmbeddingIndex.open(index_copy).ids()
    assert EmbeddingIndex.open(index_copy).open_table("labels") is None  # opening the app wrote nothing
    client.post("/api/labels", json={"id": ids[0], "label": "positive"})
    assert stored_labels(index_copy) == [("default", ids[0], "positive")]  # committed by the request itself
    client.post("/api/labels", json={"id": ids[3], "label": "negative"})
    client.post("/api/labels", json={"id": ids[7], "label": "positive"})
    client.post("/api/labels", json={"id": ids[7], "label": None})  # cleared
    assert stored_labels(index_copy) == sorted([("default", ids[0], "positive"), ("default", ids[3], "negative")])
    client.post("/api/labels", json={"id": ids[3], "label": "positive"})  # relabelled: one row, the new label
    client.post("/api/labels", json={"id": ids[3], "label": "negative"})
    labels = client.get("/api/labels").json()
    assert labels["label_set"] == "default"
    assert sorted((row["id"], row["label"], row["position"]) for row in labels["labels"]) == sorted(
        [(ids[0], "positive", 0), (ids[3], "negative", 3)])
    assert stored_labels(index_copy) == sorted([("default", ids[0], "positive"), ("default", ids[3], "negative")])

    again = _client(index_copy, tiny_model_dir)  # a restart reads the table back
    assert again.get("/api/labels").json()["labels"] == labels["labels"]
    other = _client(index_copy, tiny_model_dir, labels="ships")
    assert other.get("/api/labels").json() == {"label_set": "ships", "labels": []}
    other.post("/api/labels", json={"id": ids[1], "label": "negative"})
    other.post("/api/labels", json={"id": ids[0], "label": "negative"})  # the same window, in another set
    assert [row["label"] for row in _client(index_copy, tiny_model_dir, labels="ships").get(
        "/api/labels").json()["labels"]] == ["negative", "negative"]
    assert len(again.get("/api/labels").json()["labels"]) == 2
    assert stored_labels(index_copy) == sorted([("default", ids[0], "positive"), ("default", ids[3], "negative"),
                                                ("ships", ids[0], "negative"), ("ships", ids[1], "negative")])

    assert client.post("/api/labels", json={"id": "nope", "label": "positive"}).status_code == 404
    assert client.post("/api/labels", json={"id": ids[0], "label": "maybe"}).status_code == 422


def test_label_files_of_the_earlier_layout_move_into_the_table(index_copy: Path, tiny_model_dir: Path) -> None:
    ids = EmbeddingIndex.open(index_copy).ids()
    then = datetime(2026, 12, 1, 12, 30, tzinfo=timezone.utc)

    def write_label_file(label_set: str, rows: list[tuple[str, str]]) -> None:  # as the earlier LabelStore did
        pq.write_table(pa.table({"id": [item_id for item_id, _ in rows], "label": [label for _, label in rows],
                                 "label_set": [label_set] * len(rows), "time": [then] * len(rows)},
                                schema=pa.schema([("id", pa.string()), ("label", pa.string()),
                                                  ("label_set", pa.string()), ("time", pa.timestamp("us", tz="UTC"))])),
                       index_copy / f"labels-{label_set}.parquet")

    write_label_file("default", [(ids[0], "positive"), (ids[2], "negative")])
    write_label_file("ships", [(ids[5], "positive")])
    client = _client(index_copy, tiny_model_dir)
    assert sorted((row["id"], row["label"], row["time"]) for row in client.get("/api/labels").json()["labels"]) == [
        (ids[0], "positive", then.isoformat()), (ids[2], "negative", then.isoformat())]
    assert not list(index_copy.glob("labels-*.parquet"))  # moved: every set, the one opened or not
    assert stored_labels(index_copy) == sorted([("default", ids[0], "positive"), ("default", ids[2], "negative"),
                                                ("ships", ids[5], "positive")])
    assert [row["id"] for row in _client(index_copy, tiny_model_dir, labels="ships").get(
        "/api/labels").json()["labels"]] == [ids[5]]

    client.post("/api/labels", json={"id": ids[0], "label": "negative"})
    write_label_file("default", [(ids[0], "positive"), (ids[9], "positive")])  # an old file back: it adds, never undoes
    assert sorted((row["id"], row["label"]) for row in _client(index_copy, tiny_model_dir).get(
        "/api/labels").json()["labels"]) == sorted([(ids[0], "negative"), (ids[2], "negative"), (ids[9], "positive")])

    (index_copy / "labels-broken.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="labels-broken.parquet: not a label file of rclip-hf explore"):
        create_app(index_copy, tiny_model_dir)


def test_the_label_table_is_compacted_when_opened(index_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.explore import labels as labels_module

    index = EmbeddingIndex.open(index_copy)
    ids = index.ids()
    store = labels_module.LabelStore(index)
    for item_id in ids[:6]:
        store.set(item_id, "positive")
    store.set(ids[0], None)

    def fragments() -> int:
        return index.open_table("labels").stats()["fragment_stats"]["num_fragments"]

    assert fragments() == 5  # one per label committed (the cleared one's went with it)
    monkeypatch.setattr(labels_module, "COMPACT_FRAGMENTS", 4)
    assert labels_module.LabelStore(index).get() == store.get() == dict.fromkeys(ids[1:6], "positive")
    assert fragments() == 1


def test_an_index_in_object_storage(s3, explore_scenes: Path, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    endpoint, options, _ = s3
    uri = "s3://rclip/indexes/scenes"
    build_explore_index(explore_scenes, uri, tiny_model_dir, storage_options=options)
    client = _client(uri, tiny_model_dir, storage_options=options)
    index = EmbeddingIndex.open(uri, options)
    hits = client.post("/api/search", json={"text": "many airplanes", "k": 12}).json()["hits"]
    expected = search(index, "many airplanes", k=12, model=tiny_model_dir)
    assert [hit["id"] for hit in hits] == [hit["id"] for hit in expected]
    geo = _scenes(client)["p1888.tif"]  # the scenes are the local files the index names
    assert client.get(f"/api/windows/{hits[0]['position']}/thumbnail.png").status_code == 200
    assert client.get(f"/api/scenes/{geo['id']}/scores", params={"source": "query"}).json()["windows"]

    ids = index.ids()
    labels = [(ids[0], "positive"), (ids[1], "positive"), (ids[20], "negative"), (ids[30], "positive")]
    for item_id, label in labels:
        assert client.post("/api/labels", json={"id": item_id, "label": label}).status_code == 200
    client.post("/api/labels", json={"id": ids[30], "label": None})
    assert stored_labels(uri, options) == sorted(("default", item_id, label) for item_id, label in labels[:3])

    again = _client(uri, tiny_model_dir, storage_options=options)  # a restart finds them in the bucket
    assert sorted((row["id"], row["label"]) for row in again.get("/api/labels").json()["labels"]) == sorted(labels[:3])
    trained = again.post("/api/train").json()
    assert (trained["positive"], trained["negative"], trained["windows"]) == (2, 1, 36)
    written = again.post("/api/export", json={"path": str(tmp_path / "found.geojson"), "threshold": 0.0}).json()
    assert written["files"] == [str(tmp_path / "found.geojson"), str(tmp_path / "found.pixel.geojson")]
    assert len(json.loads((tmp_path / "found.geojson").read_text())["features"]) == 9
    again.post("/api/export", json={"path": str(tmp_path / "labels.parquet"), "format": "labels"})
    assert sorted((row["id"], row["label"]) for row in pq.read_table(tmp_path / "labels.parquet").to_pylist()) == sorted(
        labels[:3])

    storage = ["--storage-option", f"endpoint={endpoint}", "allow_http=true", "region=us-east-1"]
    with explore_server(uri, tiny_model_dir, *storage) as url:  # `rclip-hf explore --index s3://...`
        token = url.split("token=")[1]
        served = httpx.get(url.split("?")[0] + "api/labels", headers={"Authorization": f"token {token}"}).json()
    assert served["labels"] == again.get("/api/labels").json()["labels"]
    httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()  # the bucket is gone: a label cannot be saved
    refused = again.post("/api/labels", json={"id": ids[35], "label": "positive"})
    assert refused.status_code == 503 and refused.json()["detail"].startswith(f"the label was not saved: {uri}: ")
    assert again.get("/api/labels").json()["labels"] == served["labels"]  # and is not shown as set
    assert cli.main(["explore", "--index", "s3://rclip/indexes/none", "--model", str(tiny_model_dir), *storage]) == 2
    assert "error: --index s3://rclip/indexes/none: no embedding index" in capsys.readouterr().err


def test_train_detections_uncertainty_merge_and_heat_map(client: TestClient, index_copy: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    index = EmbeddingIndex.open(index_copy)
    ids = index.ids()
    assert client.post("/api/train").json()["detail"].startswith("training needs at least one positive and one negative")
    assert client.get("/api/detections").status_code == 400
    labels = {ids[0]: 1, ids[1]: 1, ids[20]: 0}
    for item_id, label in labels.items():
        client.post("/api/labels", json={"id": item_id, "label": "positive" if label else "negative"})
    trained = client.post("/api/train").json()
    assert (trained["positive"], trained["negative"], trained["windows"]) == (2, 1, 36)

    embeddings = index.embeddings_of(ids).numpy()
    reference = LogisticRegression(class_weight="balanced", max_iter=1000).fit(
        index.embeddings_of(list(labels)).numpy(), list(labels.values()))
    probabilities = reference.predict_proba(embeddings)[:, 1]
    assert trained["detections"] == int((probabilities >= 0.5).sum())

    threshold = float(np.median(probabilities))
    found = client.get("/api/detections", params={"threshold": threshold, "limit": 100}).json()
    expected = np.flatnonzero(probabilities >= threshold)
    assert found["total"] == len(expected) == len(found["hits"])
    assert sorted(hit["position"] for hit in found["hits"]) == sorted(expected.tolist())
    scores = [hit["score"] for hit in found["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx(sorted(probabilities[expected].tolist(), reverse=True), abs=1e-5)
    assert client.get("/api/detections", params={"threshold": 1.0}).json()["total"] == int((probabilities >= 1).sum())

    merged = client.get("/api/detections", params={"threshold": threshold, "merge": True, "limit": 100}).json()
    assert merged["total"] == found["total"] and sum(hit["merged"] for hit in merged["hits"]) == found["total"]
    regions = merge_hits([{**item, "rank": rank, "score": float(probabilities[position])} for rank, (position, item)
                          in enumerate(zip(expected, index.items(expected.tolist())), start=1)])
    assert sorted(hit["id"] for hit in merged["hits"]) == sorted(region["id"] for region in regions)

    uncertain = client.get("/api/uncertain", params={"count": 5}).json()["hits"]
    margin = np.abs(probabilities - 0.5)
    margin[[0, 1, 20]] = np.inf
    assert [hit["position"] for hit in uncertain] == pytest.approx(np.argsort(margin, kind="stable")[:5].tolist())
    assert not {hit["id"] for hit in uncertain} & set(labels)

    scene = _scenes(client)["p1888.tif"]
    heat = client.get(f"/api/scenes/{scene['id']}/scores", params={"source": "classifier"}).json()
    assert len(heat["windows"]) == 9 and all(cell["bbox"] is not None for cell in heat["windows"])
    assert [cell["score"] for cell in heat["windows"]] == pytest.approx(
        probabilities[[cell["position"] for cell in heat["windows"]]].tolist(), abs=1e-5)
    assert client.get(f"/api/scenes/{scene['id']}/scores").json()["detail"] == "no query yet: search first"
    hits = client.post("/api/search", json={"text": "a harbour", "k": 36}).json()["hits"]
    heat = client.get(f"/api/scenes/{scene['id']}/scores", params={"source": "query"}).json()
    by_position = {hit["position"]: hit["score"] for hit in hits}
    assert [cell["score"] for cell in heat["windows"]] == pytest.approx(
        [by_position[cell["position"]] for cell in heat["windows"]], abs=1e-5)


def test_exports(client: TestClient, index_copy: Path, explore_index: Path, tmp_path: Path) -> None:
    from shapely.geometry import shape

    ids = EmbeddingIndex.open(index_copy).ids()
    client.post("/api/search", json={"text": "many airplanes", "k": 36})
    for item_id, label in ((ids[0], "positive"), (ids[10], "positive"), (ids[30], "negative")):
        client.post("/api/labels", json={"id": item_id, "label": label})
    client.post("/api/train")
    written = client.post("/api/export", json={"path": str(tmp_path / "found.geojson"), "threshold": 0.0}).json()
    assert written["files"] == [str(tmp_path / "found.geojson"), str(tmp_path / "found.pixel.geojson")]
    lonlat = json.loads((tmp_path / "found.geojson").read_text())
    pixel = json.loads((tmp_path / "found.pixel.geojson").read_text())
    assert client.get("/api/export/geojson", params={"threshold": 0.0}).json() == {"lonlat": lonlat, "pixel": pixel}
    assert len(lonlat["features"]) == 9 and len(pixel["features"]) == 27
    assert {feature["properties"]["coordinates"] for feature in lonlat["features"]} == {"EPSG:4326"}
    assert {feature["properties"]["coordinates"] for feature in pixel["features"]} == {"pixel"}
    for feature in lonlat["features"]:
        polygon = shape(feature["geometry"])
        assert polygon.is_valid and polygon.exterior.is_ccw
        lon, lat = polygon.exterior.coords[0]
        assert 8.9 < lon < 9.0 and 40.9 < lat < 41.0  # (1000000, 5000000) in EPSG:3857

    client.post("/api/export", json={"path": str(tmp_path / "found.parquet"), "format": "parquet", "threshold": 0.5})
    table = pq.read_table(tmp_path / "found.parquet")
    detections = client.get("/api/detections", params={"threshold": 0.5}).json()["hits"]
    assert table.column("id").to_pylist() == [hit["id"] for hit in detections] and b"geo" in table.schema.metadata

    hits_only = client.post("/api/export", json={"path": str(tmp_path / "hits.geojson"), "source": "hits"}).json()
    assert hits_only["files"] == [str(tmp_path / "hits.geojson"), str(tmp_path / "hits.pixel.geojson")]
    assert len(json.loads((tmp_path / "hits.geojson").read_text())["features"]) == 9

    client.post("/api/export", json={"path": str(tmp_path / "labels.parquet"), "format": "labels"})
    labels = pq.read_table(tmp_path / "labels.parquet").to_pylist()
    assert sorted((row["id"], row["label"]) for row in labels) == sorted(
        [(ids[0], "positive"), (ids[10], "positive"), (ids[30], "negative")])
    assert all(len(row["window"]) == 4 for row in labels)

    for path, file_format in (("x.sh", "geojson"), ("x.geojson", "parquet"), (".bashrc", "labels")):
        refused = client.post("/api/export", json={"path": str(tmp_path / path), "format": file_format})
        assert refused.status_code == 400 and f"a {file_format} export ends with" in refused.json()["detail"]
        assert not (tmp_path / path).exists()
    missing = client.post("/api/export", json={"path": str(tmp_path / "no" / "such" / "x.geojson")})
    assert missing.status_code == 400 and "its folder does not exist" in missing.json()["detail"]
    built = {file.name for file in explore_index.iterdir()}
    assert {file.name for file in index_copy.iterdir()} - built == {"labels.lance"}  # all it wrote there


def test_token_guards_every_request(index_copy: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(UserError, match="--token: give at least 16 URL-safe characters"):
        create_app(index_copy, tiny_model_dir, token="short; Path=/x")
    app = create_app(index_copy, tiny_model_dir)
    token = app.state.token
    assert len(token) >= 32 and create_app(index_copy, tiny_model_dir).state.token != token
    client = TestClient(app)
    for path in ("/", "/api/scenes", "/static/app.js", "/static/leaflet/leaflet.js", "/docs", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 403 and "open the URL that `rclip-hf explore` printed" in response.text
    assert client.get("/api/scenes", params={"token": "wrong"}).status_code == 403
    assert client.get("/api/scenes", headers={"Authorization": "token wrong"}).status_code == 403
    first = client.get("/", params={"token": token})
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
    assert "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
    assert client.get("/api/scenes").status_code == 200  # the cookie now
    assert client.get("/static/leaflet/LICENSE").status_code == 200 and client.get("/openapi.json").status_code == 200
    docs = client.get("/docs").text  # FastAPI's Swagger page, its script and style from the package
    assert "static/swagger-ui/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    client.cookies.clear()
    assert client.get("/api/scenes").status_code == 403


def test_path_and_html_injection_and_bad_uploads(client: TestClient, index_copy: Path) -> None:
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "onerror" not in page.text and page.headers["x-content-type-options"] == "nosniff"
    app_js = client.get("/static/app.js").text
    assert "innerHTML" not in app_js and "insertAdjacentHTML" not in app_js
    scene = _scenes(client)[HTML_NAME]
    assert scene["name"] == HTML_NAME  # JSON text: the page puts it in with textContent
    assert client.get("/api/scenes").headers["content-type"] == "application/json"

    for path in ("/api/scenes/..%2F..%2Fetc%2Fpasswd/tiles/0/0/0.png", "/api/scenes/%2Fetc%2Fpasswd/size",
                 f"/api/scenes/{'0' * 16}/tiles/0/0/0.png", "/static/../app.py", "/static/%2e%2e/app.py",
                 "/api/windows/99999/thumbnail.png", "/api/windows/-1/thumbnail.png"):
        assert client.get(path).status_code == 404, path

    bad = client.post("/api/search/image", files={"image": ("x.png", b"not an image at all", "image/png")})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("not an image: cannot decode image bytes")
    assert "\n" not in bad.json()["detail"]
    basemap = _client(index_copy, client.app.state.explorer.model, basemap="https://{s}.tile.example.org/{z}/{x}/{y}.png")
    assert basemap.get("/api/info").json()["basemap"] == "https://{s}.tile.example.org/{z}/{x}/{y}.png"
    assert "img-src 'self' data: blob: https://*.tile.example.org;" in basemap.get("/").headers["content-security-policy"]
    small = _client(index_copy, client.app.state.explorer.model, max_upload_bytes=1000)
    big = small.post("/api/search/image", files={"image": ("x.png", b"\x89PNG" + b"0" * 2000, "image/png")})
    assert big.status_code == 400 and big.json()["detail"] == "the image is larger than 1000 bytes"
    huge = small.post("/api/search/image", files={"image": ("x.png", b"0" * 100_000, "image/png")})
    assert huge.status_code == 400 and huge.json()["detail"] == "the image is larger than 1000 bytes"  # unread


def test_a_moved_scene_file_gives_404_with_the_reason_and_the_rest_works(client: TestClient, explore_scenes: Path,
                                                                           index_copy: Path, tmp_path: Path) -> None:
    png = _scenes(client)[HTML_NAME]
    paths = EmbeddingIndex.open(index_copy).column("path")
    position, other = paths.index(str(explore_scenes / HTML_NAME)), paths.index(str(explore_scenes / "p1888.tif"))
    assert client.get(f"/api/scenes/{png['id']}/tiles/0/0/0.png").status_code == 200
    (explore_scenes / HTML_NAME).rename(tmp_path / "elsewhere.png")
    try:
        response = client.get(f"/api/scenes/{png['id']}/tiles/0/0/0.png")
        assert response.status_code == 404 and response.json()["detail"] == (
            f"scene {HTML_NAME}: its file {explore_scenes / HTML_NAME} is gone (moved or deleted since it was indexed)")
        assert client.get(f"/api/windows/{position}/thumbnail.png").status_code == 404
        assert len(client.post("/api/search", json={"text": "a harbour", "k": 36}).json()["hits"]) == 36
        assert client.get(f"/api/windows/{other}/thumbnail.png").status_code == 200
        assert len(client.get("/api/scenes").json()) == 3
    finally:
        (tmp_path / "elsewhere.png").rename(explore_scenes / HTML_NAME)


def test_an_image_index_is_explored_in_pixels(shared_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from inference_models import copy_images

    from rclip_hf.inference import build_index

    images = copy_images(shared_data, tmp_path / "tiles", per_class=2)
    build_index(tmp_path / "tiles", tmp_path / "images.index", tiny_model_dir)
    client = _client(tmp_path / "images.index", tiny_model_dir)
    scenes = client.get("/api/scenes").json()
    assert sorted(scene["name"] for scene in scenes) == sorted(image.name for image in images)
    assert {(scene["space"], scene["windows"], scene["width"]) for scene in scenes} == {("pixel", 1, None)}
    scene = scenes[0]
    assert client.get(f"/api/scenes/{scene['id']}/size").json() == {"width": 400, "height": 400}
    tile = _png_pixels(client.get(f"/api/scenes/{scene['id']}/tiles/0/0/0.png").content)
    original = np.asarray(Image.open(next(image for image in images if image.name == scene["name"])).convert("RGB"))
    assert np.abs(tile[:256, :256, :3].astype(int) - original[:256, :256]).max() <= 2  # JPEG: GDAL vs Pillow
    hits = client.post("/api/search", json={"text": "grass", "k": 4}).json()["hits"]
    assert [hit["id"] for hit in hits] == [hit["id"] for hit in search(tmp_path / "images.index", "grass", k=4,
                                                                          model=tiny_model_dir)]
    assert all(hit["window"] is None and hit["ring"] is None for hit in hits)
    thumbnail = Image.open(io.BytesIO(client.get(f"/api/windows/{hits[0]['position']}/thumbnail.png").content))
    assert thumbnail.size == (128, 128)


def test_tiles_of_data_that_is_not_8_bit_are_stretched(shared_data: Path, tmp_path: Path) -> None:
    from morecantile import tms
    from test_scene_windows import dota_pixels, write_geotiff

    from rclip_hf.explore.tiles import mercator_tile

    pixels = dota_pixels(shared_data).astype(np.uint16) * 40 + 1000  # 12-bit-like data: 1000..11200
    path = write_geotiff(tmp_path / "deep.tif", pixels, origin=(1_000_000.0, 5_000_000.0), gsd=2.0)
    from rasterio.warp import transform

    (lon,), (lat,) = transform("EPSG:3857", "EPSG:4326", [1_000_000.0 + 712], [5_000_000.0 - 557])  # the centre
    tile = tms.get("WebMercatorQuad").tile(lon, lat, 15)
    image = Image.open(io.BytesIO(mercator_tile(str(path), tile.z, tile.x, tile.y)))
    values = np.asarray(image)[..., :3]
    assert values.dtype == np.uint8 and values.min() == 0 and values.max() == 255  # stretched, clipped


def test_scores_are_streamed_batch_by_batch_and_equal_the_one_shot_computation(client: TestClient, index_copy: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from sklearn.linear_model import LogisticRegression

    from rclip_hf.explore import session
    from rclip_hf.inference.search import encode_queries

    explorer = client.app.state.explorer
    index = EmbeddingIndex.open(index_copy)
    ids = index.ids()
    labels = {ids[2]: 1, ids[9]: 1, ids[30]: 0, ids[31]: 0}
    for item_id, label in labels.items():
        client.post("/api/labels", json={"id": item_id, "label": "positive" if label else "negative"})
    read = []

    def shard_embeddings(batch_size: int = 65536):
        for offset, embeddings in EmbeddingIndex.shard_embeddings(explorer.index, batch_size):
            read.append((offset, len(embeddings)))
            yield offset, embeddings

    monkeypatch.setattr(session, "SCORE_BATCH", 5)
    monkeypatch.setattr(explorer.index, "shard_embeddings", shard_embeddings)
    client.post("/api/train").raise_for_status()
    assert read == [(offset, min(5, 36 - offset)) for offset in range(0, 36, 5)]  # 8 batches, never all at once

    embeddings = index.embeddings_of(ids)  # (36, D): the one-shot computation over all of them
    fitted = LogisticRegression(class_weight="balanced", max_iter=1000).fit(
        index.embeddings_of(list(labels)).numpy(), list(labels.values()))
    weight = torch.from_numpy(fitted.coef_[0].astype(np.float32))
    one_shot = torch.sigmoid(embeddings @ weight + float(fitted.intercept_[0])).numpy()
    np.testing.assert_allclose(explorer.probabilities, one_shot, rtol=1e-6, atol=0)
    np.testing.assert_allclose(explorer.probabilities, fitted.predict_proba(embeddings.numpy())[:, 1], atol=1e-6)

    client.post("/api/search", json={"text": "a harbour", "k": 5}).raise_for_status()
    read.clear()
    query = encode_queries(explorer.model, explorer.processor, ["a harbour"])[0]
    np.testing.assert_allclose(explorer.query_scores(), (embeddings @ query).numpy(), rtol=1e-6, atol=1e-7)
    assert len(read) == 8  # the heat map's scores too


def test_smallest_is_the_head_of_a_stable_argsort() -> None:
    from rclip_hf.explore.session import smallest

    values = np.random.default_rng(0).integers(0, 20, 500).astype(np.float32)  # many ties
    values[[3, 77]] = np.inf
    for count in (0, 1, 7, 20, 43, 499, 500, 900):
        assert smallest(values, count).tolist() == np.argsort(values, kind="stable")[:count].tolist()


def test_search_goes_through_the_index_s_ann_search_when_it_has_one(index_copy: Path, tiny_model_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.inference import index as index_module

    EmbeddingIndex.open(index_copy).build_ann(num_partitions=2)  # as `rclip-hf index` does at ANN_MIN_ITEMS
    monkeypatch.setattr(index_module, "ANN_MIN_ITEMS", 10)  # so that 36 windows are answered by it
    calls = []
    original = EmbeddingIndex._search_ann

    def spy(self, *args, **kwargs):
        calls.append(len(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingIndex, "_search_ann", spy)
    client = _client(index_copy, tiny_model_dir)
    hits = client.post("/api/search", json={"text": "many airplanes", "k": 10}).json()["hits"]
    assert calls == [36]  # the app's search: ANN, once, as the CLI's
    expected = search(index_copy, "many airplanes", k=10, model=tiny_model_dir)
    assert calls == [36, 36] and [hit["id"] for hit in hits] == [hit["id"] for hit in expected]
    assert [hit["score"] for hit in hits] == pytest.approx([hit["score"] for hit in expected], abs=1e-6)
