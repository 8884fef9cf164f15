"""The words the model is prompted with: zero-shot templates and class names, count words, the pluraliser, and
counting captions. Zero-shot evaluation and classification, the RemoteCount builder and benchmark, B2C's
training captions and counting inference all use these, so training and evaluation speak one language.

Class names: benchmark datasets label images with a `ClassLabel` of the source's folder names
(``"DenseResidential"``, ``"aGrass"``, ``"storagetanks"``); prompts need readable names. `class_names_for` maps
whatever names a dataset actually carries (the registry's `class_folders` are the expected ones), so a different
order or an extra folder still gets a sensible prompt (unknown folders are cleaned generically, with a warning).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Literal

from .benchmark_registry import BENCHMARKS

logger = logging.getLogger(__name__)

PAPER_TEMPLATE = "a satellite photo of {}."
"""The single template of the paper's zero-shot table (Table III)."""

REMOTE_SENSING_TEMPLATES: tuple[str, ...] = (
    "a satellite photo of {}.",
    "a satellite image of {}.",
    "an aerial photo of {}.",
    "an aerial image of {}.",
    "a remote sensing image of {}.",
    "an overhead view of {}.",
    "a top-down view of {}.",
    "a high-resolution satellite image of {}.",
    "a bird's eye view of {}.",
    "a low-resolution satellite photo of {}.",
)
"""A remote-sensing template set for prompt ensembling (``--templates ensemble``)."""

TemplateSet = Literal["paper", "ensemble"]


def templates_for(template_set: TemplateSet) -> tuple[str, ...]:
    """The paper's single template (``"paper"``) or the remote-sensing set (``"ensemble"``)."""
    if template_set == "paper":
        return (PAPER_TEMPLATE,)
    if template_set == "ensemble":
        return REMOTE_SENSING_TEMPLATES
    raise ValueError(f"templates: {template_set!r} is not a template set; expected 'paper' or 'ensemble'")


# ----- class names -----------------------------------------------------------------------------------------------
# Folder names whose generic cleaning (split camelCase / underscores, lower case) reads badly.
_OVERRIDES: dict[str, str] = {
    "AnnualCrop": "annual crop land",
    "HerbaceousVegetation": "herbaceous vegetation land",
    "PermanentCrop": "permanent crop land",
    "Industrial": "industrial buildings",
    "Pasture": "pasture land",
    "Residential": "residential buildings",
    "SeaLake": "sea or lake",
    "Highway": "highway or road",
    "baseballdiamond": "baseball diamond",
    "denseresidential": "dense residential area",
    "golfcourse": "golf course",
    "mediumresidential": "medium residential area",
    "mobilehomepark": "mobile home park",
    "parkinglot": "parking lot",
    "sparseresidential": "sparse residential area",
    "storagetanks": "storage tanks",
    "tenniscourt": "tennis court",
    "BareLand": "bare land",
    "Center": "city center",
    "Parking": "parking lot",
    "hirst": "hillside",
    "residents": "residential area",
    "sandbeach": "sand beach",
    "harbor&port": "harbor and port",
    "swimmimg_pool": "swimming pool",
    "idle_land": "idle land",
    "water": "water area",
    "footballField": "football field",
    "railwayStation": "railway station",
    "aGrass": "grass land",
    "bField": "farm field",
    "cIndustry": "industrial area",
    "dRiverLake": "river or lake",
    "eForest": "forest",
    "fResident": "residential area",
    "gParking": "parking lot",
}


def clean_class_name(folder_name: str) -> str:
    """A readable class name from a folder name: known overrides, else split camelCase/underscores, lower case."""
    if folder_name in _OVERRIDES:
        return _OVERRIDES[folder_name]
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", folder_name)
    return re.sub(r"[\s_\-]+", " ", spaced).strip().lower()


BENCHMARK_PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (tuple(clean_class_name(folder) for folder in benchmark.class_folders), (PAPER_TEMPLATE,))
    for name, benchmark in BENCHMARKS.items() if benchmark.class_folders
}
"""``BENCHMARK_PRESETS[name] -> (clean class names in ClassLabel order, templates)`` with the paper's template."""


def class_names_for(benchmark: str, label_names: Sequence[str]) -> list[str]:
    """Clean prompt names for a dataset's ClassLabel names, in the same order.

    Folders not in the registry's `class_folders` of `benchmark` (or any folder of an unknown benchmark) are
    cleaned generically and reported with a warning, never dropped.
    """
    known = set(BENCHMARKS[benchmark].class_folders) if benchmark in BENCHMARKS else set()
    unknown = [name for name in label_names if name not in known]
    if unknown:
        logger.warning(
            "presets: %d class folder(s) of %r have no preset, cleaned generically: %s",
            len(unknown),
            benchmark,
            ", ".join(f"{name!r}->{clean_class_name(name)!r}" for name in unknown),
        )
    return [clean_class_name(name) for name in label_names]


