"""RemoteCount's counting metrics (the count captions are built by `rclip_hf.prompts`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..prompts import MAX_COUNT
from ..topk import topk_lowest_index
from .retrieval import as_tensor


def counting_metrics(scores: Tensor | np.ndarray, counts: Tensor | np.ndarray | Sequence[int]) -> dict:
    """``top1``…``top10`` accuracy (percent) and the row-normalised ``confusion_matrix`` (10 × 10 lists).

    ``scores`` (N, 10): similarity of each image to its captions with counts 1…10 (column c is count c + 1);
    ``counts`` (N,) the true counts in 1…10. The prediction is the argmax (equal scores: smaller count);
    top-k counts a hit when the true count is among the k best. Confusion rows are true counts, columns
    predicted counts, each row divided by its number of samples (a count with no samples gives a zero row).
    """
    scores = as_tensor(scores, "scores").float()
    counts = as_tensor(counts, "counts", scores.device).long()
    if (
        scores.ndim != 2
        or scores.shape[1] != MAX_COUNT
        or counts.shape != (scores.shape[0],)
        or not len(counts)
    ):
        raise ValueError(
            f"counting_metrics: expected scores (N, {MAX_COUNT}) with N >= 1 and counts (N,), got "
            f"{tuple(scores.shape)} and {tuple(counts.shape)}"
        )
    if counts.min() < 1 or counts.max() > MAX_COUNT:
        raise ValueError(
            f"counting_metrics: counts must be in [1, {MAX_COUNT}], found [{int(counts.min())}, {int(counts.max())}]"
        )
    _, ranked = topk_lowest_index(scores, MAX_COUNT)  # (N, 10) count indices, best first
    correct = ranked == (counts - 1)[:, None]
    metrics: dict = {
        f"top{k}": correct[:, :k].any(dim=1).double().mean().item() * 100 for k in range(1, MAX_COUNT + 1)
    }
    confusion = torch.zeros(MAX_COUNT, MAX_COUNT, dtype=torch.float64)
    confusion.index_put_(
        ((counts - 1).cpu(), ranked[:, 0].cpu()),
        torch.ones(len(counts), dtype=torch.float64),
        accumulate=True,
    )
    row_totals = confusion.sum(dim=1, keepdim=True)
    metrics["confusion_matrix"] = torch.where(
        row_totals > 0, confusion / row_totals.clamp(min=1), 0.0
    ).tolist()
    return metrics
