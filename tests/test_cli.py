"""Tests of the `rclip-hf` command line: each subcommand's output formats, exit codes and error messages."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from inference_models import copy_images

from rclip_hf import cli
from rclip_hf.inference import classify

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, other_model_dir

LABELS = ["airport", "grass land", "parking lot"]


@pytest.fixture()
def airport(tmp_path: Path, shared_data: Path) -> Path:
    return Path(shutil.copy(shared_data / "remoteclip" / "airport.jpg", tmp_path / "airport.jpg"))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_classify_table_json_and_csv(tiny_model_dir: Path, airport: Path, capsys) -> None:
    base = ["classify", "--model", str(tiny_model_dir), "--images", str(airport), "--labels", *LABELS]
    code, table, _ = _run(base + ["--top_k", "2"], capsys)
    expected = classify(airport, LABELS, model=tiny_model_dir)
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split() == ["image", "rank", "label", "score"] and len(lines) == 4
    assert expected[0]["label"] in lines[2] and f"{expected[0]['score']:.4f}" in lines[2]
    code, out, _ = _run(base + ["--format", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and [row["label"] for row in rows] == [hit["label"] for hit in expected]
    assert [row["score"] for row in rows] == pytest.approx([hit["score"] for hit in expected], abs=1e-6)
    code, out, _ = _run(base + ["--format", "csv"], capsys)
    assert code == 0 and [row["rank"] for row in csv.DictReader(io.StringIO(out))] == ["1", "2", "3"]


def test_classify_folder_with_preset(tiny_model_dir: Path, tmp_path: Path, shared_data: Path, capsys) -> None:
    copy_images(shared_data, tmp_path / "tiles", per_class=1)
    code, out, _ = _run(["classify", "--model", str(tiny_model_dir), "--images", str(tmp_path / "tiles"),
                         "--preset", "rsscn7", "--top_k", "1", "--format", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and [Path(row["image"]).parent.name for row in rows] == ["aGrass", "gParking"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--images", "{airport}", "--preset", "nope"], "unknown preset 'nope'"),
        (["--images", "{tmp}/missing.jpg", "--labels", "a", "b"], "image file not found: .*missing.jpg"),
        (["--images", "{airport}", "--labels", "a", "--preset", "aid"], "exactly one of --labels .* or --preset"),
    ],
)
def test_classify_bad_input_exits_2(tiny_model_dir: Path, airport: Path, tmp_path: Path, capsys, argv, message):
    argv = [part.format(airport=airport, tmp=tmp_path) for part in argv]
    code, _, err = _run(["classify", "--model", str(tiny_model_dir), *argv], capsys)
    assert code == 2
    assert err.startswith("error: ")
    assert re.search(message, err), err


def test_model_folder_that_is_not_a_clip_model(tmp_path: Path, airport: Path, capsys) -> None:
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    code, _, err = _run(["classify", "--model", str(tmp_path / "bert"), "--images", str(airport), "--labels", "a"],
                        capsys)
    assert code == 2 and "model of type 'bert', not a RemoteCLIP/CLIP model" in err
    code, _, err = _run(["count", "--model", str(tmp_path / "none"), "--image", str(airport), "--object", "plane"],
                        capsys)
    assert code == 2 and "model folder not found" in err


def test_index_then_search(tiny_model_dir: Path, other_model_dir: Path, tmp_path: Path, shared_data: Path,
                           capsys) -> None:
    copy_images(shared_data, tmp_path / "tiles", per_class=2)
    (tmp_path / "tiles" / "bad.png").write_bytes(b"\x89PNG broken")
    index = tmp_path / "tiles.index"
    code, out, _ = _run(["index", "--model", str(tiny_model_dir), "--source", str(tmp_path / "tiles"), "--output",
                         str(index), "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["added"] == 4 and [f["id"] for f in report["failures"]] == ["bad.png"]
    query = tmp_path / "tiles" / "aGrass" / "a002.jpg"
    code, out, _ = _run(["search", "--model", str(tiny_model_dir), "--index", str(index), "--text", "grass",
                         "--image", str(query), "--top_k", "2", "--format", "json"], capsys)
    hits = json.loads(out)
    assert code == 0 and len(hits) == 4 and hits[2]["id"] == "aGrass/a002.jpg" and hits[2]["rank"] == 1
    code, _, err = _run(["search", "--model", str(other_model_dir), "--index", str(index), "--text", "grass"], capsys)
    assert code == 2 and "cannot be mixed or compared" in err
    code, _, err = _run(["search", "--model", str(tiny_model_dir), "--index", str(tmp_path / "none"), "--text", "x"],
                        capsys)
    assert code == 2 and "no embedding index at" in err
    code, _, err = _run(["index", "--model", str(tiny_model_dir), "--source", str(tmp_path / "none"), "--output",
                         str(index)], capsys)
    assert code == 2 and "index source not found" in err


def test_count_and_heatmap(tiny_model_dir: Path, airport: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = _run(["count", "--model", str(tiny_model_dir), "--image", str(airport), "--object", "plane",
                         "--format", "json"], capsys)
    (result,) = json.loads(out)
    assert code == 0 and 1 <= result["count"] <= 10 and len(result["distribution"]) == 10
    assert result["distribution"][str(result["count"])] == max(result["distribution"].values())
    code, out, _ = _run(["heatmap", "--model", str(tiny_model_dir), "--image", str(airport), "--queries", "plane",
                         "runway", "--window", "112", "--output_dir", str(tmp_path / "maps"), "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [row["query"] for row in rows] == ["plane", "runway"]
    assert all(Path(row["overlay"]).is_file() for row in rows) and (tmp_path / "maps" / "scores.npy").is_file()


def test_usage_unknown_command_and_help(capsys) -> None:
    code, out, _ = _run([], capsys)
    assert code == 2 and "commands:" in out and "heatmap" in out and "convert" in out
    code, _, err = _run(["frobnicate"], capsys)
    assert code == 2 and "unknown command 'frobnicate'" in err
    code, out, _ = _run(["search", "--help"], capsys)
    assert code == 0 and "--backend" in out
    code, _, err = _run(["count", "--object", "ship"], capsys)
    assert code == 2 and "required" in err


def test_convert_and_eval_are_delegated(tmp_path: Path, capsys) -> None:
    code, _, err = _run(["convert", "--checkpoint", str(tmp_path / "missing.pt"), "--arch", "ViT-B-32", "--output",
                         str(tmp_path / "out")], capsys)
    assert code == 2 and "missing.pt" in err and "is neither a local file" in err
    code, out, _ = _run(["eval", "--help"], capsys)
    assert code == 0 and "--benchmarks" in out


def test_delegated_commands_appear_when_their_module_exists(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "fake_push_module.py").write_text("def main(argv):\n    print('pushed', argv)\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.DELEGATED_COMMANDS, "push", ("fake_push_module", "upload"))
    monkeypatch.setitem(cli.DELEGATED_COMMANDS, "demo", ("no_such_module_here", "demo"))
    assert "push" in cli.available_commands() and "demo" not in cli.available_commands()
    code, out, _ = _run(["push", "--repo", "x"], capsys)
    assert code == 3 and "pushed ['--repo', 'x']" in out
