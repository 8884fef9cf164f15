"""Zero-shot classification metrics: images scored against class embeddings (`rclip_hf.embeddings.zero_shot_classifier`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from .classification import classification_metrics
from .retrieval import as_tensor


def zero_shot_metrics(
    image_embeds: Tensor | np.ndarray,
    classifier: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | Sequence[int],
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """``top1``, ``top5`` and ``mean_per_class_recall`` (percent) of images (N, D) against class embeddings (C, D)."""
    image_embeds = as_tensor(image_embeds, "image_embeds").float()
    classifier = as_tensor(classifier, "classifier", image_embeds.device).float()
    if image_embeds.ndim != 2 or classifier.ndim != 2 or image_embeds.shape[1] != classifier.shape[1]:
        raise ValueError(
            f"zero_shot_metrics: expected image_embeds (N, D) and classifier (C, D) with the same D, got "
            f"{tuple(image_embeds.shape)} and {tuple(classifier.shape)}"
        )
    return classification_metrics(image_embeds @ classifier.T, labels, ks)
