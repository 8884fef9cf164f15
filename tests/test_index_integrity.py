"""Index integrity: concurrent writers into one table, progress committed as the build goes and kept through SIGKILL,
the index folder never read as input, changed and deleted files, `--verify`, and no POSIX-only module."""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from rclip_hf import cli
from rclip_hf.inference import EmbeddingIndex, build_index
from rclip_hf.inference.index import ItemKey, file_digest, row_key
from rclip_hf.inference.scenes import WindowOptions, build_scene_index, index_part, scene_files

search_module = importlib.import_module("rclip_hf.inference.search")  # the name `search` is also a function
scenes_module = importlib.import_module("rclip_hf.inference.scenes")
pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model


def _images(folder: Path, count: int, start: int = 0) -> list[str]:
    """`count` distinct 64x64 PNGs named img-NNN.png; returns their ids."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for number in range(start, start + count):
        pixels = np.random.default_rng(number).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img-{number:03d}.png")
        ids.append(f"img-{number:03d}.png")
    return ids


def test_two_concurrent_builders_lose_nothing_and_duplicate_nothing(tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    ids = _images(tmp_path / "src", 12)
    output, errors = tmp_path / "idx", []

    def build() -> None:
        try:
            build_index(tmp_path / "src", output, model, processor, batch_size=2, commit_every=2)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    builders = [threading.Thread(target=build) for _ in range(2)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join()
    assert errors == []
    index = EmbeddingIndex.open(output)
    assert sorted(index.ids()) == ids and index.verify() == []
    report = build_index(tmp_path / "src", output, model, processor)
    assert (report.added, report.already_indexed, report.total) == (0, 12, 12)


def test_no_module_needs_fcntl(tmp_path: Path) -> None:
    """Every module of rclip_hf imports with `fcntl` (POSIX-only) blocked, as on Windows."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        sys.modules["fcntl"] = None
        import rclip_hf
        names = [info.name for info in pkgutil.walk_packages(rclip_hf.__path__, "rclip_hf.")]
        for name in names:
            importlib.import_module(name)
        print(len(names))
    """)
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 30


def test_progress_is_committed_every_n_items(tmp_path: Path, tiny_model,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor = tiny_model
    ids = _images(tmp_path / "src", 9)
    real_encode, calls = search_module.encode_images, []

    def crash_on_the_fourth_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the build dies mid-way
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(search_module, "encode_images", crash_on_the_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "src", tmp_path / "idx", model, processor, batch_size=2, commit_every=4)
    assert EmbeddingIndex.open(tmp_path / "idx").ids() == ids[:4]  # 3 batches embedded, 2 commits of 2 batches
    monkeypatch.setattr(search_module, "encode_images", real_encode)
    report = build_index(tmp_path / "src", tmp_path / "idx", model, processor, batch_size=2, commit_every=4)
    assert (report.added, report.already_indexed, report.total) == (5, 4, 9)
    index = EmbeddingIndex.open(tmp_path / "idx")
    assert sorted(index.ids()) == ids and index.verify() == []


def test_progress_is_committed_every_t_seconds(tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor = tiny_model
    _images(tmp_path / "src", 4)
    clock = iter(range(0, 1000, 40))  # every batch "takes" 40 s: each one is committed
    # the build's clock only: LanceDB's event loop keeps the real one
    monkeypatch.setattr(search_module, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    build_index(tmp_path / "src", tmp_path / "idx", model, processor, batch_size=1, commit_every=1000,
                commit_seconds=30)
    table = EmbeddingIndex.open(tmp_path / "idx")._table
    added = [len(table.checkout(version) or table.search().select(["id"]).limit(None).to_arrow())
             for version in (v["version"] for v in table.list_versions())]
    table.checkout_latest()
    assert [count for count in added if count] == [1, 2, 3, 4]  # one commit (a table version) per batch


def test_the_index_folder_is_never_read_as_input(tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    source = tmp_path / "photos"
    ids = _images(source, 3)
    build_index(source, source / "photos.index", model, processor)
    build_index(source, source / "other.index", model, processor)  # a second index inside the folder
    ids += _images(source, 1, start=3)
    report = build_index(source, source / "photos.index", model, processor)
    assert (report.added, report.already_indexed, report.total) == (1, 3, 4)
    assert sorted(EmbeddingIndex.open(source / "photos.index").ids()) == ids


def test_changed_files_are_re_embedded_and_deleted_ones_pruned(tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    source = tmp_path / "src"
    ids = _images(source, 4)
    build_index(source, tmp_path / "idx", model, processor)
    before = dict(zip(EmbeddingIndex.open(tmp_path / "idx").ids(),
                      torch.cat([e for _, e in EmbeddingIndex.open(tmp_path / "idx").shard_embeddings()])))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(source / ids[1])  # new content
    os.utime(source / ids[2], ns=(1, 1))  # touched only: same bytes
    (source / ids[3]).unlink()
    report = build_index(source, tmp_path / "idx", model, processor)
    assert (report.added, report.changed, report.already_indexed, report.missing, report.total) == (0, 1, 2, 1, 4)
    index = EmbeddingIndex.open(tmp_path / "idx")
    after = dict(zip(index.ids(), torch.cat([e for _, e in index.shard_embeddings()])))
    assert sorted(after) == sorted(ids) and len(index.ids()) == 4
    assert not torch.allclose(after[ids[1]], before[ids[1]])
    torch.testing.assert_close(after[ids[0]], before[ids[0]])
    report = build_index(source, tmp_path / "idx", model, processor, prune=True)
    assert (report.pruned, report.missing, report.total) == (1, 0, 3)
    assert sorted(EmbeddingIndex.open(tmp_path / "idx").ids()) == ids[:3]
    assert EmbeddingIndex.open(tmp_path / "idx").verify() == []


def _row_dataset(folder: Path, images: list[Path]) -> Path:
    """Write (or rewrite) the Parquet dataset folder `folder` whose rows hold the bytes of `images`, in order."""
    rows = {"image": [{"bytes": image.read_bytes(), "path": None} for image in images]}
    dataset = datasets.Dataset.from_dict(rows, features=datasets.Features({"image": datasets.Image()}))
    dataset.to_parquet(str(folder / "data" / "train-00000.parquet"))
    return folder


def _stored(index_dir: Path) -> dict[str, torch.Tensor]:
    """Id -> stored embedding (D,) of every item of the index at `index_dir`."""
    index = EmbeddingIndex.open(index_dir)
    return dict(zip(index.ids(), torch.cat([embeddings for _, embeddings in index.shard_embeddings()])))


def _nothing_decoded_or_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged row was decoded or embedded")

    monkeypatch.setattr(search_module, "open_dataset_image", refuse)
    monkeypatch.setattr(search_module, "encode_images", refuse)


def test_row_key_is_the_digest_of_the_stored_image(tmp_path: Path) -> None:
    image = tmp_path / _images(tmp_path, 1)[0]
    expected = ItemKey(image.stat().st_size, -1, file_digest(image))
    assert row_key({"bytes": image.read_bytes(), "path": "elsewhere.png"}, None) == (expected, "")
    assert row_key({"bytes": None, "path": str(image)}, None) == (expected, "")  # a path-only cell: its file
    assert row_key({"bytes": image.read_bytes(), "path": None}, expected) == (None, "")  # unchanged
    assert row_key({"bytes": b"other", "path": None}, expected)[0].digest != expected.digest
    assert row_key(None, None) == (None, "the row has no image (empty cell)")
    key, reason = row_key({"bytes": None, "path": str(tmp_path / "gone.png")}, None)
    assert key is None and reason.startswith(f"{tmp_path / 'gone.png'}: cannot read file")


def test_changed_dataset_rows_are_re_embedded(tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor = tiny_model
    pngs = [tmp_path / "png" / name for name in _images(tmp_path / "png", 4)]
    source = _row_dataset(tmp_path / "rows", pngs[:3])
    first = build_index(source, tmp_path / "idx", model, processor, batch_size=2)
    assert (first.added, first.changed, first.total) == (3, 0, 3)
    assert EmbeddingIndex.open(tmp_path / "idx").item_keys() == {
        str(row): ItemKey(pngs[row].stat().st_size, -1, file_digest(pngs[row])) for row in range(3)}
    before, version = _stored(tmp_path / "idx"), EmbeddingIndex.open(tmp_path / "idx")._table.version

    with monkeypatch.context() as patch:
        _nothing_decoded_or_embedded(patch)
        again = build_index(source, tmp_path / "idx", model, processor, batch_size=2)
    assert (again.added, again.changed, again.already_indexed, again.total, again.failures) == (0, 0, 3, 3, [])
    assert EmbeddingIndex.open(tmp_path / "idx")._table.version == version  # nothing written

    _row_dataset(source, [pngs[0], pngs[3], pngs[2]])  # the dataset saved again: row 1 holds another image
    report = build_index(source, tmp_path / "idx", model, processor, batch_size=2)
    assert (report.added, report.changed, report.already_indexed, report.total) == (0, 1, 2, 3)
    after = _stored(tmp_path / "idx")
    build_index(_row_dataset(tmp_path / "fresh", [pngs[3]]), tmp_path / "fresh.idx", model, processor)
    assert torch.equal(after["1"], _stored(tmp_path / "fresh.idx")["0"])
    assert not torch.equal(after["1"], before["1"])
    assert torch.equal(after["0"], before["0"]) and torch.equal(after["2"], before["2"])
    index = EmbeddingIndex.open(tmp_path / "idx")
    assert index.item_keys()["1"] == ItemKey(pngs[3].stat().st_size, -1, file_digest(pngs[3]))
    assert index.verify() == []

    _row_dataset(source, [pngs[0], pngs[3]])  # row 2 is gone: reported, removed with prune
    kept = build_index(source, tmp_path / "idx", model, processor)
    assert (kept.added, kept.changed, kept.already_indexed, kept.missing, kept.total) == (0, 0, 2, 1, 3)
    pruned = build_index(source, tmp_path / "idx", model, processor, prune=True)
    assert (pruned.pruned, pruned.missing, pruned.total) == (1, 0, 2)
    assert sorted(EmbeddingIndex.open(tmp_path / "idx").ids()) == ["0", "1"]


def test_rows_of_older_indexes_without_a_digest_are_kept_and_keyed(tmp_path: Path, tiny_model,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor = tiny_model
    pngs = [tmp_path / "png" / name for name in _images(tmp_path / "png", 4)]
    source = _row_dataset(tmp_path / "rows", pngs[:3])
    build_index(source, tmp_path / "idx", model, processor)
    older = EmbeddingIndex.open(tmp_path / "idx")
    older.commit(rekey=dict.fromkeys(older.ids(), ItemKey()))  # rows keyed by id alone, as older builds stored
    assert set(EmbeddingIndex.open(tmp_path / "idx").item_keys().values()) == {ItemKey()}
    before = _stored(tmp_path / "idx")

    _row_dataset(source, [pngs[0], pngs[3], pngs[2]])  # changed, but the older index cannot tell
    with monkeypatch.context() as patch:
        _nothing_decoded_or_embedded(patch)
        kept = build_index(source, tmp_path / "idx", model, processor)
    assert (kept.added, kept.changed, kept.already_indexed, kept.total) == (0, 0, 3, 3)
    index = EmbeddingIndex.open(tmp_path / "idx")
    assert index.verify() == [] and all(torch.equal(_stored(tmp_path / "idx")[row], before[row]) for row in before)
    assert index.item_keys() == {str(row): ItemKey(png.stat().st_size, -1, file_digest(png))  # now recorded
                                 for row, png in enumerate([pngs[0], pngs[3], pngs[2]])}

    _row_dataset(source, pngs[:3])  # so that the next change is seen
    report = build_index(source, tmp_path / "idx", model, processor)
    assert (report.added, report.changed, report.already_indexed, report.total) == (0, 1, 2, 3)


def test_verify_finds_repeated_ids_and_bad_embeddings(tmp_path: Path, tiny_model, capsys) -> None:
    model, processor = tiny_model
    _images(tmp_path / "src", 3)
    build_index(tmp_path / "src", tmp_path / "idx", model, processor)
    assert cli.main(["index", "--verify", "--output", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    index = EmbeddingIndex.open(tmp_path / "idx")
    rows = index._table.search().limit(None).to_arrow()
    index._table.add(rows.slice(0, 1))  # a writer that appended instead of upserting
    index._table.update(where="id = 'img-001.png'", values_sql={"embedding": "[" + ", ".join(["0.5"] * index.dim) + "]"})
    index.refresh()
    assert index.verify() == ["item ids stored twice, e.g. ['img-000.png']",
                              "item 'img-001.png': its embedding is not finite and L2-normalised"]
    assert cli.main(["index", "--verify", "--output", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"error: {tmp_path / 'idx'}: the index is damaged (2 problem(s) above) (build it again into a " \
                      "new folder)"


# Imports torch and warms up once (an embedding of one image; not a build: LanceDB's runtime threads would not survive
# the fork), then forks one build per "go" line (OMP_NUM_THREADS=1: no thread pool to break the fork); the test
# SIGKILLs each build at a random moment, then the server reaps it.
SERVER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from PIL import Image
    from rclip_hf.embeddings import encode_images
    from rclip_hf.inference import build_index, load_model
    model, processor = load_model(sys.argv[1])
    encode_images(model, processor, [Image.open(next(Path(sys.argv[4]).glob("*.png")))], show_progress=False)
    print("ready", flush=True)
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                build_index(sys.argv[2], sys.argv[3], model, processor, batch_size=1, commit_every=1, num_workers=1)
            finally:
                os._exit(0)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)
""")


