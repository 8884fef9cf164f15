"""Image-text retrieval recall@k, as reported by CLIP-style papers, the official RemoteCLIP retrieval.py and
clip_benchmark: a query counts as a hit at k when at least one of its positives is among its top k."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .topk import chunked_topk

logger = logging.getLogger(__name__)

TieBreak = Literal["torch", "lowest_index"]


def as_tensor(
    array: Tensor | np.ndarray | Sequence, name: str, device: torch.device | str | None = None
) -> Tensor:
    """Convert a torch tensor, NumPy array or sequence to a tensor on ``device`` (kept where it is if None)."""
    if isinstance(array, Tensor):
        tensor = array
    else:
        try:
            tensor = torch.as_tensor(np.asarray(array))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name}: expected a torch tensor or a NumPy array, got {type(array).__name__}"
            ) from error
    return tensor if device is None else tensor.to(device)


def _rows_per_chunk(chunk_size: int, gallery_size: int) -> int:
    """Query rows per chunk so that one (rows, gallery) score block holds about chunk_size² entries."""
    return max(1, (chunk_size * chunk_size) // max(1, gallery_size))


def _hits_torch_topk(
    queries: Tensor, gallery: Tensor, is_positive, ks: Sequence[int], chunk_size: int, transpose: bool
) -> dict[int, Tensor]:
    """Per-query hit flags for each k, using ``torch.topk`` on whole score rows exactly as clip_benchmark does.

    ``transpose`` computes the block as ``(gallery @ chunk.T).T``, the orientation clip_benchmark uses for
    image→text (it transposes the text×image score matrix), so tied scores come out bit-identical.
    """
    num_queries, num_gallery = queries.shape[0], gallery.shape[0]
    rows = _rows_per_chunk(chunk_size, num_gallery)
    hits = {k: torch.zeros(num_queries, dtype=torch.bool, device=queries.device) for k in ks}
    for start in range(0, num_queries, rows):
        chunk = queries[start : start + rows]
        scores = (gallery @ chunk.T).T if transpose else chunk @ gallery.T  # (rows, G)
        for k in ks:
            top = scores.topk(min(k, num_gallery), dim=1).indices  # (rows, k)
            hits[k][start : start + rows] = is_positive(top, start).any(dim=1)
    return hits


def _hits_lowest_index(
    queries: Tensor, gallery: Tensor, is_positive, ks: Sequence[int], chunk_size: int
) -> dict[int, Tensor]:
    """Per-query hit flags for each k from one exact chunked top-max(k) search (ties: lower gallery index)."""
    k_max = min(max(ks), gallery.shape[0])
    _, top = chunked_topk(queries, gallery, k_max, chunk_size=chunk_size)  # (Q, k_max)
    positive = is_positive(top, 0)
    return {k: positive[:, : min(k, k_max)].any(dim=1) for k in ks}


def retrieval_metrics(
    image_embeds: Tensor | np.ndarray,
    text_embeds: Tensor | np.ndarray,
    text_to_image: Tensor | np.ndarray | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    *,
    chunk_size: int = 4096,
    device: torch.device | str | None = None,
    tie_break: TieBreak = "torch",
) -> dict[str, float]:
    """Image→text and text→image recall@k in percent, plus their mean (``mean_recall``).

    ``image_embeds`` (N, D) and ``text_embeds`` (M, D) are L2-normalised by the caller; ``text_to_image``
    (M,) gives the image index of each caption (several captions per image allowed). Definitions (the
    official RemoteCLIP retrieval.py, i.e. clip_benchmark's ``recall_at_k(...) > 0``): an image is a hit at
    k when any of its captions is among its k best-scoring texts; a caption is a hit when its image is among
    its k best-scoring images; each R@k is the fraction of hits over all queries (float32 mean, as there)
    × 100; ``mean_recall`` is the mean of the 2 × len(ks) values. Keys: ``i2t_R@{k}``, ``t2i_R@{k}``,
    ``mean_recall``. A k larger than the gallery is clamped to the gallery size.

    Ties: ``tie_break="torch"`` (default) ranks with ``torch.topk`` on whole score rows, exactly like
    clip_benchmark (so numbers are identical to it on the same device; torch's choice among equal scores
    is implementation-defined); memory per block is about ``chunk_size²`` scores (rows × gallery).
    ``"lowest_index"`` ranks with :func:`chunked_topk` (equal scores: lower index first, the same on every
    device; memory O(chunk_size²) tiles). The two differ only when scores tie exactly at the k-th place.
    """
    if tie_break not in ("torch", "lowest_index"):
        raise ValueError(f"retrieval_metrics: tie_break={tie_break!r}, expected 'torch' or 'lowest_index'")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"retrieval_metrics: ks={tuple(ks)} must be a non-empty sequence of integers >= 1")
    if chunk_size < 1:
        raise ValueError(f"retrieval_metrics: chunk_size={chunk_size} must be >= 1")
    if device is None:
        device = image_embeds.device if isinstance(image_embeds, Tensor) else "cpu"
    images = as_tensor(image_embeds, "image_embeds", device).float()  # scores in float32, as clip_benchmark
    texts = as_tensor(text_embeds, "text_embeds", device).float()
    targets = as_tensor(text_to_image, "text_to_image", device).long()
    if images.ndim != 2 or texts.ndim != 2 or images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"retrieval_metrics: expected image_embeds (N, D) and text_embeds (M, D) with the same D, got "
            f"{tuple(images.shape)} and {tuple(texts.shape)}"
        )
    num_images, num_texts = images.shape[0], texts.shape[0]
    if num_images == 0 or num_texts == 0:
        raise ValueError(
            f"retrieval_metrics: need at least one image and one text, got {num_images} and {num_texts}"
        )
    if targets.shape != (num_texts,):
        raise ValueError(
            f"retrieval_metrics: text_to_image has shape {tuple(targets.shape)}, expected ({num_texts},) "
            "(one image index per caption)"
        )
    if targets.min() < 0 or targets.max() >= num_images:
        raise ValueError(
            f"retrieval_metrics: text_to_image values must be in [0, {num_images}), found "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    ks = [int(k) for k in ks]
    for k in ks:
        if k > min(num_images, num_texts):
            logger.warning(
                "retrieval_metrics: k=%d exceeds a gallery (%d images, %d texts); clamped",
                k,
                num_images,
                num_texts,
            )

    image_ids = torch.arange(num_images, device=device)

    def text_is_positive(top: Tensor, start: int) -> Tensor:  # top: (rows, k) text indices of image queries
        return targets[top] == image_ids[start : start + top.shape[0], None]

    def image_is_positive(top: Tensor, start: int) -> Tensor:  # top: (rows, k) image indices of text queries
        return top == targets[start : start + top.shape[0], None]

    if tie_break == "torch":
        i2t = _hits_torch_topk(images, texts, text_is_positive, ks, chunk_size, transpose=True)
        t2i = _hits_torch_topk(texts, images, image_is_positive, ks, chunk_size, transpose=False)
    else:
        i2t = _hits_lowest_index(images, texts, text_is_positive, ks, chunk_size)
        t2i = _hits_lowest_index(texts, images, image_is_positive, ks, chunk_size)
    metrics = {f"i2t_R@{k}": i2t[k].float().mean().item() * 100 for k in ks}
    metrics.update({f"t2i_R@{k}": t2i[k].float().mean().item() * 100 for k in ks})
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    return metrics
