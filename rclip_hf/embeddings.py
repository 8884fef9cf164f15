"""Batched, L2-normalised image and text embeddings from any CLIP-style model, and zero-shot class embeddings
(prompt-ensembled, with an in-memory cache keyed by model fingerprint) built from them."""

from __future__ import annotations

import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence, Sized

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ._compat import projected_features
from .images import as_rgb_image
from .loading import model_fingerprint
from .progress import progress_bar

#: How many (model, labels, templates) class-embedding matrices `class_embeddings` keeps in memory.
CLASS_EMBEDDING_CACHE_SIZE = 32


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    return next(iter(model.parameters()), torch.empty(0)).device


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device`` (e.g. bfloat16), or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def batched(items: Iterable, batch_size: int) -> Iterator[list]:
    """Consecutive lists of ``batch_size`` items (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, batch_size)):
        yield batch


def _encode(model, batches: Iterable[dict], encode_fn, device, dtype, total, desc, show_progress) -> Tensor:
    """Run ``encode_fn(model, **batch)`` over processed batches; return the L2-normalised float32 rows on CPU."""
    outputs = []
    with torch.inference_mode(), _autocast(device, dtype):
        for inputs in progress_bar(batches, total=total, desc=desc, disable=not show_progress, unit="batch"):
            inputs = {key: value.to(device) for key, value in inputs.items()}
            outputs.append(F.normalize(projected_features(encode_fn(model, **inputs)).float(), dim=-1).cpu())
    if not outputs:
        raise ValueError(f"{desc}: nothing to encode (empty input)")
    return torch.cat(outputs)


def encode_images(
    model: torch.nn.Module,
    processor,
    images: Iterable[Image.Image],
    batch_size: int = 64,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    num_images: int | None = None,
    show_progress: bool = True,
) -> Tensor:
    """Embeddings (N, D) float32, L2-normalised, of ``images`` via ``model.get_image_features``.

    Images are converted to RGB by the rule of `rclip_hf.images` (16-bit and float ones stretched) and processed
    with ``processor(images=..., return_tensors="pt")``; ``dtype`` (e.g. ``torch.bfloat16``) enables autocast;
    ``num_images`` only sizes the progress bar (default: ``len(images)`` when ``images`` has a length).
    """
    device = torch.device(device) if device is not None else model_device(model)
    batches = (
        processor(images=[as_rgb_image(image) for image in batch], return_tensors="pt")
        for batch in batched(images, batch_size)
    )
    if num_images is None and isinstance(images, Sized):
        num_images = len(images)
    total = None if num_images is None else -(-num_images // batch_size)

    def encode_fn(module, pixel_values, **_):
        return module.get_image_features(pixel_values=pixel_values)

    return _encode(model, batches, encode_fn, device, dtype, total, "encode images", show_progress)


def encode_texts(
    model: torch.nn.Module,
    processor,
    texts: Sequence[str],
    batch_size: int = 256,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    show_progress: bool = True,
) -> Tensor:
    """Embeddings (M, D) float32, L2-normalised, of ``texts`` via ``model.get_text_features``.

    Texts are tokenised with ``processor(text=..., padding=True, truncation=True, return_tensors="pt")``.
    """
    device = torch.device(device) if device is not None else model_device(model)
    texts = list(texts)
    batches = (
        processor(text=batch, return_tensors="pt", padding=True, truncation=True)
        for batch in batched(texts, batch_size)
    )

    def encode_fn(module, input_ids, attention_mask=None, **_):
        return module.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    total = -(-len(texts) // batch_size)
    return _encode(model, batches, encode_fn, device, dtype, total, "encode texts", show_progress)


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


class _ClassEmbeddingCache:
    """LRU of class embeddings (C, D) keyed by (model fingerprint, labels, templates)."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._entries: OrderedDict[tuple[str, tuple[str, ...], tuple[str, ...]], Tensor] = OrderedDict()

    def get(self, model: torch.nn.Module, processor, labels: tuple[str, ...],
            templates: tuple[str, ...]) -> Tensor:
        key = (model_fingerprint(model), labels, templates)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        embeddings = zero_shot_classifier(model, processor, list(labels), list(templates))  # (C, D)
        self._entries[key] = embeddings
        if len(self._entries) > self.max_size:
            self._entries.popitem(last=False)
        return embeddings

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class_embedding_cache = _ClassEmbeddingCache(CLASS_EMBEDDING_CACHE_SIZE)
"""The process-wide cache behind `class_embeddings` (`class_embedding_cache.clear()` empties it)."""


def class_embeddings(model: torch.nn.Module, processor, labels: Sequence[str],
                     templates: Sequence[str]) -> Tensor:
    """Template-ensembled, L2-normalised class embeddings (C, D), cached per model, labels and templates."""
    return class_embedding_cache.get(model, processor, tuple(labels), tuple(templates))


__all__ = ["CLASS_EMBEDDING_CACHE_SIZE", "batched", "class_embedding_cache", "class_embeddings", "encode_images",
           "encode_texts", "model_device", "zero_shot_classifier"]
