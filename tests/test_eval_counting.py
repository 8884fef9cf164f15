"""RemoteCount: caption variants, prompts, top-k accuracy and the row-normalised confusion matrix."""

from __future__ import annotations

import pytest
import torch

from rclip_hf.evaluation import counting_metrics
from rclip_hf.prompts import COUNT_WORDS, count_caption_variants, counting_prompt


def test_caption_variants() -> None:
    variants = count_caption_variants("There are three ships near the harbor.", 3)
    assert len(variants) == 10 and variants[0] == "There are one ships near the harbor."
    assert (
        variants[2] == "There are three ships near the harbor."
        and variants[9] == "There are ten ships near the harbor."
    )
    assert (
        count_caption_variants("Three planes, three trucks.", 3)[4] == "Five planes, three trucks."
    )  # first, capitalised
    assert count_caption_variants("7 ships are docked.", 7, "digits")[9] == "10 ships are docked."
    assert count_caption_variants("seven ships", 7, "digits")[0] == "1 ships"
    assert count_caption_variants("There are 10 tanks", 10)[1] == "There are two tanks"
    with pytest.raises(ValueError, match="'Someone was here.' does not contain its count 1"):
        count_caption_variants("Someone was here.", 1)  # "one" inside "Someone" is not a whole word
    with pytest.raises(ValueError, match="count=11 must be in"):
        count_caption_variants("eleven ships", 11)


def test_counting_prompt() -> None:
    assert counting_prompt("ship", 3) == "There are three ships in the image."
    assert counting_prompt("ship", 1) == "There is one ship in the image."
    assert counting_prompt("storage tank", 10, "digits") == "There are 10 storage tanks in the image."
    assert counting_prompt("bus", 2) == "There are two buses in the image."
    assert counting_prompt("person", 3) == "There are three people in the image."  # as B2C's captions
    assert COUNT_WORDS[9] == "ten"
    with pytest.raises(ValueError, match="count style 'roman'"):
        counting_prompt("ship", 2, "roman")


def test_hand_computed_metrics() -> None:
    scores = torch.zeros(3, 10)
    scores[0, 2] = 1.0  # true 3, predicted 3
    scores[1, 4], scores[1, 1] = 1.0, 0.5  # true 2, predicted 5, second guess 2
    scores[2, 0] = (
        1.0  # true 3, predicted 1; the true count ties with the others at 0 -> rank 3 (lower count first)
    )
    metrics = counting_metrics(scores, [3, 2, 3])
    assert metrics["top1"] == pytest.approx(100 / 3) and metrics["top2"] == pytest.approx(200 / 3)
    assert metrics["top3"] == 100.0 and metrics["top10"] == 100.0
    confusion = metrics["confusion_matrix"]
    assert confusion[2][2] == 0.5 and confusion[2][0] == 0.5 and confusion[1][4] == 1.0
    assert confusion[0] == [0.0] * 10 and len(confusion) == 10


def test_oracle_and_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    counts = torch.randint(1, 11, (3000,), generator=generator)
    oracle = counting_metrics(torch.nn.functional.one_hot(counts - 1, 10).float(), counts)
    assert oracle["top1"] == 100.0 and oracle["confusion_matrix"][4][4] == 1.0
    chance = counting_metrics(torch.randn(3000, 10, generator=generator), counts)
    for k in (1, 5):
        assert abs(chance[f"top{k}"] - 10 * k) <= 5 * (k / 10 * (1 - k / 10) / 3000) ** 0.5 * 100


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"counts must be in \[1, 10\], found \[0, 0\]"):
        counting_metrics(torch.zeros(1, 10), [0])
    with pytest.raises(ValueError, match=r"expected scores \(N, 10\)"):
        counting_metrics(torch.zeros(1, 9), [1])
