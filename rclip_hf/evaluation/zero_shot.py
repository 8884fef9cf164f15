"""Zero-shot classification: class embeddings from prompt templates, then nearest-class prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .classification import classification_metrics
from .encode import encode_texts
from .retrieval import as_tensor


def zero_shot_classifier(
    model: torch.nn.Module,
    processor,
    class_names: Sequence[str],
    templates: Sequence[str],
    batch_size: int = 256,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    show_progress: bool = False,
) -> Tensor:
    """Class embeddings (C, D), L2-normalised: each template filled with the class name (``template.format(name)``),
    encoded and normalised, averaged over templates, then renormalised (CLIP's prompt ensembling)."""
    if not class_names or not templates:
        raise ValueError(
            f"zero_shot_classifier: need class names and templates, got {len(class_names)} and {len(templates)}"
        )
    for template in templates:
        if "{}" not in template:
            raise ValueError(
                f"zero_shot_classifier: template {template!r} has no '{{}}' placeholder for the class name"
            )
    prompts = [template.format(name) for name in class_names for template in templates]
    embeddings = encode_texts(
        model, processor, prompts, batch_size, device=device, dtype=dtype, show_progress=show_progress
    )  # (C * T, D), each row normalised
    per_class = embeddings.view(len(class_names), len(templates), -1).mean(dim=1)  # (C, D)
    return F.normalize(per_class, dim=-1)


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
