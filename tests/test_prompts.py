"""The one counting language and the benchmark registry: pluraliser, counting captions, display names, paper order."""

from __future__ import annotations

import random

import pytest

from dataset_builders import b2c, remotecount
from rclip_hf.benchmark_registry import BENCHMARKS, display_name, names_for, paper_order, sort_paper_first
from rclip_hf.prompts import COUNTING_TEMPLATES, counting_caption, counting_prompt, pluralize


@pytest.mark.parametrize(("noun", "plural"), [
    # spelling rules
    ("ship", "ships"), ("harbor", "harbors"), ("bus", "buses"), ("storage tank", "storage tanks"),
    ("water body", "water bodies"), ("chimney", "chimneys"), ("overpass", "overpasses"), ("bridge", "bridges"),
    ("swimming pool", "swimming pools"), ("patch of low vegetation", "patches of low vegetation"),
    ("ferry terminal", "ferry terminals"), ("factory", "factories"), ("box", "boxes"), ("bench", "benches"),
    # irregular plurals of the paper's classes (VisDrone people / AU-AIR humans -> person, RSOD aircraft)
    ("person", "people"), ("aircraft", "aircraft"),
    # the RemoteCount categories
    ("plane", "planes"), ("helicopter", "helicopters"), ("roundabout", "roundabouts"),
    ("baseball diamond", "baseball diamonds"), ("ground track field", "ground track fields"),
    ("basketball court", "basketball courts"), ("tennis court", "tennis courts"), ("soccer field", "soccer fields"),
])
def test_pluralize(noun: str, plural: str) -> None:
    assert pluralize(noun) == plural


def test_b2c_remotecount_and_counting_prompt_speak_one_language() -> None:
    """The training captions (B2C), RemoteCount's captions and the zero-shot counting prompt agree."""
    rng = random.Random(0)
    assert b2c.count_phrase("person", 3, rng, words=True) == "three people"
    assert counting_prompt("person", 3) == "There are three people in the image."
    assert remotecount.count_caption("person", 3, random.Random(0)) in {
        plural.format(n="three", N="Three", noun="people") for _, plural in COUNTING_TEMPLATES}
    assert counting_caption("water body", 1, template=3) == "One water body can be seen in the image."
    assert counting_caption("water body", 2, template=3, style="digits") == "2 water bodies can be seen in the image."


def test_remotecount_captions_keep_their_seeded_phrasing() -> None:
    """rng.randrange over the template pairs draws as rng.choice over either list did before the merge."""
    for seed in range(20):
        index = random.Random(seed).choice(range(len(COUNTING_TEMPLATES)))
        assert remotecount.count_caption("ship", 4, random.Random(seed)) == counting_caption("ship", 4, index)


def test_registry_orders_and_names() -> None:
    assert paper_order("retrieval") == ("rsitmd", "rsicd", "ucm")
    assert paper_order("zero_shot_classification") == (
        "rsi_cb128", "rsi_cb256", "whu_earth", "eurosat", "mlrsnet", "patternnet", "resisc45", "aid", "rs2800",
        "optimal31", "rsc11", "whu_rs19")
    assert names_for("zero_shot_classification")[12:] == ("ucmerced", "rsscn7", "aid150")
    assert names_for("counting") == ("remotecount",)
    assert display_name("ucm") == "UCM-captions" and display_name("unknown_set") == "unknown_set"
    assert sort_paper_first(["new", "aid", "rsitmd"]) == ["rsitmd", "aid", "new"]
    for benchmark in BENCHMARKS.values():
        assert benchmark.citation, benchmark.name
        assert list(benchmark.class_folders) == sorted(benchmark.class_folders), benchmark.name
        assert bool(benchmark.class_folders) == (benchmark.task == "zero_shot_classification"), benchmark.name
