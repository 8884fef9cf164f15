"""retrieval_metrics: identical to clip_benchmark's recall_at_k, hand-computed cases, oracle and chance level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rclip_hf.evaluation import retrieval_metrics

KEYS = ["i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall"]


def clip_benchmark_metrics(images: torch.Tensor, texts: torch.Tensor, text_to_image: torch.Tensor) -> dict:
    """The official RemoteCLIP retrieval.py computation (clip_benchmark's recall_at_k > 0), keys renamed."""
    zeroshot_retrieval = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
    scores = texts @ images.t()
    positive_pairs = torch.zeros_like(scores, dtype=bool)
    positive_pairs[torch.arange(len(scores)), text_to_image] = True
    metrics = {}
    for k in (1, 5, 10):
        hits = (
            zeroshot_retrieval.batchify(
                zeroshot_retrieval.recall_at_k, scores.T, positive_pairs.T, 64, "cpu", k=k
            )
            > 0
        )
        metrics[f"i2t_R@{k}"] = hits.float().mean().item() * 100
    for k in (1, 5, 10):
        hits = (
            zeroshot_retrieval.batchify(
                zeroshot_retrieval.recall_at_k, scores, positive_pairs, 64, "cpu", k=k
            )
            > 0
        )
        metrics[f"t2i_R@{k}"] = hits.float().mean().item() * 100
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    return metrics


@pytest.mark.parametrize("seed", range(6))
def test_identical_to_clip_benchmark_with_ties(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    num_images = int(torch.randint(12, 200, (1,), generator=generator))
    # Few quantised levels: many exactly equal scores, also at the k-th place.
    images = torch.randint(-2, 3, (num_images, 6), generator=generator).float() / 4
    text_to_image = torch.cat(
        [torch.arange(num_images), torch.randint(0, num_images, (3 * num_images,), generator=generator)]
    )
    texts = (
        images[text_to_image] + torch.randint(-1, 2, (len(text_to_image), 6), generator=generator).float() / 4
    )
    expected = clip_benchmark_metrics(images, texts, text_to_image)
    for chunk_size in (1, 7, 4096):
        assert (
            retrieval_metrics(images, texts, text_to_image, chunk_size=chunk_size) == expected
        )  # exact, not approx
    assert list(expected) == KEYS


def test_identical_to_clip_benchmark_normalised_numpy() -> None:
    generator = torch.Generator().manual_seed(7)
    images = torch.nn.functional.normalize(torch.randn(300, 64, generator=generator), dim=-1)
    text_to_image = torch.arange(300).repeat_interleave(5)  # five captions per image, as RSITMD/RSICD/UCM
    texts = torch.nn.functional.normalize(
        images[text_to_image] + 0.9 * torch.randn(1500, 64, generator=generator), dim=-1
    )
    texts[1] = texts[0]  # duplicated captions, as RSICD has
    expected = clip_benchmark_metrics(images, texts, text_to_image)
    actual = retrieval_metrics(images.numpy(), texts.numpy(), text_to_image.numpy(), chunk_size=50)
    assert actual == pytest.approx(expected, abs=1e-6, rel=0)
    assert {key: round(value, 2) for key, value in actual.items()} == {
        key: round(value, 2) for key, value in expected.items()
    }


def test_hand_computed() -> None:
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    # image 0 owns captions 0 and 2, image 1 owns caption 1. Scores: image 0 -> (1, .8, .6); image 1 -> (0, .6, .8).
    metrics = retrieval_metrics(images, texts, [0, 1, 0], ks=(1, 2))
    assert metrics["i2t_R@1"] == 50.0  # image 0: text 0 first (hit); image 1: text 2 first (miss)
    assert metrics["i2t_R@2"] == 100.0  # image 1: its caption 1 is second
    # caption 0 -> image 0 first (hit); caption 1 (.8, .6) -> image 0 first (miss); caption 2 (.6, .8) -> image 1 (miss)
    assert metrics["t2i_R@1"] == pytest.approx(100 / 3, abs=1e-5)
    assert metrics["t2i_R@2"] == 100.0
    assert metrics["mean_recall"] == pytest.approx((50 + 100 + 100 / 3 + 100) / 4, abs=1e-5)
    assert list(retrieval_metrics(images, texts, [0, 1, 0])) == KEYS  # k = 5, 10 clamped to the galleries


def test_tie_break_modes_differ_only_in_ties() -> None:
    images = torch.tensor([[1.0, 0.0]] * 3)  # three identical images
    texts = torch.tensor([[1.0, 0.0]] * 3)
    lowest = retrieval_metrics(images, texts, [0, 1, 2], ks=(1,), tie_break="lowest_index")
    assert lowest["t2i_R@1"] == pytest.approx(
        100 / 3
    )  # every caption ranks image 0 first: only caption 0 hits
    random = torch.nn.functional.normalize(
        torch.randn(40, 8, generator=torch.Generator().manual_seed(3)), dim=-1
    )
    assert retrieval_metrics(random, random, range(40), tie_break="lowest_index") == retrieval_metrics(
        random, random, range(40)
    )


def lowest_index_reference(
    images: torch.Tensor, texts: torch.Tensor, text_to_image: torch.Tensor, k: int
) -> dict:
    """Full stable sort of every score row (score descending, then gallery index): hits at k."""
    scores = texts @ images.T  # (M, N)
    order_t2i = (-scores).argsort(dim=1, stable=True)[:, :k]
    t2i = (order_t2i == text_to_image[:, None]).any(1)
    order_i2t = (-scores.T).argsort(dim=1, stable=True)[:, :k]
    i2t = (text_to_image[order_i2t] == torch.arange(len(images))[:, None]).any(1)
    return {f"i2t_R@{k}": i2t.float().mean().item() * 100, f"t2i_R@{k}": t2i.float().mean().item() * 100}


@pytest.mark.parametrize("seed", range(4))
def test_lowest_index_equals_stable_sort_with_ties_and_uncaptioned_images(seed: int) -> None:
    generator = torch.Generator().manual_seed(100 + seed)
    num_images = int(torch.randint(12, 150, (1,), generator=generator))
    images = torch.randint(-2, 3, (num_images, 5), generator=generator).float() / 4  # heavy exact ties
    text_to_image = torch.randint(
        0, num_images // 2, (2 * num_images,), generator=generator
    )  # half uncaptioned
    texts = (
        images[text_to_image] + torch.randint(-1, 2, (len(text_to_image), 5), generator=generator).float() / 4
    )
    for chunk_size in (1, 9, 4096):
        actual = retrieval_metrics(
            images, texts, text_to_image, chunk_size=chunk_size, tie_break="lowest_index"
        )
        for k in (1, 5, 10):
            expected = lowest_index_reference(images, texts, text_to_image, k)
            assert {key: actual[key] for key in expected} == expected
    torch_mode = retrieval_metrics(images, texts, text_to_image, chunk_size=9)
    assert torch_mode == clip_benchmark_metrics(images, texts, text_to_image)  # uncaptioned images: misses


def test_oracle_and_chance_level() -> None:
    generator = torch.Generator().manual_seed(11)
    images = torch.nn.functional.normalize(torch.randn(1000, 64, generator=generator), dim=-1)
    text_to_image = torch.arange(1000)
    oracle = retrieval_metrics(images, images.clone(), text_to_image)
    assert all(value == 100.0 for value in oracle.values())
    texts = torch.nn.functional.normalize(torch.randn(1000, 64, generator=generator), dim=-1)
    chance = retrieval_metrics(images, texts, text_to_image)
    # Random embeddings: R@k ~ Binomial(1000, k/1000)/10 in percent; 5 standard deviations.
    for k in (1, 5, 10):
        bound = 100 * (k / 1000 + 5 * np.sqrt(k / 1000 * (1 - k / 1000) / 1000))
        assert chance[f"i2t_R@{k}"] <= bound and chance[f"t2i_R@{k}"] <= bound


def test_errors() -> None:
    images, texts = torch.eye(3), torch.eye(3)
    with pytest.raises(ValueError, match=r"text_to_image values must be in \[0, 3\), found \[0, 3\]"):
        retrieval_metrics(images, texts, [0, 1, 3])
    with pytest.raises(ValueError, match=r"text_to_image has shape \(2,\), expected \(3,\)"):
        retrieval_metrics(images, texts, [0, 1])
    with pytest.raises(ValueError, match="same D"):
        retrieval_metrics(images, torch.ones(3, 2), [0, 1, 2])
    with pytest.raises(ValueError, match="tie_break='random'"):
        retrieval_metrics(images, texts, [0, 1, 2], tie_break="random")
    with pytest.raises(ValueError, match=r"ks=\(0,\)"):
        retrieval_metrics(images, texts, [0, 1, 2], ks=(0,))
    with pytest.raises(TypeError, match="text_embeds: expected a torch tensor or a NumPy array"):
        retrieval_metrics(images, {"a": 1}, [0, 1, 2])


@pytest.mark.parametrize("tie_break", ["torch", "lowest_index"])
def test_image_without_captions_is_a_miss_at_every_k(tie_break) -> None:
    """As in clip_benchmark (recall_at_k of a row without positives is nan, not > 0), even for k >= the gallery."""
    images = torch.eye(3)
    texts = torch.eye(3)[:2]
    metrics = retrieval_metrics(images, texts, [0, 1], ks=(1, 2, 5), tie_break=tie_break)
    assert metrics["i2t_R@5"] == pytest.approx(200 / 3) and metrics["i2t_R@1"] == pytest.approx(200 / 3)
    assert metrics["t2i_R@1"] == 100.0
