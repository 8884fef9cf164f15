"""`build_corpus --max-side PX`: a corpus at training resolution with the same samples, captions and de-duplication
as the corpus at full size, boxes scaled with the images."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import pytest
from PIL import Image

from dataset_builders.build_corpus import parse_config
from dataset_builders.corpus import CorpusConfig, build_corpus

DATA = Path(__file__).parent / "data"
MAX_SIDE = 256


def _sources(shared_data: Path) -> list[str]:
    return [f"dota={shared_data / 'dota'}", f"isaid={shared_data / 'isaid'}", f"dior={shared_data / 'dior'}",
            f"csv={shared_data / 'neon_trees'}", f"captions={DATA / 'captions'}"]


@pytest.fixture(scope="module")
def both(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[Path, dict], tuple[Path, dict]]:
    """(folder, report) of the corpus as released and of the same build with --max-side 256."""
    root = tmp_path_factory.mktemp("max_side")
    full = build_corpus(CorpusConfig(source=_sources(shared_data), output=str(root / "full"), seed=3))
    small = build_corpus(CorpusConfig(source=_sources(shared_data), output=str(root / "small"), seed=3,
                                      max_side=MAX_SIDE))
    return (root / "full", full), (root / "small", small)


def _undecoded(folder: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), split="train").cast_column("image", datasets.Image(decode=False))


def test_same_samples_captions_and_dedup_decisions(both):
    (full_dir, full), (small_dir, small) = both
    assert small["totals"] == full["totals"] and small["totals"]["duplicates"] >= 1
    for name, stats in full["sources"].items():
        for key in ("kept", "skipped", "duplicates", "excluded", "converted"):
            assert small["sources"][name][key] == stats[key], (name, key)  # p-Hash on the full image: same pairs
    full_rows, small_rows = _undecoded(full_dir), _undecoded(small_dir)
    assert small_rows["captions"] == full_rows["captions"] and small_rows["source"] == full_rows["source"]
    assert small["config"]["max_side"] == MAX_SIDE and full["config"]["max_side"] is None
    assert f"longer side at most {MAX_SIDE} px" in (small_dir / "README.md").read_text()


def test_images_fit_and_boxes_scale_with_them(both):
    (full_dir, _), (small_dir, _) = both
    resized = 0
    for before, after in zip(_undecoded(full_dir), _undecoded(small_dir)):
        original = Image.open(io.BytesIO(before["image"]["bytes"]))
        stored = Image.open(io.BytesIO(after["image"]["bytes"]))
        if max(original.size) <= MAX_SIDE:
            assert after["image"]["bytes"] == before["image"]["bytes"]
            assert after["boxes"] == before["boxes"]
            continue
        resized += 1
        assert max(stored.size) == MAX_SIDE and stored.format == "JPEG" and stored.mode == "RGB"
        assert abs(stored.width / stored.height - original.width / original.height) < 0.01
        x_scale, y_scale = stored.width / original.width, stored.height / original.height
        assert len(after["boxes"]) == len(before["boxes"])
        for box, full_box in zip(after["boxes"], before["boxes"]):
            assert box["label"] == full_box["label"]
            for key, scale in (("x_min", x_scale), ("x_max", x_scale), ("y_min", y_scale), ("y_max", y_scale)):
                assert box[key] == pytest.approx(full_box[key] * scale, rel=1e-5, abs=1e-4), key
    assert resized >= 6  # DOTA, iSAID, DIOR and NEON scenes are larger than 256 px


def test_max_side_flag_spellings_and_bad_value(tmp_path, shared_data):
    for flag in ("--max-side", "--max_side"):
        assert parse_config(["--source", "dota=x", "--output", "o", flag, "224"]).max_side == 224
    with pytest.raises(ValueError, match="--max-side must be >= 1 pixel, got 0"):
        build_corpus(CorpusConfig(source=[f"dota={shared_data / 'dota'}"], output=str(tmp_path / "o"), max_side=0))