# ----- counting ------------------------------------------------------------------------------------------------------
COUNT_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
"""Count words of 1…10 (RemoteCount's range; B2C writes larger counts with a general term)."""
COUNT_DIGITS = tuple(str(number) for number in range(1, 11))
MAX_COUNT = len(COUNT_WORDS)

CountStyle = Literal["words", "digits"]

#: Plurals that do not follow the spelling rules, including those of the training sources' and benchmarks'
#: classes ("person" for VisDrone's people and AU-AIR's humans, RSOD's "aircraft").
IRREGULAR_PLURALS = {
    "person": "people", "man": "men", "woman": "women", "child": "children", "foot": "feet",
    "leaf": "leaves", "aircraft": "aircraft", "sheep": "sheep", "deer": "deer", "fish": "fish",
    "series": "series", "species": "species",
}
_CONSONANT_Y = re.compile(r"[^aeiou]y$")
_SIBILANT_END = re.compile(r"(s|x|z|ch|sh)$")

#: (singular, plural) phrasings of a counting caption: ``{n}`` the count, ``{N}`` it capitalised, ``{noun}`` the
#: object name (pluralised above one). The first is the counting prompt of zero-shot counting.
COUNTING_TEMPLATES = (
    ("There is {n} {noun} in the image.", "There are {n} {noun} in the image."),
    ("The image shows {n} {noun}.", "The image shows {n} {noun}."),
    ("In this image there is {n} {noun}.", "In this image there are {n} {noun}."),
    ("{N} {noun} can be seen in the image.", "{N} {noun} can be seen in the image."),
)


@functools.lru_cache(maxsize=4096)
def pluralize(noun: str) -> str:
    """Plural of a class name: the head noun changes ("bus" -> "buses", "water body" -> "water bodies",
    "person" -> "people", "patch of low vegetation" -> "patches of low vegetation")."""
    head, sep, tail = noun.partition(" of ")
    words = head.split(" ")
    last = words[-1]
    if last in IRREGULAR_PLURALS:
        plural = IRREGULAR_PLURALS[last]
    elif _CONSONANT_Y.search(last):
        plural = last[:-1] + "ies"
    elif _SIBILANT_END.search(last):
        plural = last + "es"
    else:
        plural = last + "s"
    return " ".join([*words[:-1], plural]) + sep + tail


def count_token(count: int, style: CountStyle = "words") -> str:
    """``"three"`` or ``"3"`` for ``count`` 3 (1…10)."""
    if style not in ("words", "digits"):
        raise ValueError(f"count style {style!r} is not one of 'words', 'digits'")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count={count} must be in [1, {MAX_COUNT}]")
    return COUNT_WORDS[count - 1] if style == "words" else COUNT_DIGITS[count - 1]


def counting_caption(object_name: str, count: int, template: int = 0, style: CountStyle = "words") -> str:
    """``COUNTING_TEMPLATES[template]`` for ``count`` objects: "There are three ships in the image." (singular
    for one: "There is one ship in the image.")."""
    token = count_token(count, style)
    singular, plural = COUNTING_TEMPLATES[template]
    return (singular if count == 1 else plural).format(
        n=token, N=token.capitalize(), noun=object_name if count == 1 else pluralize(object_name))


def counting_prompt(object_name: str, count: int, style: CountStyle = "words") -> str:
    """The zero-shot counting prompt: ``"There are three ships in the image."`` (``"There is one ship …"``)."""
    return counting_caption(object_name, count, 0, style)


def count_caption_variants(caption: str, count: int, style: CountStyle = "words") -> list[str]:
    """The 10 captions with the number ``count`` in ``caption`` (as a word or digits) replaced by 1…10.

    The first whole-word occurrence of ``count`` (``"three"``, ``"Three"`` or ``"3"``) is replaced by each
    of ``one``…``ten`` (``style="words"``, capitalised like the original) or ``1``…``10`` (``"digits"``);
    raises ValueError naming the caption when the number is not found.
    """
    pattern = rf"\b({count_token(count, 'words')}|{count_token(count, 'digits')})\b"
    match = re.search(pattern, caption, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"count caption {caption!r} does not contain its count {count} as a word or digits")
    variants = []
    for number in range(1, MAX_COUNT + 1):
        token = count_token(number, style)
        if match.group(0)[0].isupper():
            token = token.capitalize()
        variants.append(caption[: match.start()] + token + caption[match.end() :])
    return variants


__all__ = ["BENCHMARK_PRESETS", "COUNTING_TEMPLATES", "COUNT_DIGITS", "COUNT_WORDS", "IRREGULAR_PLURALS", "MAX_COUNT",
           "PAPER_TEMPLATE", "REMOTE_SENSING_TEMPLATES", "CountStyle", "TemplateSet", "class_names_for",
           "clean_class_name", "count_caption_variants", "count_token", "counting_caption", "counting_prompt",
           "pluralize", "templates_for"]
