"""Zero-shot classification of images against class names or a benchmark preset, with cached class embeddings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from torch import Tensor
from transformers import CLIPModel, ProcessorMixin

from ..embeddings import class_embeddings, encode_images
from ..errors import UserError
from ..images import as_rgb_image
from ..loading import resolve_model
from ..prompts import BENCHMARK_PRESETS, PAPER_TEMPLATE, templates_for

logger = logging.getLogger(__name__)

ImageInput = Image.Image | str | Path


class UnknownPresetError(UserError, KeyError):
    """A preset name that `BENCHMARK_PRESETS` does not hold; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_labels(
    labels: Sequence[str] | str, templates: Sequence[str] | str | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(class names, templates) of a label list or a preset name.

    `templates`: a template such as "a satellite photo of {}.", a list of them, "paper" or "ensemble" (the
    evaluation's template sets); None means the preset's templates, or the paper's template for a label list.
    """
    if isinstance(labels, str):
        if labels not in BENCHMARK_PRESETS:
            raise UnknownPresetError(
                f"unknown preset {labels!r}; choose one of {', '.join(sorted(BENCHMARK_PRESETS))} "
                "or pass a list of class names"
            )
        class_names, preset_templates = BENCHMARK_PRESETS[labels]
        default_templates = tuple(preset_templates)
    else:
        class_names, default_templates = labels, (PAPER_TEMPLATE,)
    class_names = tuple(class_names)
    if len(class_names) < 1 or not all(isinstance(name, str) and name for name in class_names):
        raise ValueError(f"labels must be non-empty strings, got {list(class_names)!r}")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"labels must be distinct, got {list(class_names)!r}")
    if templates is None:
        templates = default_templates
    elif templates in ("paper", "ensemble"):
        templates = templates_for(templates)
    else:
        templates = (templates,) if isinstance(templates, str) else tuple(templates)
    for template in templates:
        if "{}" not in template:
            raise ValueError(f"template {template!r} has no '{{}}' placeholder for the class name")
    return class_names, templates


def score_images(model: CLIPModel, image_embeddings: Tensor, class_embeds: Tensor) -> Tensor:
    """Logits (N, C) = exp(logit_scale) * cosine similarity, as `CLIPModel.logits_per_image`."""
    scale = model.logit_scale.detach().exp().float()
    return scale * image_embeddings.float() @ class_embeds.float().to(image_embeddings.device).T


def classify(
    images: ImageInput | Sequence[ImageInput],
    labels: Sequence[str] | str,
    templates: Sequence[str] | str | None = None,
    *,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    top_k: int | None = None,
    batch_size: int = 32,
    bands: Sequence[int] | None = None,
) -> list[dict[str, float | str]] | list[list[dict[str, float | str]]]:
    """Rank `labels` (class names, or a preset name) for each image: `[{"label", "score"}, ...]` best first.

    Scores are softmax probabilities over the labels of `exp(logit_scale) * cosine` between the image and each
    class embedding (the mean of its templates' normalised text embeddings, renormalised). One image (a PIL
    image or a path) gives one ranked list, like `pipeline("zero-shot-image-classification")`; a sequence of
    images gives one list per image. `bands` (1-based, one or three) picks the bands of (Geo)TIFF files, as
    `load_image` does.
    """
    model, processor = resolve_model(model, processor)
    class_names, templates = resolve_labels(labels, templates)
    single = isinstance(images, (Image.Image, str, Path))
    image_list = [as_rgb_image(image, bands) for image in ([images] if single else images)]
    if not image_list:
        raise ValueError("classify: no images given")
    top_k = len(class_names) if top_k is None else top_k
    if not 1 <= top_k <= len(class_names):
        raise ValueError(f"top_k={top_k} must be in [1, {len(class_names)}] (number of labels)")
    class_embeds = class_embeddings(model, processor, class_names, templates)  # (C, D)
    image_embeds = encode_images(model, processor, image_list, batch_size=batch_size,
                                 show_progress=len(image_list) > batch_size)  # (N, D)
    probabilities = score_images(model, image_embeds, class_embeds).softmax(dim=-1).cpu()  # (N, C)
    # Stable descending sort: equal probabilities keep the order of `labels`.
    order = probabilities.argsort(dim=-1, descending=True, stable=True)[:, :top_k]
    ranked = [[{"label": class_names[column], "score": float(row[column])} for column in columns.tolist()]
              for row, columns in zip(probabilities, order)]
    return ranked[0] if single else ranked


__all__ = ["UnknownPresetError", "classify", "resolve_labels", "score_images"]
