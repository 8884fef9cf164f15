"""RemoteCount: count captions (number replaced by one…ten or 1…10) and the counting metrics."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .retrieval import as_tensor
from .topk import topk_lowest_index

COUNT_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COUNT_DIGITS = tuple(str(number) for number in range(1, 11))
MAX_COUNT = len(COUNT_WORDS)

CountStyle = Literal["words", "digits"]


def _count_token(count: int, style: CountStyle) -> str:
    """``"three"`` or ``"3"`` for ``count`` 3."""
    if style not in ("words", "digits"):
        raise ValueError(f"count style {style!r} is not one of 'words', 'digits'")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count={count} must be in [1, {MAX_COUNT}]")
    return COUNT_WORDS[count - 1] if style == "words" else COUNT_DIGITS[count - 1]


def count_caption_variants(caption: str, count: int, style: CountStyle = "words") -> list[str]:
    """The 10 captions with the number ``count`` in ``caption`` (as a word or digits) replaced by 1…10.

    The first whole-word occurrence of ``count`` (``"three"``, ``"Three"`` or ``"3"``) is replaced by each
    of ``one``…``ten`` (``style="words"``, capitalised like the original) or ``1``…``10`` (``"digits"``);
    raises ValueError naming the caption when the number is not found.
    """
    pattern = rf"\b({_count_token(count, 'words')}|{_count_token(count, 'digits')})\b"
    match = re.search(pattern, caption, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"count caption {caption!r} does not contain its count {count} as a word or digits")
    variants = []
    for number in range(1, MAX_COUNT + 1):
        token = _count_token(number, style)
        if match.group(0)[0].isupper():
            token = token.capitalize()
        variants.append(caption[: match.start()] + token + caption[match.end() :])
    return variants


def _plural(noun: str) -> str:
    """English plural of the last word of ``noun`` ("storage tank" -> "storage tanks", "bus" -> "buses")."""
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def counting_prompt(object_name: str, count: int, style: CountStyle = "words") -> str:
    """``"There are three ships in the image."`` (``"There is one ship in the image."`` for one)."""
    token = _count_token(count, style)
    if count == 1:
        return f"There is {token} {object_name} in the image."
    return f"There are {token} {_plural(object_name)} in the image."


def counting_metrics(scores: Tensor | np.ndarray, counts: Tensor | np.ndarray | Sequence[int]) -> dict:
    """``top1``…``top10`` accuracy (percent) and the row-normalised ``confusion_matrix`` (10 × 10 lists).

    ``scores`` (N, 10): similarity of each image to its captions with counts 1…10 (column c is count c + 1);
    ``counts`` (N,) the true counts in 1…10. The prediction is the argmax (equal scores: smaller count);
    top-k counts a hit when the true count is among the k best. Confusion rows are true counts, columns
    predicted counts, each row divided by its number of samples (a count with no samples gives a zero row).
    """
    scores = as_tensor(scores, "scores").float()
    counts = as_tensor(counts, "counts", scores.device).long()
    if (
        scores.ndim != 2
        or scores.shape[1] != MAX_COUNT
        or counts.shape != (scores.shape[0],)
        or not len(counts)
    ):
        raise ValueError(
            f"counting_metrics: expected scores (N, {MAX_COUNT}) with N >= 1 and counts (N,), got "
            f"{tuple(scores.shape)} and {tuple(counts.shape)}"
        )
    if counts.min() < 1 or counts.max() > MAX_COUNT:
        raise ValueError(
            f"counting_metrics: counts must be in [1, {MAX_COUNT}], found [{int(counts.min())}, {int(counts.max())}]"
        )
    _, ranked = topk_lowest_index(scores, MAX_COUNT)  # (N, 10) count indices, best first
    correct = ranked == (counts - 1)[:, None]
    metrics: dict = {
        f"top{k}": correct[:, :k].any(dim=1).double().mean().item() * 100 for k in range(1, MAX_COUNT + 1)
    }
    confusion = torch.zeros(MAX_COUNT, MAX_COUNT, dtype=torch.float64)
    confusion.index_put_(
        ((counts - 1).cpu(), ranked[:, 0].cpu()),
        torch.ones(len(counts), dtype=torch.float64),
        accumulate=True,
    )
    row_totals = confusion.sum(dim=1, keepdim=True)
    metrics["confusion_matrix"] = torch.where(
        row_totals > 0, confusion / row_totals.clamp(min=1), 0.0
    ).tolist()
    return metrics
