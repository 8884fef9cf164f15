"""Corpus builder: end-to-end build from the real samples, report accounting, bad inputs, dedup, exclusion,
idempotence, atomicity and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest

from dataset_builders import corpus
from dataset_builders.build_corpus import main, parse_config
from dataset_builders.corpus import REPORT_NAME, CorpusConfig, build_corpus, five_captions

DATA = Path(__file__).parent / "data"


def check_accounting(report: dict) -> None:
    """read = kept + skipped + duplicates + excluded, per source and in total."""
    for name, stats in report["sources"].items():
        counts = stats["counts"]
        assert stats["read"] == stats["kept"] + counts["skipped"] + counts["duplicates"] + counts["excluded"], name
        assert counts["skipped"] == len(stats["skipped"])
    totals = report["totals"]
    assert totals["read"] == totals["kept"] + totals["skipped"] + totals["duplicates"] + totals["excluded"]
    assert totals["read"] == sum(stats["read"] for stats in report["sources"].values())


@pytest.fixture(scope="module")
def e2e(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One build of DOTA + iSAID + DIOR + NEON csv + a caption JSON from the real samples (2 processes)."""
    output = tmp_path_factory.mktemp("e2e") / "corpus"
    config = CorpusConfig(source=[f"dota={shared_data / 'dota'}", f"isaid={shared_data / 'isaid'}",
                                  f"dior={shared_data / 'dior'}", f"csv={shared_data / 'neon_trees'}",
                                  f"captions={DATA / 'captions'}"], output=str(output), num_proc=2, seed=3)
    return output, build_corpus(config)


def test_e2e_reloads_with_load_dataset(e2e: tuple[Path, dict]) -> None:
    output, report = e2e
    loaded = datasets.load_dataset(str(output))
    train = loaded["train"]
    assert list(loaded) == ["train"]
    assert train.column_names == ["image", "captions", "source", "boxes"]
    assert isinstance(train.features["image"], datasets.Image)
    assert train.num_rows == report["totals"]["kept"] == 10
    assert [row for row in train["source"]] == ["dota"] * 2 + ["isaid"] * 2 + ["dior"] + ["csv"] * 3 + ["captions"] * 2
    for row in train:
        assert len(row["captions"]) == 5 and all(isinstance(c, str) and c.strip() for c in row["captions"])
    dior = train[4]
    assert dior["image"].size == (800, 800)
    assert dior["boxes"] == [{"label": "golffield", "x_min": 133.0, "y_min": 237.0, "x_max": 684.0, "y_max": 672.0}]
    assert train[8]["captions"] == ["Many planes are parked at the airport.", "An airport with several planes.",
                                    "Planes parked next to a terminal.", "A large airport with runways.",
                                    "Some planes near a building."]


def test_e2e_report_names_every_skip_and_duplicate(e2e: tuple[Path, dict]) -> None:
    output, report = e2e
    assert json.loads((output / REPORT_NAME).read_text()) == report
    check_accounting(report)
    sources = report["sources"]
    assert {name: (s["read"], s["kept"]) for name, s in sources.items()} == {
        "dota": (7, 2), "isaid": (4, 2), "dior": (1, 1), "csv": (5, 3), "captions": (5, 2)}
    orphans = sorted(Path(entry["path"]).stem for entry in sources["dota"]["skipped"])
    assert orphans == ["P0770", "P1088", "P1234", "P2598", "P2709"]
    assert sources["csv"]["duplicates"] == [{"image": "csv/OSBS_029.png", "kept": "csv/OSBS_029.tif", "distance": 0}]
    assert sources["csv"]["converted"] == [{"image": "csv/OSBS_029.tif", "from": "TIFF"}]
    assert sources["dota"]["annotation_notes"][0]["line"] == 3
    card = (output / "README.md").read_text()
    assert "| dota | 7 | 2 | 5 | 0 | 0 | DOTA: academic research use only" in card


def test_e2e_stores_original_bytes_of_rgb_png(e2e: tuple[Path, dict], shared_data: Path) -> None:
    output, _ = e2e
    train = datasets.load_dataset(str(output))["train"].cast_column("image", datasets.Image(decode=False))
    assert train[4]["image"]["bytes"] == (shared_data / "dior/JPEGImages/00001.jpg").read_bytes()
    assert train[4]["image"]["path"] == "dior/JPEGImages/00001.jpg"


