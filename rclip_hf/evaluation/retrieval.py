"""Image-text retrieval recall@k, as reported by CLIP-style papers, the official RemoteCLIP retrieval.py and
clip_benchmark: a query counts as a hit at k when at least one of its positives is among its top k."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..progress import progress_bar

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


def _hits_by_rank(
    queries: Tensor,
    gallery: Tensor,
    offsets: Tensor,
    positive_columns: Tensor,
    ks: Sequence[int],
    chunk_size: int,
    transpose: bool,
    tie_break: TieBreak,
) -> dict[int, Tensor]:
    """Per-query hit flags for each k from the rank of each query's best-scoring positive.

    Query ``q``'s positives are the gallery items ``positive_columns[offsets[q]:offsets[q + 1]]``. Each block
    of whole score rows (about ``chunk_size²`` scores) is scanned once: with ``above`` items scoring higher
    than the best positive and ``tied`` items (positives included) scoring equal to it, the query is a hit
    at k when ``above + tied <= k`` and a miss when ``above >= k``; in between, the tie rule decides.
    ``transpose`` computes the block as ``(gallery @ chunk.T).T``, the orientation clip_benchmark uses for
    image→text, so that tied scores come out bit-identical to it.
    """
    num_queries, num_gallery = queries.shape[0], gallery.shape[0]
    device = queries.device
    rows = _rows_per_chunk(chunk_size, num_gallery)
    hits = {k: torch.zeros(num_queries, dtype=torch.bool, device=device) for k in ks}
    for start in progress_bar(range(0, num_queries, rows), desc="retrieval", unit="block", leave=False, disable=None):
        chunk = queries[start : start + rows]
        scores = (gallery @ chunk.T).T if transpose else chunk @ gallery.T  # (rows, G)
        lo, hi = int(offsets[start]), int(offsets[start + chunk.shape[0]])
        pair_columns = positive_columns[lo:hi]  # (P,) positives of this block's queries, grouped by query
        pair_rows = torch.repeat_interleave(offsets[start : start + chunk.shape[0] + 1].diff())  # (P,)
        block_hits = _BLOCK_RULES[tie_break](scores, pair_rows, pair_columns, ks)
        for k in ks:
            hits[k][start : start + chunk.shape[0]] = block_hits[k]
    return hits


def _best_positive(scores: Tensor, pair_rows: Tensor, pair_columns: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(pair scores (P,), best (rows, 1), above (rows,), tied (rows,)): the positives' scores, each row's best of
    them (-inf for a row without positives), and how many scores of the row lie above it and are equal to it (the
    positive included). A row without positives (an image without captions) gets above = G, tied = 1: a miss at
    every k, as in clip_benchmark."""
    pair_scores = scores[pair_rows, pair_columns]
    best = torch.full((scores.shape[0],), -torch.inf, device=scores.device)
    best = best.scatter_reduce(0, pair_rows, pair_scores, "amax")[:, None]
    has_positive = torch.isfinite(best[:, 0])
    above = torch.where(has_positive, (scores > best).sum(dim=1), scores.shape[1])
    tied = torch.where(has_positive, (scores == best).sum(dim=1), 1)
    return pair_scores, best, above, tied


def _block_hits_torch(scores: Tensor, pair_rows: Tensor, pair_columns: Tensor, ks: Sequence[int]
                      ) -> dict[int, Tensor]:
    """Hits of one block as clip_benchmark ranks them: rows tied across the k-th place go to ``torch.topk``."""
    num_rows, num_gallery = scores.shape
    _, _, above, tied = _best_positive(scores, pair_rows, pair_columns)
    hits = {}
    for k in ks:
        k_eff = min(k, num_gallery)
        hits[k] = above + tied <= k_eff
        ambiguous = ((above < k_eff) & ~hits[k]).nonzero()[:, 0]  # (A,) rows whose k-th place is inside a tie
        if len(ambiguous):
            top = scores[ambiguous].topk(k_eff, dim=1).indices  # (A, k)
            owner = torch.full((num_rows,), -1, device=scores.device)  # row -> its position among ambiguous
            owner[ambiguous] = torch.arange(len(ambiguous), device=scores.device)
            selected = owner[pair_rows] >= 0
            is_positive = torch.zeros(len(ambiguous), num_gallery, dtype=torch.bool, device=scores.device)
            is_positive[owner[pair_rows[selected]], pair_columns[selected]] = True
            hits[k][ambiguous] = is_positive.gather(1, top).any(dim=1)
    return hits


def _block_hits_lowest_index(scores: Tensor, pair_rows: Tensor, pair_columns: Tensor, ks: Sequence[int]
                             ) -> dict[int, Tensor]:
    """Hits of one block with equal scores ranked by gallery index: the lowest-index positive at the best score
    comes after every tied item of lower index."""
    num_rows, num_gallery = scores.shape
    pair_scores, best, rank, tied = _best_positive(scores, pair_rows, pair_columns)  # rank: 0-based, before ties
    at_best = pair_scores == best[pair_rows, 0]
    first = torch.full((num_rows,), num_gallery, device=scores.device)
    first = first.scatter_reduce(0, pair_rows[at_best], pair_columns[at_best], "amin")  # (rows,)
    ambiguous = (tied > 1).nonzero()[:, 0]
    if len(ambiguous):
        columns = torch.arange(num_gallery, device=scores.device)
        before = (scores[ambiguous] == best[ambiguous]) & (columns < first[ambiguous, None])
        rank[ambiguous] += before.sum(dim=1)
    return {k: rank < min(k, num_gallery) for k in ks}


_BLOCK_RULES = {"torch": _block_hits_torch, "lowest_index": _block_hits_lowest_index}


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

    Each query's rank is found in one pass over blocks of whole score rows (about ``chunk_size²`` float32
    scores each), so memory is bounded by the chunk, not by N × M. Ties: ``tie_break="torch"`` (default)
    ranks tied scores with ``torch.topk``, exactly like clip_benchmark (numbers identical to it on the same
    device; torch's choice among equal scores is implementation-defined); ``"lowest_index"`` ranks equal
    scores by lower gallery index, the same on every device. The two differ only when scores tie exactly
    at the k-th place.
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

    # Positives as CSR lists: each caption has its one image; each image has its captions, grouped by image.
    text_offsets = torch.arange(num_texts + 1, device=device)
    captions_by_image = targets.argsort(stable=True)  # (M,)
    image_offsets = torch.zeros(num_images + 1, dtype=torch.long, device=device)
    image_offsets[1:] = torch.bincount(targets, minlength=num_images).cumsum(0)
    i2t = _hits_by_rank(images, texts, image_offsets, captions_by_image, ks, chunk_size, True, tie_break)
    t2i = _hits_by_rank(texts, images, text_offsets, targets, ks, chunk_size, False, tie_break)
    metrics = {f"i2t_R@{k}": i2t[k].float().mean().item() * 100 for k in ks}
    metrics.update({f"t2i_R@{k}": t2i[k].float().mean().item() * 100 for k in ks})
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    return metrics
