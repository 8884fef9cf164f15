"""The index on LanceDB: migration of an index written by the format before it (a committed fixture), the one-line
refusal of such an index, GeoParquet export, object storage on a local S3 server (moto), and index processes that
end with their parent."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from rclip_hf import cli
from rclip_hf.commands import index as index_command
from rclip_hf.inference import EmbeddingIndex, build_index, search
from rclip_hf.inference.index import FAILURES_FILE, migrate_index
from rclip_hf.inference.scenes import WindowOptions, build_scene_index
from rclip_hf.loading import model_fingerprint

pytest_plugins = ("inference_fixtures", "storage_fixtures")  # fixtures: tiny_model_dir, tiny_model, s3

OLD = Path(__file__).parent / "data" / "old_index"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("name", ["images.index", "scenes.index"])
def test_an_old_index_is_refused_with_the_migrate_command_and_migrates(name: str, tmp_path: Path, tiny_model,
                                                                       tiny_model_dir: Path, capsys) -> None:
    old = OLD / name
    code = cli.main(["search", "--model", str(tiny_model_dir), "--index", str(old), "--text", "x"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"rclip-hf index migrate {old} NEW_INDEX" in line

    assert cli.main(["index", "migrate", str(old), str(tmp_path / "new")]) == 0
    manifest = json.loads((old / "index.json").read_text())
    index = EmbeddingIndex.open(tmp_path / "new")
    model, processor = tiny_model
    index.check_model(model)  # the fixture's model is make_tiny_model_dir(seed=0), as tiny_model
    assert index.metadata["fingerprint"] == manifest["fingerprint"] == model_fingerprint(model)
    assert len(index) == manifest["num_items"] and index.verify() == []
    (shard,) = manifest["shards"]
    with safe_open(old / f"{shard['name']}.safetensors", framework="pt") as handle:
        stored = handle.get_tensor("embeddings")
    import pyarrow.parquet as pq

    old_rows = pq.read_table(old / f"{shard['name']}.parquet").to_pylist()
    ids = [row["id"] for row in old_rows]
    torch.testing.assert_close(index.embeddings_of(ids), stored, atol=0, rtol=0)
    items = {item["id"]: item for item in index.items(range(len(index)))}
    for row in old_rows:
        item = items[row["id"]]
        added = {"stac_item", "stac_collection", "stac_datetime"} & set(item)  # columns since the old format
        assert {key: item[key] for key in set(item) - added} == {
            key: row[key] for key in set(item) - added}  # every column, bbox as the old struct
        assert all(item[key] is None for key in added)  # null for the migrated windows
    hits = search(index, "a field", k=2, model=model, processor=processor)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    if name == "scenes.index":
        assert index.metadata["windows"] == manifest["windows"]
        assert {scene: key.digest for scene, key in index.scene_keys().items()} == {
            scene: key["digest"] for scene, key in manifest["scenes"].items()}
    with pytest.raises(Exception, match="already there"):
        migrate_index(old, tmp_path / "new")


def test_export_is_geoparquet_that_geopandas_and_duckdb_read(tmp_path: Path, capsys) -> None:
    duckdb = pytest.importorskip("duckdb")
    geopandas = pytest.importorskip("geopandas")
    migrate_index(OLD / "scenes.index", tmp_path / "scenes")
    assert cli.main(["index", "export", str(tmp_path / "scenes"), "--output", str(tmp_path / "items.parquet")]) == 0
    frame = geopandas.read_parquet(tmp_path / "items.parquet")
    assert len(frame) == 4 and frame.crs.to_string() == "OGC:CRS84" and "embedding" not in frame.columns
    assert set(frame["crs"]) == {"EPSG:3857"} and frame.geometry.is_valid.all()
    # DuckDB without its spatial extension (not installable offline): the GeoParquet 1.1 bbox covering and metadata
    path = str(tmp_path / "items.parquet")
    (count,) = duckdb.execute("SELECT count(*) FROM read_parquet(?) WHERE bbox.xmin <= 10 AND bbox.xmax >= 8 "
                              "AND bbox.ymin <= 42 AND bbox.ymax >= 40", [path]).fetchone()
    assert count == 4
    (geo,) = duckdb.execute("SELECT value FROM parquet_kv_metadata(?) WHERE key = 'geo'", [path]).fetchone()
    assert json.loads(geo)["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]


# ----- object storage ------------------------------------------------------------------------------------------
def _images(folder: Path, count: int, start: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(start, start + count):
        pixels = np.random.default_rng(number).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img-{number:03d}.png")
    return [f"img-{number:03d}.png" for number in range(start, start + count)]


def test_build_rerun_concurrent_writers_search_and_prune_on_s3(s3, tmp_path: Path, tiny_model,
                                                               tiny_model_dir: Path, capsys) -> None:
    endpoint, options, _ = s3
    model, processor = tiny_model
    ids = _images(tmp_path / "src", 6)
    uri = "s3://rclip/indexes/tiles"
    report = build_index(tmp_path / "src", uri, model, processor, batch_size=2, commit_every=2,
                         storage_options=options)
    assert (report.added, report.total) == (6, 6)
    again = build_index(tmp_path / "src", uri, model, processor, storage_options=options)
    assert (again.added, again.already_indexed) == (0, 6)

    ids += _images(tmp_path / "src", 4, start=6)
    errors = []

    def build() -> None:
        try:
            build_index(tmp_path / "src", uri, model, processor, batch_size=1, commit_every=1,
                        storage_options=options)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    writers = [threading.Thread(target=build) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    index = EmbeddingIndex.open(uri, options)
    assert sorted(index.ids()) == ids and index.verify() == []

    code = cli.main(["search", "--model", str(tiny_model_dir), "--index", uri, "--text", "a field", "--top_k", "3",
                     "--storage-option", f"endpoint={endpoint}", "allow_http=true", "region=us-east-1",
                     "--format", "json"])
    hits = json.loads(capsys.readouterr().out)
    assert code == 0 and len(hits) == 3

    for name in ids[:3]:
        (tmp_path / "src" / name).unlink()
    pruned = build_index(tmp_path / "src", uri, model, processor, prune=True, storage_options=options)
    assert (pruned.pruned, pruned.total) == (3, len(ids) - 3)
    assert sorted(EmbeddingIndex.open(uri, options).ids()) == ids[3:]
    assert not (tmp_path / "src" / FAILURES_FILE).exists()


def test_a_received_index_on_s3_that_names_storage_outside_it_is_refused(s3, tmp_path: Path, tiny_model,
                                                                         tiny_model_dir: Path, capsys) -> None:
    import copy

    import boto3
    import lance
    import lancedb
    from lance.fragment import DataFile

    endpoint, options, _ = s3
    model, processor = tiny_model
    _images(tmp_path / "src", 2)
    uri = "s3://rclip/indexes/received"
    build_index(tmp_path / "src", uri, model, processor, storage_options=options)
    dataset = lance.dataset(f"{uri}/items.lance", storage_options=options)
    fragment = copy.deepcopy(dataset.get_fragments()[0].metadata)
    (real,) = fragment.files
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").copy_object(
        Bucket="rclip", Key=f"elsewhere/data/{real.path}",
        CopySource={"Bucket": "rclip", "Key": f"indexes/received/items.lance/data/{real.path}"})
    dataset.add_bases([lance.DatasetBasePath("s3://rclip/elsewhere", name="elsewhere", is_dataset_root=True, id=7)])
    dataset = lance.dataset(f"{uri}/items.lance", storage_options=options)
    fragment.files = [DataFile(real.path, real.fields, real.column_indices, real.file_major_version,
                               real.file_minor_version, real.file_size_bytes, base_id=7)]
    lance.LanceDataset.commit(f"{uri}/items.lance", lance.LanceOperation.Append([fragment]),
                              read_version=dataset.version, storage_options=options)
    table = lancedb.connect(uri, storage_options=options).open_table("items")
    assert table.count_rows() == 4  # LanceDB reads the other prefix's rows
    code = cli.main(["search", "--model", str(tiny_model_dir), "--index", uri, "--text", "a field",
                     "--storage-option", f"endpoint={endpoint}", "allow_http=true", "region=us-east-1"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"error: {uri}: table items.lance names 's3://rclip/elsewhere'"), line


def test_bad_storage_is_one_line(s3, tmp_path: Path, tiny_model_dir: Path, capsys,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, _, _ = s3
    _images(tmp_path / "src", 1)
    build = ["index", "--model", str(tiny_model_dir), "--source", str(tmp_path / "src")]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code = cli.main([*build, "--output", "s3://rclip/x", "--storage-option", f"endpoint=http://127.0.0.1:{closed}",
                     "allow_http=true", "region=us-east-1"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith("error: s3://rclip/x: storage unreachable")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code = cli.main([*build, "--output", "s3://rclip/y", "--storage-option", f"endpoint={endpoint}",
                     "allow_http=true", "region=us-east-1"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith("error: s3://rclip/y: ")
    code = cli.main([*build, "--output", "s3://rclip/z", "--storage-option", "endpoint"])
    assert code == 2 and "expected KEY=VALUE" in _one_error_line(capsys.readouterr().err)


def test_another_models_table_is_one_line(tmp_path: Path, tiny_model, other_model_dir: Path, capsys) -> None:
    model, processor = tiny_model
    _images(tmp_path / "src", 1)
    build_index(tmp_path / "src", tmp_path / "idx", model, processor)
    code = cli.main(["index", "--model", str(other_model_dir), "--source", str(tmp_path / "src"), "--output",
                     str(tmp_path / "idx")])
    assert code == 2 and "cannot be mixed or compared" in _one_error_line(capsys.readouterr().err)


def test_stopping_the_server_mid_build_is_one_line_and_resumable(s3, tmp_path: Path, tiny_model,
                                                                 monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    search_module = importlib.import_module("rclip_hf.inference.search")  # `search` is also a function

    endpoint, options, server = s3
    model, processor = tiny_model
    ids = _images(tmp_path / "src", 6)
    uri = "s3://rclip/stopped"
    real_encode, calls = search_module.encode_images, []

    def stop_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            server.stop()
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(search_module, "encode_images", stop_on_the_third_batch)
    monkeypatch.setattr(index_command, "load_model_for", lambda options: (model, processor))
    code = cli.main(["index", "--model", "m", "--source", str(tmp_path / "src"), "--output", uri, "--batch_size",
                     "2", "--commit_every", "2", "--storage-option", f"endpoint={endpoint}", "allow_http=true",
                     "region=us-east-1"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"error: {uri}: storage unreachable")
    server.start()  # moto keeps its state in this process: what was committed is still there
    monkeypatch.setattr(search_module, "encode_images", real_encode)
    report = build_index(tmp_path / "src", uri, model, processor, storage_options=options)
    assert report.added == 6 - 4 and sorted(EmbeddingIndex.open(uri, options).ids()) == ids


# ----- processes -----------------------------------------------------------------------------------------------
KILLED_PARENT = textwrap.dedent("""
    import sys
    from rclip_hf.inference.scenes import WindowOptions, build_scene_index
    build_scene_index([sys.argv[1]], sys.argv[2], sys.argv[3], options=WindowOptions(window=32), num_processes=2,
                      batch_size=1, commit_every=1)