@pytest.mark.parametrize("left", ["scenes.lance", "items.lance/_versions"])
def test_a_build_killed_while_creating_the_tables_is_resumed(tmp_path: Path, tiny_model, left: str) -> None:
    model, processor = tiny_model
    ids = _images(tmp_path / "src", 2)
    (tmp_path / "idx" / left).mkdir(parents=True)  # scenes.lance is created first; items.lance before its version
    report = build_index(tmp_path / "src", tmp_path / "idx", model, processor)
    assert report.added == 2 and sorted(EmbeddingIndex.open(tmp_path / "idx").ids()) == ids


def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(tmp_path: Path, tiny_model_dir: Path,
                                                                       tiny_model) -> None:
    model, processor = tiny_model
    ids = _images(tmp_path / "src", 32)
    _images(tmp_path / "warm", 1, start=99)
    rng = random.Random(16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tiny_model_dir), str(tmp_path / "src"),
                               str(tmp_path / "idx"), str(tmp_path / "warm")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=env)
    stored_at_kill = []
    try:
        assert server.stdout.readline().strip() == "ready"
        server.stdin.write("go\n")  # one build left to finish: how long a build takes on this machine now
        server.stdin.flush()
        int(server.stdout.readline())
        start = time.monotonic()
        assert server.stdout.readline().strip() == "reaped"
        duration = time.monotonic() - start
        assert sorted(EmbeddingIndex.open(tmp_path / "idx").ids()) == ids
        for _ in range(10):
            shutil.rmtree(tmp_path / "idx", ignore_errors=True)
            server.stdin.write("go\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            time.sleep(rng.uniform(0.4 * duration, duration))  # kills over the embedding part of the build (its start is
            # importing LanceDB and opening the table), however fast the machine is
            with contextlib.suppress(ProcessLookupError):  # the build finished before the kill
                os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline().strip() == "reaped"
            stored = []
            with contextlib.suppress(FileNotFoundError):  # killed before the table's first version
                stored = EmbeddingIndex.open(tmp_path / "idx").ids()
            assert len(stored) == len(set(stored)) and set(stored) <= set(ids)  # consistent after the kill
            stored_at_kill.append(len(stored))
            report = build_index(tmp_path / "src", tmp_path / "idx", model, processor)  # the re-run
            index = EmbeddingIndex.open(tmp_path / "idx")
            assert sorted(index.ids()) == ids and report.total == len(ids) and report.failures == []
            assert index.verify() == [] and report.added == len(ids) - len(stored)
    finally:
        server.kill()
        server.wait()
    assert any(0 < count < len(ids) for count in stored_at_kill), stored_at_kill  # some kills landed mid-build


def test_scene_builds_commit_as_they_go_and_finish_what_a_killed_process_left(
        tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor = tiny_model
    scene = tmp_path / "scenes" / "scene.png"
    scene.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(scene)
    options, output = WindowOptions(window=64), tmp_path / "idx"  # 16 windows
    real_encode, calls = scenes_module.encode_images, []

    def crash_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(scenes_module, "encode_images", crash_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        build_scene_index([scene], output, model, processor, options=options, batch_size=2, commit_every=4)
    assert len(EmbeddingIndex.open(output).ids()) == 4  # 2 batches committed
    monkeypatch.setattr(scenes_module, "encode_images", real_encode)
    # A killed 2-process run: process 1 of 2 committed its windows straight into the table.
    index_part(scene_files([scene]), str(output), model, processor, options, 4, 1, 2)
    before = set(EmbeddingIndex.open(output).ids())
    report = build_scene_index([scene], output, model, processor, options=options, batch_size=4)
    assert report.already_indexed == len(before) and report.total == 16
    index = EmbeddingIndex.open(output)
    assert index.verify() == [] and len(set(index.ids())) == len(index) == 16 and before <= set(index.ids())
