"""Batched, L2-normalised image and text embeddings from any CLIP-style model and its processor."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    return next(iter(model.parameters()), torch.empty(0)).device


def _projected(output) -> Tensor:
    """The projected embedding: ``.pooler_output`` of a transformers 5 output, or the tensor itself."""
    return output if isinstance(output, Tensor) else output.pooler_output


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device`` (e.g. bfloat16), or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _batches(items: Iterable, batch_size: int) -> Iterator[list]:
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
        for inputs in tqdm(batches, total=total, desc=desc, disable=not show_progress, unit="batch"):
            inputs = {key: value.to(device) for key, value in inputs.items()}
            outputs.append(F.normalize(_projected(encode_fn(model, **inputs)).float(), dim=-1).cpu())
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

    Images are converted to RGB and processed with ``processor(images=..., return_tensors="pt")``;
    ``dtype`` (e.g. ``torch.bfloat16``) enables autocast; ``num_images`` only sizes the progress bar.
    """
    device = torch.device(device) if device is not None else model_device(model)
    batches = (
        processor(images=[image.convert("RGB") for image in batch], return_tensors="pt")
        for batch in _batches(images, batch_size)
    )
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
        for batch in _batches(texts, batch_size)
    )

    def encode_fn(module, input_ids, attention_mask=None, **_):
        return module.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    total = -(-len(texts) // batch_size)
    return _encode(model, batches, encode_fn, device, dtype, total, "encode texts", show_progress)
