"""Box-to-Caption (B2C): the boxes of one image -> exactly five rule-based captions (RemoteCLIP §III-B).

Rules of the paper (Liu et al., "RemoteCLIP: A Vision Language Foundation Model for Remote Sensing", IEEE TGRS 62,
2024, doi:10.1109/TGRS.2024.3390838, §III-B and its Box-to-Caption figure). Where the paper leaves a detail open,
the rule below says what this module chooses, marked "(our choice)":

1. caption 1 describes the objects whose box centre lies in the centre region of the image; (our choice) the
   middle half on each axis, ``x in [W/4, 3W/4]`` and ``y in [H/4, 3H/4]`` (bounds included);
2. caption 2 describes the objects outside it;
3. captions 3-5 are counting captions: three objects are drawn at random ((our choice) with replacement) from
   the annotation list and each gets a caption counting ALL the instances of its category in the image;
4. a count above ten is written with a general term (``MANY_TERMS``: "many", "a lot of", "lots of");
   counts of one to ten are written as words (``rclip_hf.prompts.COUNT_WORDS``) or digits, one as "a"/"an"/"one";
   plurals come from ``rclip_hf.prompts.pluralize``, the one the counting prompts and RemoteCount use.

(Our choice) An empty side (nothing in the centre, or nothing outside it) gets a sentence about the objects of
the other side (``CENTRE_EMPTY_TEMPLATES``, ``OUTSIDE_EMPTY_TEMPLATES``), never an empty string. Object lists
name every category of that side, most numerous first (ties: first appearance), e.g. "4 large vehicles,
a small vehicle and 5 planes". Phrasings, number style and drawn objects come from a ``random.Random``
seeded with a SHA-256 of ``(seed, image_id)``: the same image and seed always give the same captions.

Phrase sets (``{objects}`` is an object list, ``{be}`` "is"/"are" agreeing with it):

- ``CENTRE_TEMPLATES`` / ``OUTSIDE_TEMPLATES``: captions 1 and 2 when their side has objects;
- ``CENTRE_EMPTY_TEMPLATES`` / ``OUTSIDE_EMPTY_TEMPLATES``: captions 1 and 2 when their side is empty
  (``{objects}`` then lists the other side);
- ``COUNT_TEMPLATES``: captions 3-5; the three use three different templates, so they never repeat.

Class names are normalised by ``normalize_class_name`` (separators and camelCase to spaces, lower case,
``CLASS_RENAMES`` for fused words and dataset-specific names); categories in ``IGNORED_CLASSES``
(background, clutter, "others", VisDrone's "ignored regions", ...) are never described.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from dataset_builders.records import Box
from rclip_hf.prompts import COUNT_WORDS, MAX_COUNT, pluralize

__all__ = [
    "CENTRE_EMPTY_TEMPLATES",
    "CENTRE_TEMPLATES",
    "CLASS_RENAMES",
    "COUNT_TEMPLATES",
    "IGNORED_CLASSES",
    "MANY_TERMS",
    "OUTSIDE_EMPTY_TEMPLATES",
    "OUTSIDE_TEMPLATES",
    "NoUsableObjectsError",
    "box_to_captions",
    "count_phrase",
    "in_centre",
    "indefinite_article",
    "normalize_class_name",
]

NumberStyle = Literal["mixed", "words", "digits"]

NUM_CAPTIONS = 5
MAX_EXACT_COUNT = MAX_COUNT  # counts above this are written with a general term (MANY_TERMS)
MANY_TERMS = ("many", "a lot of", "lots of")

CENTRE_TEMPLATES = (
    "{objects} in the middle of the picture.",
    "There {be} {objects} in the centre of the image.",
    "In the middle of this remote sensing image there {be} {objects}.",
    "{objects} {be} located in the center of the picture.",
    "{objects} can be seen in the middle of the scene.",
)
OUTSIDE_TEMPLATES = (
    "{objects} at the edge of the picture.",
    "There {be} {objects} in the outer part of the image.",
    "Near the borders of this remote sensing image there {be} {objects}.",
    "{objects} {be} located away from the center of the picture.",
    "{objects} can be seen at the sides of the scene.",
)
CENTRE_EMPTY_TEMPLATES = (
    "Nothing is in the middle of the picture, while {objects} {be} at its edges.",
    "The centre of the image is empty; {objects} {be} around it.",
    "No object lies in the center of this remote sensing image, only {objects} near its borders.",
)
OUTSIDE_EMPTY_TEMPLATES = (
    "Nothing is at the edge of the picture; {objects} {be} in its middle.",
    "The borders of the image are empty, with {objects} in the centre.",
    "All the objects of this remote sensing image are in its center: {objects}.",
)
COUNT_TEMPLATES = (
    "There {be} {count} in the picture.",
    "{count} {be} located in this remote sensing picture.",
    "This image contains {count}.",
    "{count} can be seen in this aerial image.",
    "In this remote sensing image there {be} {count}.",
    "The picture shows {count}.",
)

# Class names (after separator/camelCase splitting and lower-casing) that are never described.
IGNORED_CLASSES = frozenset({
    "background", "clutter", "clutter background", "clutter/background", "others", "other", "ignored regions",
    "ignored region", "ignore", "ignored", "no data", "nodata", "void", "unlabeled", "unlabelled", "unknown",
})

# Fused words and dataset-specific names -> meaningful countable English (applied after splitting).
CLASS_RENAMES = {
    # DIOR writes some classes as one word
    "baseballfield": "baseball field", "basketballcourt": "basketball court", "golffield": "golf field",
    "groundtrackfield": "ground track field", "storagetank": "storage tank", "tenniscourt": "tennis court",
    "trainstation": "train station",
    # RSOD / LEVIR
    "oiltank": "oil tank",
    # HRRSD
    "t junction": "t-junction",
    # VisDrone: "pedestrian" (walking/standing) and "people" (other poses) stay distinct categories
    "people": "person", "motor": "motorcycle",
    # AU-AIR / Stanford Drone
    "human": "person", "motorbike": "motorcycle",
    # NEON tree crowns (DeepForest): the health labels are adjectives; "tree" itself needs no rename
    "alive": "living tree", "dead": "dead tree",
    # LoveDA and ISPRS land-cover classes: mass nouns made countable (each box is one region)
    "water": "water body", "barren": "barren area", "agriculture": "agricultural area",
    "impervious surfaces": "impervious surface", "low vegetation": "patch of low vegetation",
}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s_\-]+")
# vowel letters pronounced with a consonant sound ("a university", "a one-way road", "a European city")
_CONSONANT_SOUND_PREFIXES = ("uni", "use", "usu", "ute", "eu", "one", "once")


class NoUsableObjectsError(ValueError):
    """An image has no box of a describable class (all ignored, or no boxes): it cannot get B2C captions."""


def normalize_class_name(name: str) -> str:
    """Source class name -> caption words: ``Small_Vehicle``/``small-vehicle``/``SmallVehicle`` -> "small vehicle"."""
    if not isinstance(name, str):
        raise TypeError(f"class name must be a str, got {type(name).__name__} {name!r}")
    return _normalized(name)


@functools.lru_cache(maxsize=4096)
def _normalized(name: str) -> str:
    """``normalize_class_name`` of a str, cached: a corpus repeats a few class names millions of times."""
    words = _SEPARATORS.sub(" ", _CAMEL_BOUNDARY.sub(" ", name.strip())).strip().lower()
    if not words:
        raise ValueError(f"empty class name {name!r}")
    return CLASS_RENAMES.get(words, words)


@functools.lru_cache(maxsize=4096)
def indefinite_article(noun: str) -> str:
    """ "a" or "an" for a noun phrase, by its first sound ("an airplane", "a ship", "a university")."""
    word = noun.lower()
    vowel_sound = word[:1] in "aeiou" and not word.startswith(_CONSONANT_SOUND_PREFIXES)
    return "an" if vowel_sound else "a"


def count_phrase(noun: str, count: int, rng: random.Random, words: bool) -> str:
    """ "a ship" / "one ship" / "3 ships" / "three ships" / "many ships" for ``count`` instances of ``noun``.

    ``words`` writes two to ten as words, else digits; one is "a"/"an" (or "one" with ``words``); above ten a
    term of ``MANY_TERMS`` drawn from ``rng``.
    """
    if count < 1:
        raise ValueError(f"count of {noun!r} must be >= 1, got {count}")
    if count > MAX_EXACT_COUNT:
        return f"{rng.choice(MANY_TERMS)} {pluralize(noun)}"
    if count == 1:
        return f"{'one' if words and rng.random() < 0.5 else indefinite_article(noun)} {noun}"
    return f"{COUNT_WORDS[count - 1] if words else count} {pluralize(noun)}"


def _use_words(rng: random.Random, style: NumberStyle) -> bool:
    """Number style of one caption: words or digits ("mixed": a fair coin)."""
    return style == "words" or (style == "mixed" and rng.random() < 0.5)


def in_centre(box: Box, width: int, height: int) -> bool:
    """Whether the box centre lies in the centre region ``[W/4, 3W/4] x [H/4, 3H/4]`` (bounds included)."""
    x, y = box.center
    return width / 4 <= x <= 3 * width / 4 and height / 4 <= y <= 3 * height / 4


def _rng_for(image_id: str, seed: int) -> random.Random:
    """A Random seeded from SHA-256 of (seed, image_id): stable across runs, processes and Python versions."""
    digest = hashlib.sha256(f"{seed}\x00{image_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _object_list(counts: Counter[str], rng: random.Random, style: NumberStyle) -> tuple[str, str]:
    """ ("4 large vehicles, a small vehicle and 5 planes", verb) for per-class counts, most numerous first."""
    words = _use_words(rng, style)
    phrases = [count_phrase(noun, count, rng, words) for noun, count in counts.most_common()]
    text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    single = len(phrases) == 1 and next(iter(counts.values())) == 1
    return text, "is" if single else "are"


def _sentence(template: str, **fields: str) -> str:
    """Fill a template and capitalise its first letter."""
    text = template.format(**fields)
    return text[0].upper() + text[1:]


def _side_caption(side: Counter[str], other: Counter[str], templates: Sequence[str],
                  empty_templates: Sequence[str], rng: random.Random, style: NumberStyle) -> str:
    """Caption of one side (centre or outside); an empty side describes the other side's objects."""
    objects, be = _object_list(side or other, rng, style)
    return _sentence(rng.choice(templates if side else empty_templates), objects=objects, be=be)


