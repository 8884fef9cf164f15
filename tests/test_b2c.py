"""Tests of dataset_builders.b2c: five captions per image by the paper's rules, wording, determinism."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataset_builders.b2c import (
    CENTRE_EMPTY_TEMPLATES,
    CENTRE_TEMPLATES,
    COUNT_TEMPLATES,
    MANY_TERMS,
    OUTSIDE_EMPTY_TEMPLATES,
    OUTSIDE_TEMPLATES,
    NoUsableObjectsError,
    box_to_captions,
    count_phrase,
    in_centre,
    indefinite_article,
    normalize_class_name,
)
from dataset_builders.records import Box
from rclip_hf.prompts import COUNT_WORDS, pluralize

REPO_ROOT = Path(__file__).resolve().parents[1]
MANY = "many"  # the parsed quantity of a general term
QUANTITY = r"\d+|" + "|".join(COUNT_WORDS) + r"|a lot of|lots of|many|an|a"


def filled(templates: tuple[str, ...], **fields: str) -> set[str]:
    """Every caption a template set can give for these fields, first letter capitalised."""
    texts = (template.format(**fields) for template in templates)
    return {text[0].upper() + text[1:] for text in texts}


def box_at(label: str, x: float, y: float, size: float = 2.0) -> Box:
    """A box of side ``size`` centred at (x, y)."""
    return Box(label, x - size / 2, y - size / 2, x + size / 2, y + size / 2)


def quantities(caption: str, nouns: list[str]) -> dict[str, int | str]:
    """The quantity written before each noun in a caption: an int for 1..10, "many" for a general term.

    Also checks number agreement: singular after one, plural otherwise.
    """
    found: dict[str, int | str] = {}
    for noun in nouns:
        plural = pluralize(noun)
        pattern = rf"(?<![\w-])({QUANTITY}) ({re.escape(plural)}|{re.escape(noun)})(?![\w-])"
        matches = re.findall(pattern, caption, flags=re.IGNORECASE)
        assert len(matches) <= 1, f"{noun!r} quantified twice in {caption!r}"
        if not matches:
            continue
        word, form = matches[0][0].lower(), matches[0][1].lower()
        if word in ("a", "an", "one"):
            value: int | str = 1
        elif word in MANY_TERMS:
            value = MANY
        else:
            value = int(word) if word.isdigit() else COUNT_WORDS.index(word) + 1
        assert (form == noun) == (value == 1), f"number agreement broken in {caption!r}"
        found[noun] = value
    return found


def expected_quantities(counts: Counter[str]) -> dict[str, int | str]:
    return {noun: count if count <= 10 else MANY for noun, count in counts.items()}


@pytest.mark.parametrize(("raw", "normalised"), [
    ("small-vehicle", "small vehicle"), ("Small_Vehicle", "small vehicle"), ("SmallVehicle", "small vehicle"),
    ("storage-tank", "storage tank"), ("baseball-diamond", "baseball diamond"),
    ("Ground_Track_Field", "ground track field"), ("groundTrackField", "ground track field"),
    ("Expressway-Service-area", "expressway service area"), ("golffield", "golf field"),
    ("  plane ", "plane"), ("T_junction", "t-junction"), ("oiltank", "oil tank"),
    ("pedestrian", "pedestrian"), ("people", "person"), ("awning-tricycle", "awning tricycle"),
    ("ignored regions", "ignored regions"), ("water", "water body"), ("low vegetation", "patch of low vegetation"),
    ("Dead", "dead tree"), ("Alive", "living tree"), ("Tree", "tree"),
])
def test_normalize_class_name(raw: str, normalised: str) -> None:
    assert normalize_class_name(raw) == normalised


def test_normalize_class_name_rejects_empty_names() -> None:
    with pytest.raises(ValueError, match="empty class name '_-'"):
        normalize_class_name("_-")
    with pytest.raises(TypeError, match="class name must be a str, got int 3"):
        normalize_class_name(3)


@pytest.mark.parametrize(("noun", "article"), [
    ("airplane", "an"), ("ship", "a"), ("oil tank", "an"), ("impervious surface", "an"), ("university", "a"),
    ("harbor", "a"), ("expressway service area", "an"),
])
def test_indefinite_article(noun: str, article: str) -> None:
    assert indefinite_article(noun) == article


def test_count_phrase() -> None:
    rng = random.Random(0)
    assert count_phrase("ship", 3, rng, words=True) == "three ships"
    assert count_phrase("ship", 3, rng, words=False) == "3 ships"
    assert count_phrase("ship", 10, rng, words=True) == "ten ships"
    assert count_phrase("airplane", 1, rng, words=False) == "an airplane"
    assert count_phrase("person", 2, rng, words=False) == "2 people"
    assert {count_phrase("ship", 1, rng, words=True) for _ in range(50)} == {"a ship", "one ship"}
    assert {count_phrase("bus", 11, rng, words=False) for _ in range(50)} == {f"{term} buses" for term in MANY_TERMS}
    with pytest.raises(ValueError, match="count of 'ship' must be >= 1, got 0"):
        count_phrase("ship", 0, rng, words=True)


def test_centre_region_is_the_middle_half_bounds_included() -> None:
    assert in_centre(box_at("ship", 25, 25), 100, 100)
    assert in_centre(box_at("ship", 75, 75), 100, 100)
    assert in_centre(box_at("ship", 50, 30), 100, 40)  # y in [10, 30]
    assert not in_centre(box_at("ship", 24.5, 50), 100, 100)
    assert not in_centre(box_at("ship", 50, 75.5), 100, 100)
    assert not in_centre(box_at("ship", 50, 31), 100, 40)


def test_captions_hand_checked_centre_outside_counting() -> None:
    boxes = [box_at("ship", 50, 50), box_at("plane", 5, 5), box_at("ship", 40, 60)]
    captions = box_to_captions(boxes, 100, 100, image_id="hand", number_style="digits")
    assert len(captions) == 5
    assert captions[0] in filled(CENTRE_TEMPLATES, objects="2 ships", be="are")
    assert captions[1] in filled(OUTSIDE_TEMPLATES, objects="a plane", be="is")
    counting = filled(COUNT_TEMPLATES, count="2 ships", be="are") | filled(COUNT_TEMPLATES, count="a plane", be="is")
    assert set(captions[2:]) <= counting and len(set(captions[2:])) == 3


def test_object_list_most_numerous_first_with_and() -> None:
    boxes = [box_at("small-vehicle", 50, 50)] + [box_at("large-vehicle", 40, 40)] * 4 + [box_at("plane", 60, 60)] * 5
    captions = box_to_captions(boxes, 100, 100, image_id="list", number_style="digits")
    objects = "5 planes, 4 large vehicles and a small vehicle"
    assert captions[0] in filled(CENTRE_TEMPLATES, objects=objects, be="are")
    assert captions[1] in filled(OUTSIDE_EMPTY_TEMPLATES, objects=objects, be="are")


def test_empty_centre_describes_the_outside_objects() -> None:
    boxes = [box_at("storage-tank", 5, 5), box_at("storage-tank", 95, 95), box_at("harbor", 5, 95)]
    captions = box_to_captions(boxes, 100, 100, image_id="empty-centre", number_style="words")
    objects = "two storage tanks and a harbor"
    one_harbor = filled(CENTRE_EMPTY_TEMPLATES, objects="two storage tanks and one harbor", be="are")
    assert captions[0] in filled(CENTRE_EMPTY_TEMPLATES, objects=objects, be="are") | one_harbor
    assert all(caption.strip() for caption in captions)


def test_more_than_ten_uses_a_general_term() -> None:
    boxes = [box_at("ship", 10 + index, 50) for index in range(12)] + [box_at("harbor", 50, 50)] * 10
    for seed in range(10):
        captions = box_to_captions(boxes, 100, 100, image_id="many", seed=seed, number_style="digits")
        assert not any("12" in caption or "11" in caption for caption in captions)
        assert quantities(captions[0], ["ship", "harbor"]) == {"harbor": 10}
        assert quantities(captions[1], ["ship", "harbor"]) == {"ship": MANY}
        for caption in captions[2:]:
            assert quantities(caption, ["ship", "harbor"]) in ({"ship": MANY}, {"harbor": 10})


def test_ignored_classes_are_never_described() -> None:
    boxes = [box_at("ship", 50, 50), box_at("others", 50, 50), box_at("ignored regions", 5, 5),
             box_at("Background", 90, 90), box_at("clutter", 60, 60)]
    captions = box_to_captions(boxes, 100, 100, image_id="ignored")
    text = " ".join(captions).lower()
    assert "ship" in text
    assert not any(word in text for word in ("other", "ignored", "background", "clutter"))


def test_no_usable_object_raises() -> None:
    with pytest.raises(NoUsableObjectsError, match=r"image 'x\.png': no describable object among 2 boxes"):
        box_to_captions([box_at("others", 5, 5), box_at("ignored regions", 50, 50)], 100, 100, image_id="x.png")
    with pytest.raises(NoUsableObjectsError, match="among 0 boxes"):
        box_to_captions([], 100, 100, image_id="empty")
    with pytest.raises(ValueError, match="width and height must be positive, got 0x100"):
        box_to_captions([box_at("ship", 5, 5)], 0, 100, image_id="bad")
    with pytest.raises(ValueError, match="number_style must be"):
        box_to_captions([box_at("ship", 5, 5)], 100, 100, image_id="bad", number_style="roman")


def test_deterministic_per_image_and_seed() -> None:
    boxes = [box_at(name, x, y) for name, x, y in [("ship", 50, 50), ("plane", 10, 10), ("bus", 80, 20),
                                                   ("ship", 20, 80), ("harbor", 45, 55)]]
    first = box_to_captions(boxes, 100, 100, image_id="P0001", seed=3)
    assert box_to_captions(boxes, 100, 100, image_id="P0001", seed=3) == first
    variants = {tuple(box_to_captions(boxes, 100, 100, image_id="P0001", seed=seed)) for seed in range(20)}
    assert len(variants) > 5  # the seed changes phrasings
    others = {tuple(box_to_captions(boxes, 100, 100, image_id=f"P{index}", seed=3)) for index in range(20)}
    assert len(others) > 5  # and so does the image id


def test_deterministic_across_interpreters() -> None:
    code = ("from dataset_builders.b2c import box_to_captions; from dataset_builders.records import Box; "
            "print(box_to_captions([Box('ship', 1, 1, 9, 9), Box('bus', 40, 40, 60, 60)], 100, 100, image_id='a'))")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                              env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outputs) == 1
    assert outputs.pop().strip() == str(box_to_captions([Box("ship", 1, 1, 9, 9), Box("bus", 40, 40, 60, 60)], 100, 100,
                                                        image_id="a"))


NOUNS = ["ship", "plane", "storage tank", "harbor", "bus", "person"]


@settings(max_examples=150, deadline=None)
@given(objects=st.lists(st.tuples(st.sampled_from(NOUNS), st.floats(0, 199), st.floats(0, 99)), min_size=1,
                        max_size=40),
       many=st.lists(st.sampled_from(NOUNS), max_size=2), seed=st.integers(0, 2**32),
       style=st.sampled_from(["mixed", "words", "digits"]))
def test_property_five_captions_whose_numbers_match(objects: list[tuple[str, float, float]], many: list[str],
                                                    seed: int, style: str) -> None:
    boxes = [box_at(noun, x, y, size=1.0) for noun, x, y in objects]
    boxes += [box_at(noun, 1.0, 1.0, size=1.0) for noun in many for _ in range(11)]  # > 10 instances
    captions = box_to_captions(boxes, 200, 100, image_id=f"img{seed}", seed=seed, number_style=style)
    assert len(captions) == 5 and all(caption.strip() for caption in captions)
    centre = Counter(box.label for box in boxes if in_centre(box, 200, 100))
    outside = Counter(box.label for box in boxes if not in_centre(box, 200, 100))
    assert quantities(captions[0], NOUNS) == expected_quantities(centre or outside)
    assert quantities(captions[1], NOUNS) == expected_quantities(outside or centre)
    totals = expected_quantities(centre + outside)
    for caption in captions[2:]:
        counted = quantities(caption, NOUNS)
        assert len(counted) == 1 and counted.items() <= totals.items()


def read_dota_boxes(path: Path) -> list[Box]:
    """Minimal DOTA labelTxt parsing for the test (the library reader is data-io's): polygon -> enclosing box."""
    boxes = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 9 or ":" in line:
            continue
        xs, ys = [float(value) for value in fields[0:8:2]], [float(value) for value in fields[1:8:2]]
        boxes.append(Box(fields[8], min(xs), min(ys), max(xs), max(ys)))
    return boxes


@pytest.mark.parametrize("stem", ["P0706", "P1888", "P2709", "P0770"])
def test_real_dota_annotations(shared_data: Path, stem: str) -> None:
    boxes = read_dota_boxes(shared_data / "dota" / "labelTxt" / f"{stem}.txt")
    width, height = (1111, 1182) if stem == "P0706" else (712, 557) if stem == "P1888" else (4000, 4000)
    nouns = sorted({normalize_class_name(box.label) for box in boxes})
    centre = Counter(normalize_class_name(box.label) for box in boxes if in_centre(box, width, height))
    outside = Counter(normalize_class_name(box.label) for box in boxes if not in_centre(box, width, height))
    for seed in range(5):
        captions = box_to_captions(boxes, width, height, image_id=stem, seed=seed)
        assert len(captions) == 5 and all(captions)
        assert "-" not in " ".join(captions)  # "small-vehicle" is normalised
        assert quantities(captions[0], nouns) == expected_quantities(centre or outside)
        assert quantities(captions[1], nouns) == expected_quantities(outside or centre)
        for caption in captions[2:]:
            assert quantities(caption, nouns).items() <= expected_quantities(centre + outside).items()
    if stem == "P0706":  # 531 ships: always a general term; 5 harbors
        assert expected_quantities(centre + outside) == {"ship": MANY, "harbor": 5}


def test_real_neon_health_labels_become_tree_nouns(shared_data: Path) -> None:
    """NEON/DeepForest label trees "Tree", "Dead" and "Alive" (CSV and VOC XML): captions count trees, dead
    trees and living trees, never "deads" or "alives"."""
    neon = shared_data / "neon_trees"
    csv_labels = {line.rsplit(",", 1)[1] for path in neon.glob("*.csv") for line in path.read_text().splitlines()[1:]
                  if line.count(",") == 5}
    xml_labels = set(re.findall(r"<name>([^<]+)</name>", " ".join(path.read_text() for path in neon.glob("*.xml"))))
    assert csv_labels == xml_labels == {"Tree", "Dead", "Alive"}
    assert sorted(normalize_class_name(label) for label in csv_labels) == ["dead tree", "living tree", "tree"]

    rows = [line.split(",") for line in (neon / "testfile_multi.csv").read_text().splitlines()[1:]]
    boxes = [Box(label, float(x0), float(y0), float(x1), float(y1)) for _, x0, y0, x1, y1, label in rows]
    totals = Counter(normalize_class_name(box.label) for box in boxes)
    assert set(totals) == {"dead tree", "living tree"}
    for seed in range(5):
        captions = box_to_captions(boxes, 400, 400, image_id="SOAP_061", seed=seed)  # SOAP_061.png: 400x400
        text = " ".join(captions).lower()
        assert "deads" not in text and "alive" not in text and "tree" in text
        for caption in captions[2:]:
            assert quantities(caption, sorted(totals)).items() <= expected_quantities(totals).items()
