"""Linear probe and few-shot: vectorised SGD logistic regression, search, splits, oracle and chance level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rclip_hf.evaluation import (
    LinearProbeConfig,
    few_shot,
    linear_probe,
    sample_shots,
    train_logistic_regression,
)
from rclip_hf.evaluation.linear_probe import stratified_split

FAST = LinearProbeConfig(epochs=60, search_rounds=3)


def _clusters(num_per_class: int, noise: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(
        torch.randn(5, 32, generator=torch.Generator().manual_seed(99)), dim=-1
    )
    labels = torch.arange(5).repeat(num_per_class)
    features = torch.nn.functional.normalize(
        centres[labels] + noise * torch.randn(len(labels), 32, generator=generator), dim=-1
    )
    return features, labels


def test_vectorised_runs_equal_single_runs() -> None:
    features, labels = _clusters(20, 0.3, 0)
    config = LinearProbeConfig(epochs=15, batch_size=32)
    weights, biases = train_logistic_regression(features, labels, 5, [0.8, 0.1], [4e-5, 1e-3], config)
    single_w, single_b = train_logistic_regression(features, labels, 5, [0.1], [1e-3], config)
    torch.testing.assert_close(weights[1], single_w[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(biases[1], single_b[0], rtol=1e-5, atol=1e-6)
    assert weights.shape == (2, 32, 5) and biases.shape == (2, 5)


def test_one_step_matches_hand_computed_sgd() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    weights, biases = train_logistic_regression(
        features, labels, 2, [0.5], [0.0], LinearProbeConfig(epochs=1, momentum=0.0)
    )
    # From zero weights the softmax is uniform: dL/dW = X^T (softmax - onehot) / N = [[-.25, .25], [.25, -.25]];
    # the first step uses the full lr (cosine factor 1).
    torch.testing.assert_close(weights[0], torch.tensor([[0.125, -0.125], [-0.125, 0.125]]))
    torch.testing.assert_close(biases[0], torch.zeros(2))


def test_oracle_and_chance() -> None:
    train_x, train_y = _clusters(40, 0.1, 0)
    test_x, test_y = _clusters(40, 0.1, 1)
    outcome = linear_probe(train_x, train_y, test_x, test_y, 5, FAST)
    assert outcome["metrics"]["top1"] == 100.0 and len(outcome["search"]) == 3
    assert outcome["search"][0]["lr"] == 0.8 and outcome["search"][0]["weight_decay"] == 4e-5
    generator = torch.Generator().manual_seed(5)
    random_train = torch.nn.functional.normalize(torch.randn(400, 32, generator=generator), dim=-1)
    random_test = torch.nn.functional.normalize(torch.randn(2000, 32, generator=generator), dim=-1)
    chance = linear_probe(
        random_train,
        torch.randint(0, 5, (400,), generator=generator),
        random_test,
        torch.randint(0, 5, (2000,), generator=generator),
        5,
        FAST,
    )["metrics"]["top1"]
    assert abs(chance - 20.0) <= 5 * np.sqrt(0.2 * 0.8 / 2000) * 100


def test_splits_and_shots() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    kept, held = stratified_split(labels, 0.2, seed=0)
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(16))
    assert torch.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]  # never the last sample of a class
    shots = sample_shots(labels, 4, seed=0)
    assert torch.bincount(labels[shots], minlength=3).tolist() == [4, 4, 1]
    assert not set(sample_shots(labels, 4, seed=1, exclude=shots).tolist()) & set(shots.tolist())


def test_few_shot_mean_and_std() -> None:
    train_x, train_y = _clusters(40, 0.1, 0)
    test_x, test_y = _clusters(20, 0.1, 1)
    results = few_shot(train_x, train_y, test_x, test_y, 5, shots=(1, 4), seeds=(0, 1), config=FAST)
    assert set(results) == {"1-shot", "4-shot"}
    for cell in results.values():
        assert cell["top1_mean"] == pytest.approx(np.mean(cell["top1_per_seed"]))
        assert cell["top1_std"] == pytest.approx(np.std(cell["top1_per_seed"]))
    assert results["4-shot"]["top1_mean"] == 100.0


def test_errors() -> None:
    with pytest.raises(ValueError, match="search_rounds, epochs and batch_size must be >= 1"):
        linear_probe(torch.eye(2), [0, 1], torch.eye(2), [0, 1], 2, LinearProbeConfig(epochs=0))
    with pytest.raises(ValueError, match=r"train_labels must be in \[0, 2\)"):
        linear_probe(torch.eye(2), [0, 2], torch.eye(2), [0, 1], 2)
    with pytest.raises(ValueError, match="shots must be >= 1"):
        few_shot(torch.eye(2), [0, 1], torch.eye(2), [0, 1], 2, shots=(0,))