def box_to_captions(boxes: Sequence[Box], width: int, height: int, *, image_id: str, seed: int = 0,
                    number_style: NumberStyle = "mixed") -> list[str]:
    """Exactly five non-empty B2C captions for one image's boxes (centre, outside, three counting captions).

    Deterministic for a given ``(image_id, seed)``. ``number_style`` writes counts of one to ten as "words",
    "digits" or, by default, either at random ("mixed"). Raises ``NoUsableObjectsError`` when no box has a
    describable class (see ``IGNORED_CLASSES``).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image {image_id!r}: width and height must be positive, got {width}x{height}")
    if number_style not in ("mixed", "words", "digits"):
        raise ValueError(f"number_style must be 'mixed', 'words' or 'digits', got {number_style!r}")
    usable = [(name, box) for name, box in ((normalize_class_name(box.label), box) for box in boxes)
              if name not in IGNORED_CLASSES]
    if not usable:
        labels = sorted({box.label for box in boxes})
        raise NoUsableObjectsError(
            f"image {image_id!r}: no describable object among {len(boxes)} boxes (classes {labels}; "
            f"ignored: {sorted(IGNORED_CLASSES)})"
        )
    rng = _rng_for(image_id, seed)
    centre: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for name, box in usable:
        (centre if in_centre(box, width, height) else outside)[name] += 1
    totals = centre + outside
    captions = [
        _side_caption(centre, outside, CENTRE_TEMPLATES, CENTRE_EMPTY_TEMPLATES, rng, number_style),
        _side_caption(outside, centre, OUTSIDE_TEMPLATES, OUTSIDE_EMPTY_TEMPLATES, rng, number_style),
    ]
    drawn = [rng.choice(usable)[0] for _ in range(NUM_CAPTIONS - 2)]
    for name, template in zip(drawn, rng.sample(COUNT_TEMPLATES, len(drawn))):
        count = totals[name]
        captions.append(_sentence(template, count=count_phrase(name, count, rng, _use_words(rng, number_style)),
                                  be="is" if count == 1 else "are"))
    return captions