def test_rerun_is_a_no_op_and_force_rebuilds_identically(e2e: tuple[Path, dict], shared_data: Path) -> None:
    output, report = e2e
    shard = next((output / "data").glob("*.parquet"))
    before = shard.stat().st_mtime_ns
    config = CorpusConfig(**{**report["config"], "num_proc": 1})
    assert build_corpus(config)["fingerprint"] == report["fingerprint"]
    assert shard.stat().st_mtime_ns == before
    config.force = True
    assert build_corpus(config)["totals"] == report["totals"]
    assert [path.name for path in (output / "data").glob("*.parquet")] == [shard.name]  # same content digest
    assert shard.stat().st_mtime_ns != before


def test_settling_one_image_at_a_time_gives_the_same_corpus(e2e: tuple[Path, dict], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    output, report = e2e
    monkeypatch.setattr(corpus, "_SETTLE_BATCH", 1)  # de-duplication across batches, not within one
    rebuilt = build_corpus(CorpusConfig(**{**report["config"], "output": str(tmp_path / "one-by-one")}))
    assert rebuilt["sources"] == report["sources"] and rebuilt["totals"] == report["totals"]
    assert report["totals"]["duplicates"] >= 1
    names = [path.name for path in (tmp_path / "one-by-one" / "data").glob("*.parquet")]
    assert names == [path.name for path in (output / "data").glob("*.parquet")]  # same content digest


def test_converted_copies_are_deleted_once_written(e2e: tuple[Path, dict], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, report = e2e
    left: list[list[str]] = []  # the converted copies still on disk when the shards are closed, at the end

    class OneRowGroups(corpus.ShardWriter):  # every row is written as soon as it is added
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, rows_per_batch=1, **kwargs)

        def close(self) -> list[Path]:
            left.append(sorted(item.name for item in (self.folder / "_converted").iterdir()))
            return super().close()

    real_rmtree = corpus.shutil.rmtree

    def recording_rmtree(path, *args, **kwargs):
        if Path(path).name == "_converted":
            left.append(sorted(item.name for item in Path(path).iterdir()))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(corpus.shutil, "rmtree", recording_rmtree)
    monkeypatch.setattr(corpus, "_SETTLE_BATCH", 2)
    rebuilt = build_corpus(CorpusConfig(**{**report["config"], "output": str(tmp_path / "out")}))
    assert rebuilt["totals"]["kept"] == report["totals"]["kept"] and report["sources"]["csv"]["converted"]
    assert left == [[]]  # row groups of 256 rows: the TIFF's PNG copy is written by close, removed before rmtree
    monkeypatch.setattr(corpus, "ShardWriter", OneRowGroups)
    left.clear()
    rebuilt = build_corpus(CorpusConfig(**{**report["config"], "output": str(tmp_path / "one-row-groups")}))
    assert rebuilt["totals"]["kept"] == report["totals"]["kept"]
    assert left == [[], []]  # removed as soon as its row group was written, before the shards were closed


def test_rebuild_with_other_captions_is_not_served_from_the_datasets_cache(tmp_path: Path) -> None:
    root = write_dota(tmp_path / "dota", {"a.png": DATA / "bad_images" / "good.png"}, {"a": BOX * 3})
    output = tmp_path / "out"
    build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(output), seed=0))
    first = datasets.load_dataset(str(output))["train"][0]["captions"]
    build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(output), seed=1))
    second = datasets.load_dataset(str(output))["train"][0]["captions"]
    assert first != second


def write_dota(root: Path, images: dict[str, Path | None], labels: dict[str, str]) -> Path:
    """A small DOTA-layout folder: image files copied in, label files written."""
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    for name, path in images.items():
        if path is not None:
            shutil.copy(path, root / "images" / name)
    for stem, text in labels.items():
        (root / "labelTxt" / f"{stem}.txt").write_text(text)
    return root


BOX = "4 4 40 4 40 40 4 40 plane 0\n"


@pytest.fixture
def bad_corpus(tmp_path: Path) -> tuple[Path, dict]:
    bad = DATA / "bad_images"
    names = {"good.png": bad / "good.png", "copy.png": bad / "good.png", "rgba.png": bad / "rgba.png",
             "gray16.png": bad / "gray16.png", "multiband.tif": bad / "multiband.tif", "corrupt.png": bad / "corrupt.jpg",
             "truncated.png": bad / "truncated.png", "gray.png": bad / "gray.png"}
    labels = {Path(name).stem: BOX for name in names}
    labels["gray"] = "70 70 80 70 80 80 70 80 plane 0\n"  # wholly outside: no box left -> no captions
    labels["orphan"] = BOX
    root = write_dota(tmp_path / "dota", names, labels)
    output = tmp_path / "out"
    return output, build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(output)))