""")


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="the parent is killed with POSIX SIGKILL")
def test_index_processes_end_when_their_parent_is_killed(tmp_path: Path, tiny_model_dir: Path) -> None:
    scene = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(scene)
    output = tmp_path / "idx"
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(scene), str(output), str(tiny_model_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    children: list[int] = []
    while len(children) < 2 and time.monotonic() < deadline and parent.poll() is None:
        result = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True, check=False)
        children = [int(pid) for pid in result.stdout.split()]
        time.sleep(0.2)
    assert len(children) >= 2, "the index processes did not start"
    os.kill(parent.pid, signal.SIGKILL)  # the parent only: its workers must notice and end
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    alive = [pid for pid in children if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_scene_index_stores_every_column_a_window_record_carries(tmp_path: Path, tiny_model,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from rclip_hf.inference import scenes as scenes_module

    model, processor = tiny_model
    scene = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 64, 3), dtype=np.uint8)).save(scene)
    real_record = scenes_module.window_record
    monkeypatch.setattr(scenes_module, "window_record",
                        lambda scene, window, stac=None: {**real_record(scene, window, stac),
                                                          "tile_name": f"item-{window.top}"})
    build_scene_index([scene], tmp_path / "idx", model, processor, options=WindowOptions(window=64))
    index = EmbeddingIndex.open(tmp_path / "idx")
    assert sorted(index.column("tile_name")) == ["item-0", "item-64"]
    assert {hit["tile_name"] for hit in index.items(range(2))} == {"item-0", "item-64"}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs (needs root and mount; skipped otherwise), unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_one_line_and_a_rerun_finishes_exactly(small_disk: Path, tmp_path: Path, tiny_model,
                                                              monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    model, processor = tiny_model
    ids = _images(tmp_path / "src", 8)
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as handle:  # leave the index no room
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    output = small_disk / "idx"
    monkeypatch.setattr(index_command, "load_model_for", lambda options: (model, processor))
    code = cli.main(["index", "--model", "m", "--source", str(tmp_path / "src"), "--output", str(output),
                     "--batch_size", "2", "--commit_every", "2"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"error: {output}"), line
    assert "no space left on device" in line.lower() or "No space" in line
    filler.unlink()
    report = build_index(tmp_path / "src", output, model, processor)
    index = EmbeddingIndex.open(output)
    assert sorted(index.ids()) == ids and index.verify() == [] and report.total == 8


# ----- sources and output folders (issue 27 on the LanceDB index) ------------------------------------------------
def test_an_index_remembers_its_source_and_guards_its_folder(tmp_path: Path, tiny_model, tiny_model_dir: Path,
                                                             capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor = tiny_model
    monkeypatch.setattr(index_command, "load_model_for", lambda options: (model, processor))
    ids = _images(tmp_path / "fx", 4)
    _images(tmp_path / "fy", 1)
    (tmp_path / "empty").mkdir()
    index = str(tmp_path / "fx.index")
    build = ["index", "--model", "m", "--output", index]
    assert cli.main([*build, "--source", str(tmp_path / "fx")]) == 0
    capsys.readouterr()
    cases = [
        (["--source", str(tmp_path / "fy")], f"error: --source {tmp_path / 'fy'}: the index at {index} was built from"),
        (["--source", str(tmp_path / "empty"), "--prune"], "holds no items, and an empty source never prunes"),
        (["--source", index], "is the --output index itself"),
    ]
    for argv, message in cases:
        assert cli.main([*build, *argv]) == 2
        assert message in _one_error_line(capsys.readouterr().err)
    assert sorted(EmbeddingIndex.open(index).ids()) == ids  # nothing replaced or pruned

    for name in ids[:3]:
        (tmp_path / "fx" / name).unlink()
    assert cli.main([*build, "--source", str(tmp_path / "fx"), "--prune"]) == 2
    assert "would remove 3 of the 4 items" in _one_error_line(capsys.readouterr().err)
    assert cli.main([*build, "--source", str(tmp_path / "fx"), "--prune", "--force"]) == 0
    assert EmbeddingIndex.open(index).ids() == ids[3:]
    assert cli.main([*build, "--source", str(tmp_path / "fy"), "--add-source"]) == 0
    assert sorted(EmbeddingIndex.open(index).metadata["sources"]) == sorted(
        str((tmp_path / name).resolve()) for name in ("fx", "fy"))
    capsys.readouterr()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    assert cli.main(["index", "--model", "m", "--output", str(mine), "--source", str(tmp_path / "fx")]) == 2
    assert "an existing folder with files that are not an index's" in _one_error_line(capsys.readouterr().err)
    assert sorted(path.name for path in mine.iterdir()) == ["notes.txt"]


def test_a_scene_given_twice_is_indexed_once(tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    scene = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(scene)
    report = build_scene_index([scene, tmp_path / "." / "scene.png"], tmp_path / "idx", model, processor,
                               options=WindowOptions(window=64))
    assert report.scenes == 1 and report.total == 2 and EmbeddingIndex.open(tmp_path / "idx").verify() == []
