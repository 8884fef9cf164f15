"""Tests of re-running a window build: unchanged scenes add nothing, a changed scene file is re-embedded (its old
windows dropped), `--prune` removes the windows of scenes gone from the sources, and other window options are
refused naming the flag."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from rclip_hf import cli
from rclip_hf.errors import UserError
from rclip_hf.inference.index import EmbeddingIndex, ItemKey, file_digest
from rclip_hf.inference.scenes import WindowOptions, build_scene_index

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model

OPTIONS = WindowOptions(window=256)


@pytest.fixture
def scenes(shared_data: Path, tmp_path: Path) -> Path:
    """DOTA P1888 (712 x 557: 3 x 3 windows of 256 px) and iSAID P0005 (884 x 977: 4 x 4)."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    shutil.copy(shared_data / "dota" / "images" / "P1888.png", folder / "a.png")
    shutil.copy(shared_data / "isaid" / "train" / "images" / "P0005.png", folder / "b.png")
    return folder


def _build(scenes: Path, index: Path, model, processor, **kwargs):
    return build_scene_index([scenes], index, model, processor, options=kwargs.pop("options", OPTIONS), **kwargs)


def _rows(index: Path) -> list[dict]:
    EmbeddingIndex.open(index).export(index.parent / "items.parquet")
    return pq.read_table(index.parent / "items.parquet").to_pylist()


def test_unchanged_and_touched_scenes_add_nothing(scenes: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    first = _build(scenes, tmp_path / "index", model, processor)
    assert (first.added, first.total) == (25, 25)
    keys = EmbeddingIndex.open(tmp_path / "index").scene_keys()
    stat = (scenes / "a.png").stat()
    assert keys[str(scenes / "a.png")] == ItemKey(stat.st_size, stat.st_mtime_ns, file_digest(scenes / "a.png"))
    digests = {row["path"]: row["digest"] for row in _rows(tmp_path / "index")}  # each window keeps its scene's key
    assert digests == {str(scenes / name): file_digest(scenes / name) for name in ("a.png", "b.png")}
    version = EmbeddingIndex.open(tmp_path / "index")._table.version

    again = _build(scenes, tmp_path / "index", model, processor)
    assert (again.added, again.already_indexed, again.changed, again.total) == (0, 25, 0, 25)
    os.utime(scenes / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    touched = _build(scenes, tmp_path / "index", model, processor)
    assert (touched.added, touched.changed, touched.changed_scenes, touched.total) == (0, 0, 0, 25)
    assert EmbeddingIndex.open(tmp_path / "index")._table.version == version  # nothing rewritten


def test_a_changed_scene_is_embedded_again(scenes: Path, shared_data: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    _build(scenes, tmp_path / "index", model, processor)
    before = EmbeddingIndex.open(tmp_path / "index")
    kept = [item_id for item_id in before.ids() if item_id.startswith(str(scenes / "b.png"))]
    kept_embeddings = before.embeddings_of(kept)
    # a.png becomes another picture of another size: 1111 x 1182 -> 5 x 5 windows
    Image.open(shared_data / "dota" / "images" / "P0706.png").save(scenes / "a.png")
    report = _build(scenes, tmp_path / "index", model, processor)
    assert (report.changed_scenes, report.changed, report.added, report.already_indexed) == (1, 9, 25, 16)
    assert report.total == 25 + 16
    after = EmbeddingIndex.open(tmp_path / "index")
    ids = after.ids()
    assert len(ids) == len(set(ids)) == 41 and after.verify() == []
    assert f"{scenes / 'a.png'}#855,926,256,256" in ids and f"{scenes / 'a.png'}#456,301,256,256" not in ids
    torch.testing.assert_close(after.embeddings_of(kept), kept_embeddings)
    fresh = _build(scenes, tmp_path / "fresh", model, processor)
    assert fresh.total == 41
    new = [item_id for item_id in ids if item_id.startswith(str(scenes / "a.png"))]
    torch.testing.assert_close(after.embeddings_of(new), EmbeddingIndex.open(tmp_path / "fresh").embeddings_of(new),
                               atol=1e-5, rtol=0)
    assert {row["digest"] for row in _rows(tmp_path / "index") if row["path"] == str(scenes / "a.png")} == {
        file_digest(scenes / "a.png")}
    assert _build(scenes, tmp_path / "index", model, processor).added == 0


def test_prune_removes_the_windows_of_scenes_gone_from_the_sources(scenes: Path, tmp_path: Path, tiny_model,
                                                                   tiny_model_dir: Path, capsys) -> None:
    model, processor = tiny_model
    _build(scenes, tmp_path / "index", model, processor)
    (scenes / "b.png").unlink()
    kept = _build(scenes, tmp_path / "index", model, processor)
    assert (kept.missing_scenes, kept.missing, kept.pruned, kept.total) == (1, 16, 0, 25)
    argv = ["index", "--model", str(tiny_model_dir), "--source", str(scenes), "--output", str(tmp_path / "index"),
            "--window", "256", "--prune", "--format", "json"]
    capsys.readouterr()
    assert cli.main(argv) == 2  # 16 of 25 windows: more than half
    assert "would remove 16 of the 25 items" in capsys.readouterr().err
    assert len(EmbeddingIndex.open(tmp_path / "index")) == 25
    code = cli.main([*argv, "--force"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and (report["pruned"], report["pruned_scenes"], report["total"]) == (16, 1, 9)
    index = EmbeddingIndex.open(tmp_path / "index")
    assert {item_id.split("#")[0] for item_id in index.ids()} == {str(scenes / "a.png")}
    assert list(index.scene_keys()) == [str(scenes / "a.png")] and index.verify() == []
    again = _build(scenes, tmp_path / "index", model, processor, prune=True)
    assert (again.added, again.pruned, again.missing, again.total) == (0, 0, 0, 9)


def test_other_window_options_are_refused_naming_the_flag(scenes: Path, tmp_path: Path, tiny_model,
                                                          tiny_model_dir: Path, capsys) -> None:
    model, processor = tiny_model
    _build(scenes, tmp_path / "index", model, processor)
    refused = "--window 128: the index at .* holds windows made with --window 256.*give --window 256, or build into"
    for options, message in ((WindowOptions(window=128), refused + " a new --output folder"),
                             (WindowOptions(window=256, stride=128), "--stride 128: .* made with --stride 256"),
                             (WindowOptions(window=256, bands=(3, 2, 1)),
                              r"--bands 3,2,1: .* made with --bands \(not given\)"),
                             (WindowOptions(window_metres=100.0), r"--window-metres 100: .* --window-metres \(not given\)")):
        with pytest.raises(UserError, match=message):
            _build(scenes, tmp_path / "index", model, processor, options=options)
    same = _build(scenes, tmp_path / "index", model, processor, options=WindowOptions(window=256, stride=256,
                                                                                       max_nodata=0.9))
    assert (same.added, same.total) == (0, 25)  # the stride defaults to the window; --max-nodata may change
    capsys.readouterr()
    code = cli.main(["index", "--model", str(tiny_model_dir), "--source", str(scenes), "--output",
                     str(tmp_path / "index"), "--window", "128"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "Loading weights" not in line and line.strip()]
    assert code == 2 and len(lines) == 1 and "--window 128: the index at" in lines[0] and "--output" in lines[0]