def test_bad_inputs_are_skipped_or_converted_and_recorded(bad_corpus: tuple[Path, dict]) -> None:
    output, report = bad_corpus
    check_accounting(report)
    stats = report["sources"]["dota"]
    skipped = {Path(entry["path"]).name: entry["reason"] for entry in stats["skipped"]}
    assert sorted(skipped) == ["corrupt.png", "gray.png", "orphan.txt", "truncated.png"]
    assert "cannot read image" in skipped["corrupt.png"]
    assert "image file is truncated" in skipped["truncated.png"]
    assert skipped["gray.png"].startswith("no captions:")
    assert skipped["orphan.txt"].startswith("annotation file without an image")
    assert stats["duplicates"] == [{"image": "dota/images/good.png", "kept": "dota/images/copy.png", "distance": 0}]
    assert sorted((entry["image"], entry["from"]) for entry in stats["converted"]) == [
        ("dota/images/gray16.png", "I;16"), ("dota/images/multiband.tif", "5-band uint16"), ("dota/images/rgba.png", "RGBA")]
    assert any(note["line"] == 1 and "wholly outside" in note["reason"] for note in stats["annotation_notes"])
    train = datasets.load_dataset(str(output))["train"]
    assert train.num_rows == stats["kept"] == 4
    assert {row["image"].mode for row in train} == {"RGB"}


def test_exclude_near_removes_training_images_close_to_test_images(tmp_path: Path) -> None:
    bad = DATA / "bad_images"
    root = write_dota(tmp_path / "dota", {"a.png": bad / "good.png", "b.png": bad / "rgba.png"}, {"a": BOX, "b": BOX})
    test_images = tmp_path / "benchmark"
    test_images.mkdir()
    shutil.copy(bad / "good.png", test_images / "test_0.png")
    report = build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(tmp_path / "out"),
                                       exclude_near=str(test_images)))
    check_accounting(report)
    assert report["sources"]["dota"]["excluded"] == [
        {"image": "dota/images/a.png", "test_image": str(test_images / "test_0.png"), "distance": 0}]
    hf_dir = tmp_path / "hf_benchmark"
    datasets.Dataset.from_dict({"image": [str(bad / "rgba.png")]}, features=datasets.Features(
        {"image": datasets.Image()})).to_parquet(str(hf_dir / "data" / "test-00000-of-00001.parquet"))
    report = build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(tmp_path / "out2"), exclude_near=str(hf_dir)))
    assert [entry["image"] for entry in report["sources"]["dota"]["excluded"]] == ["dota/images/b.png"]


def test_crash_leaves_no_partial_corpus_and_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_dota(tmp_path / "dota", {"a.png": DATA / "bad_images" / "good.png"}, {"a": BOX})
    output = tmp_path / "out"
    build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(output)))
    previous = (output / REPORT_NAME).read_text()

    def crash(self, row):
        raise RuntimeError("disk full")

    monkeypatch.setattr(corpus.ShardWriter, "write", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(output), seed=9))
    assert (output / REPORT_NAME).read_text() == previous
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dota", "out"]


def test_cli_flags_yaml_config_and_errors(tmp_path: Path) -> None:
    yaml_path = tmp_path / "corpus.yaml"
    yaml_path.write_text("source:\n  - dota=/a\nseed: 4\nmax_distance: 2\nreader_options:\n  dota:\n    include_difficult: false\n")
    config = parse_config(["--config", str(yaml_path), "--source", "csv=/b", "--source", "dior=/c", "--output", "o",
                           "--num-proc", "3", "--seed", "5", "--exclude-near", "/t", "--max-distance", "1"])
    assert config.source == ["dota=/a", "csv=/b", "dior=/c"]
    assert (config.seed, config.num_proc, config.max_distance, config.exclude_near) == (5, 3, 1, "/t")
    assert config.options_for() == {"dota": {"include_difficult": False}}
    with pytest.raises(ValueError, match="expected FORMAT=PATH"):
        CorpusConfig(source=["dota"], output="o").sources()
    with pytest.raises(ValueError, match="unknown format 'dotta'"):
        CorpusConfig(source=["dotta=/x"], output="o").sources()
    with pytest.raises(ValueError, match="no --source given"):
        build_corpus(CorpusConfig(output=str(tmp_path / "o")))
    yaml_path.write_text("sauce: []\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sauce'\]"):
        parse_config(["--config", str(yaml_path)])


