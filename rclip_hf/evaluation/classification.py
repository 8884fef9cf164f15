"""Classification metrics from class scores: top-k accuracy and mean per-class recall, in percent."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..topk import topk_lowest_index
from .retrieval import as_tensor


def classification_metrics(
    scores: Tensor | np.ndarray, labels: Tensor | np.ndarray | Sequence[int], ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """``top{k}`` accuracy for each k and ``mean_per_class_recall`` (balanced accuracy), in percent.

    ``scores`` (N, C) are any class scores (logits, similarities, votes); ``labels`` (N,) int in [0, C).
    A sample is correct at k when its label is among its k highest scores (equal scores: lower class index
    first; a k above C is clamped to C). Mean per-class recall is the top-1 recall averaged over the classes
    present in ``labels`` (scikit-learn's ``balanced_accuracy_score``).
    """
    scores = as_tensor(scores, "scores")
    labels = as_tensor(labels, "labels", scores.device).long()
    if scores.ndim != 2 or labels.shape != (scores.shape[0],) or scores.shape[0] == 0:
        raise ValueError(
            f"classification_metrics: expected scores (N, C) with N >= 1 and labels (N,), got "
            f"{tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    num_classes = scores.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"classification_metrics: labels must be in [0, {num_classes}), found [{int(labels.min())}, {int(labels.max())}]"
        )
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"classification_metrics: ks={tuple(ks)} must be integers >= 1")
    k_max = min(max(int(k) for k in ks), num_classes)
    _, top = topk_lowest_index(scores.float(), k_max)  # (N, k_max) class indices, best first
    correct = top == labels[:, None]
    metrics = {
        f"top{k}": correct[:, : min(int(k), k_max)].any(dim=1).double().mean().item() * 100 for k in ks
    }
    support = torch.bincount(labels, minlength=num_classes).double()  # (C,)
    hits = torch.bincount(labels[correct[:, 0]], minlength=num_classes).double()
    present = support > 0
    metrics["mean_per_class_recall"] = (hits[present] / support[present]).mean().item() * 100
    return metrics
