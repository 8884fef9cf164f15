"""Weighted k-NN: hand-computed votes, oracle clusters and chance level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rclip_hf.evaluation import knn_metrics, knn_scores


def test_hand_computed_votes() -> None:
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    votes = knn_scores(train, labels, torch.tensor([[1.0, 0.0]]), num_classes=2, k=2, temperature=0.1)
    # neighbours: sample 0 (sim 1, class 0) and sample 1 (sim .8, class 1); weights exp((s - 1) / T)
    torch.testing.assert_close(votes, torch.tensor([[1.0, math.exp(-0.2 / 0.1)]], dtype=torch.float64))
    # with k = 3 the two class-1 neighbours outvote the nearest one only when T is large
    assert (
        knn_scores(train, labels, torch.tensor([[1.0, 0.0]]), 2, k=3, temperature=10.0).argmax().item() == 1
    )
    assert (
        knn_scores(train, labels, torch.tensor([[1.0, 0.0]]), 2, k=3, temperature=0.07).argmax().item() == 0
    )


def test_oracle_and_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(8, 32, generator=generator), dim=-1)
    train_labels, test_labels = torch.arange(8).repeat(30), torch.randint(0, 8, (400,), generator=generator)
    train = torch.nn.functional.normalize(
        centres[train_labels] + 0.05 * torch.randn(240, 32, generator=generator), dim=-1
    )
    test = torch.nn.functional.normalize(centres[test_labels] + 0.05 * torch.randn(400, 32, generator=generator), dim=-1)
    assert knn_metrics(train, train_labels, test, test_labels, 8)["top1"] == 100.0
    random_test = torch.nn.functional.normalize(torch.randn(4000, 32, generator=generator), dim=-1)
    random_labels = torch.randint(0, 8, (4000,), generator=generator)
    chance = knn_metrics(train, train_labels, random_test, random_labels, 8)["top1"]
    assert abs(chance - 12.5) <= 5 * np.sqrt(0.125 * 0.875 / 4000) * 100


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"train_labels must be in \[0, 2\)"):
        knn_scores(torch.eye(2), [0, 5], torch.eye(2), 2)
    with pytest.raises(ValueError, match="temperature=0"):
        knn_scores(torch.eye(2), [0, 1], torch.eye(2), 2, temperature=0)
    with pytest.raises(ValueError, match=r"train_labels has shape \(1,\), expected \(2,\)"):
        knn_scores(torch.eye(2), [0], torch.eye(2), 2)