def test_five_captions_cycles_and_truncates() -> None:
    assert five_captions(["a", " ", "b"]) == ["a", "b", "a", "b", "a"]
    assert five_captions([str(i) for i in range(7)]) == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match="no non-empty caption"):
        five_captions(["", "  "])


def test_same_format_twice_is_rejected(tmp_path: Path) -> None:
    root = write_dota(tmp_path / "dota", {"a.png": DATA / "bad_images" / "good.png"}, {"a": BOX})
    with pytest.raises(ValueError, match="each format may be given once"):
        build_corpus(CorpusConfig(source=[f"dota={root}", f"dota={root}"], output=str(tmp_path / "o")))


def test_video_frames_and_yaml_reader_options_through_the_cli(tmp_path: Path) -> None:
    """Stanford Drone frames are extracted during load (decoded after it); options come from --config YAML."""
    yaml_path = tmp_path / "corpus.yaml"
    yaml_path.write_text(f"source:\n  - stanford_drone={DATA / 'stanford_drone'}\nreader_options:\n  stanford_drone:\n"
                         f"    frame_stride: 2\n    frames_dir: {tmp_path / 'frames'}\n")
    output = tmp_path / "out"
    assert main(["--config", str(yaml_path), "--output", str(output)]) == 0
    report = json.loads((output / REPORT_NAME).read_text())
    check_accounting(report)
    stats = report["sources"]["stanford_drone"]
    assert (stats["read"], stats["kept"]) == (4, 3)  # frames 0, 2, 4 + 1 malformed line
    assert [entry["line"] for entry in stats["skipped"]] == [7]
    assert sorted(path.name for path in (tmp_path / "frames" / "little" / "video0").iterdir()) == [
        "000000.jpg", "000002.jpg", "000004.jpg"]
    train = datasets.load_dataset(str(output), split="train")
    assert train[0]["image"].size == (64, 48)


def test_refuses_to_replace_a_folder_it_did_not_build(tmp_path: Path) -> None:
    root = write_dota(tmp_path / "dota", {"a.png": DATA / "bad_images" / "good.png"}, {"a": BOX})
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a dataset folder built here"):
        build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(precious)))
    assert (precious / "thesis.tex").read_text() == "keep me"


def test_unforeseen_reader_error_skips_the_image(tmp_path: Path) -> None:
    good = DATA / "bad_images" / "good.png"
    root = write_dota(tmp_path / "dota", {"a.png": good, "b.png": good}, {"a": BOX, "b": BOX})
    (root / "labelTxt" / "a.txt").unlink()
    (root / "labelTxt" / "a.txt").mkdir()  # a folder where the label file should be: read_text raises OSError
    report = build_corpus(CorpusConfig(source=[f"dota={root}"], output=str(tmp_path / "out")))
    check_accounting(report)
    [entry] = report["sources"]["dota"]["skipped"]
    assert entry["path"].endswith("a.txt") and entry["reason"].startswith("unreadable annotation: IsADirectoryError")


def test_task_chunks_bound_items_and_bytes_and_cover_every_task_once() -> None:
    small, big = 40_000, 3_000_000
    sizes = [small] * 100 + [big] * 5 + [small] * 3 + [0] * 40
    chunks = corpus.task_chunks(sizes, num_proc=2, max_items=16, max_bytes=2_000_000)
    assert [position for chunk in chunks for position in chunk] == list(range(len(sizes)))
    assert all(len(chunk) <= 16 for chunk in chunks)
    assert all(len(chunk) == 1 or sum(sizes[p] for p in chunk) <= 2_000_000 for chunk in chunks)
    assert [len(chunk) for chunk in chunks if sizes[chunk[0]] == big] == [1, 1, 1, 1, 1]  # one big image per task
    assert len(corpus.task_chunks([small] * 12, num_proc=2)) == 12  # few tasks per process: one per chunk
    assert corpus.task_chunks([], num_proc=2) == []


def test_task_chunks_keep_the_windows_of_one_tile_together() -> None:
    groups = [None] * 3 + ["tile_a"] * 40 + ["tile_b"] * 5 + [None] * 2
    sizes = [10] * 3 + [100_000_000] * 45 + [10] * 2
    chunks = corpus.task_chunks(sizes, num_proc=2, max_items=16, max_bytes=2_000_000, groups=groups)
    assert [(chunk.start, chunk.stop) for chunk in chunks] == [(0, 3), (3, 43), (43, 48), (48, 50)]
