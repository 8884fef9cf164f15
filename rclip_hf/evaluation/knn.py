"""Weighted k-nearest-neighbour classification on frozen features (k = 20, temperature 0.07)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..topk import chunked_topk
from .classification import classification_metrics
from .retrieval import as_tensor


def knn_scores(
    train_features: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray | Sequence[int],
    test_features: Tensor | np.ndarray,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 4096,
) -> Tensor:
    """Class votes (Q, C): each of the k most similar training samples (dot product of L2-normalised
    features, ties: lower index) adds ``exp(similarity / temperature)`` to its class."""
    train = as_tensor(train_features, "train_features").float()
    test = as_tensor(test_features, "test_features", train.device).float()
    labels = as_tensor(train_labels, "train_labels", train.device).long()
    if labels.shape != (train.shape[0],):
        raise ValueError(
            f"knn_scores: train_labels has shape {tuple(labels.shape)}, expected ({train.shape[0]},)"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"knn_scores: train_labels must be in [0, {num_classes}), found [{int(labels.min())}, {int(labels.max())}]"
        )
    if temperature <= 0:
        raise ValueError(f"knn_scores: temperature={temperature} must be > 0")
    similarities, neighbours = chunked_topk(
        test, train, min(k, train.shape[0]), chunk_size=chunk_size
    )  # (Q, k)
    votes = torch.zeros(test.shape[0], num_classes, dtype=torch.float64, device=train.device)
    # Subtracting each query's best similarity before exp keeps exp(sim / T) finite for any input scale;
    # it multiplies all votes of that query by one factor, so the ranking of its classes is unchanged.
    weights = torch.exp(
        (similarities.double() - similarities.double().amax(dim=1, keepdim=True)) / temperature
    )
    votes.scatter_add_(1, labels[neighbours], weights)
    return votes


def knn_metrics(
    train_features: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray | Sequence[int],
    test_features: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray | Sequence[int],
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> dict[str, float]:
    """``top1``, ``top5`` and ``mean_per_class_recall`` (percent) of the weighted k-NN vote."""
    votes = knn_scores(train_features, train_labels, test_features, num_classes, k, temperature)
    return classification_metrics(votes, test_labels)
