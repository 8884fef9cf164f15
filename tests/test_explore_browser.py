"""End to end: `rclip-hf explore` started on a free port, driven in Debian's chromium by pytest-playwright (no browser
download): a text query, boxes on the map, two positives and a negative labelled by clicking, training, detections,
the threshold slider, a GeoJSON export equal to the API's, a scene named as HTML that runs nothing, the labels
found again after a restart, and hits of a STAC item showing its id, collection and datetime as text. Set
`RCLIP_EXPLORE_SCREENSHOT=docs/assets/explore.jpg` to refresh the README's screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from explore_fixtures import HTML_NAME, STAC_ITEM
from test_scene_cli import CHROMIUM

pytest_plugins = ("inference_fixtures", "explore_fixtures")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """pytest-playwright launches Debian's chromium, never a downloaded browser."""
    if CHROMIUM is None:
        message = "needs Debian's chromium package (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return {"executable_path": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}


@contextmanager
def explore_server(index: Path | str, model_dir: Path, *arguments: str) -> Iterator[str]:
    """Run `rclip-hf explore --port 0 [arguments]` in a subprocess; yields the URL it prints (with the token)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "rclip_hf.cli", "explore", "--index", str(index), "--model",
                                str(model_dir), "--port", "0", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment)
    try:
        for line in process.stdout:
            if line.startswith("open http://127.0.0.1:"):
                yield line.split()[1]
                break
        else:
            pytest.fail(f"rclip-hf explore did not start: {process.stderr.read()}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_query_label_train_review_export_and_restart(page, index_copy: Path, tiny_model_dir: Path,
                                                     tmp_path: Path) -> None:
    from playwright.sync_api import expect

    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(("http://127.0.0.1", "data:")) else None)
    with explore_server(index_copy, tiny_model_dir) as url:
        base, token = url.split("/?token=")
        api = httpx.Client(base_url=base, headers={"Authorization": f"token {token}"})
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        names = page.locator("#scene-list li")
        expect(names).to_have_count(3)
        expect(names.filter(has_text=HTML_NAME)).to_have_count(1)  # shown as text ...
        assert page.title() == "rclip-hf explore" and page.locator("img[src='x']").count() == 0  # ... ran nothing

        page.fill("#query", "many airplanes")
        page.press("#query", "Enter")
        rows = page.locator("#hit-list li.hit")
        expect(rows).to_have_count(36)  # k = 50, capped at the index's 36 windows
        first_scene = api.post("/api/search", json={"text": "many airplanes", "k": 50}).json()["hits"][0]["scene"]
        on_scene = sum(hit["scene"] == first_scene for hit in
                       api.post("/api/search", json={"text": "many airplanes", "k": 50}).json()["hits"])
        expect(page.locator("path.hit-box")).to_have_count(on_scene)
        page.wait_for_function("() => document.querySelector('#hit-list img')?.naturalWidth > 0")  # a thumbnail

        ids = [rows.nth(i).get_attribute("data-id") for i in (0, 1, 4)]
        rows.nth(0).locator("button.label-positive").click()
        rows.nth(1).locator("button.label-positive").click()
        rows.nth(4).locator("button.label-negative").click()
        expected_labels = sorted([[ids[0], "positive"], [ids[1], "positive"], [ids[2], "negative"]])
        expect(page.locator("body")).to_have_attribute("data-labels", json.dumps(expected_labels).replace(", ", ","))
        assert sorted([row["id"], row["label"]] for row in api.get("/api/labels").json()["labels"]) == expected_labels
        expect(rows.nth(0)).to_have_class(re.compile(r"\bpositive\b"))
        rows.nth(2).click()  # select, then the keyboard: p labels, x clears, j moves down
        page.keyboard.press("p")
        expect(rows.nth(2)).to_have_class(re.compile(r"\bpositive\b"))
        page.keyboard.press("x")
        expect(rows.nth(2)).not_to_have_class(re.compile(r"\bpositive\b"))
        page.keyboard.press("j")
        expect(rows.nth(3)).to_have_class(re.compile(r"\bselected\b"))
        for label in ("positive", "negative", "unlabelled"):  # a click on a box cycles its label
            page.locator("path.hit-box.selected").click()
            expect(page.locator("path.hit-box.selected")).to_have_class(re.compile(rf"\b{label}\b"))
        expect(page.locator("body")).to_have_attribute("data-labels", json.dumps(expected_labels).replace(", ", ","))

        page.click("#train")
        expect(page.locator("#train-status")).to_contain_text("trained on 2 positive, 1 negative")
        expect(page.locator("#detection-count")).to_contain_text("≥ 0.50")
        assert page.locator("body").get_attribute("data-detections") == str(
            api.get("/api/detections", params={"threshold": 0.5}).json()["total"])
        assert page.locator("#uncertain-list li").count() == 8

        page.locator("#threshold").fill("0.2")
        expect(page.locator("#detection-count")).to_contain_text("≥ 0.20")
        total = api.get("/api/detections", params={"threshold": 0.2}).json()["total"]
        expect(page.locator("body")).to_have_attribute("data-detections", str(total))
        expect(page.locator("#hit-list li.hit")).to_have_count(total)

        page.fill("#export-path", str(tmp_path / "found.geojson"))
        page.click("#export-geojson")
        expect(page.locator("#export-status")).to_contain_text("wrote")
        exported = json.loads((tmp_path / "found.geojson").read_text())
        assert exported == api.get("/api/export/geojson", params={"threshold": 0.2}).json()["lonlat"]
        page.click("#export-parquet")
        expect(page.locator("#export-status")).to_contain_text("found.parquet")
        page.click("#export-labels")
        expect(page.locator("#export-status")).to_contain_text("found.labels.parquet")
        assert (tmp_path / "found.parquet").is_file() and (tmp_path / "found.labels.parquet").is_file()

        names.filter(has_text="p1888.tif").click()
        page.select_option("#heat", "classifier")
        expect(page.locator("path.heat-cell")).to_have_count(9)
        expect(page.locator("img.leaflet-tile-loaded").first).to_be_visible()  # the GeoTIFF's web-mercator tiles
        screenshot = os.environ.get("RCLIP_EXPLORE_SCREENSHOT")
        page.screenshot(path=str(REPO_ROOT / screenshot) if screenshot else str(tmp_path / "explore.jpg"), type="jpeg",
                        quality=80)
        page.goto(f"{base}/docs")  # the API's Swagger page renders offline (the cookie carries the token)
        expect(page.locator(".opblock").first).to_be_visible()
        assert page.locator(".opblock").count() >= 12
    assert not outside  # everything came from the app itself

    with explore_server(index_copy, tiny_model_dir) as url:  # a restart finds the labels again
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-labels", json.dumps(expected_labels).replace(", ", ","))
        page.fill("#query", "many airplanes")
        page.press("#query", "Enter")
        expect(page.locator("#hit-list li.hit.positive")).to_have_count(2)
        expect(page.locator("#hit-list li.hit.negative")).to_have_count(1)


def test_hits_of_stac_items_show_item_collection_and_datetime_as_text(page, stac_explore_index: Path,
                                                                      tiny_model_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    index = Path(shutil.copytree(stac_explore_index, tmp_path / "stac.index"))
    with explore_server(index, tiny_model_dir) as url:
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        page.fill("#query", "many airplanes")
        page.press("#query", "Enter")
        expect(page.locator("#hit-list li.hit")).to_have_count(8)
        stac = page.locator("#hit-list li.hit .stac")
        expect(stac).to_have_count(4)  # the 4 windows of the STAC item's scene; the plain scene's show none
        shown = f"{STAC_ITEM['stac_collection']} / {STAC_ITEM['stac_item']} · {STAC_ITEM['stac_datetime']}"
        expect(stac).to_have_text([shown] * 4)  # the item id's HTML, as text ...
        assert page.title() == "rclip-hf explore" and page.locator("img[src='x']").count() == 0  # ... ran nothing
