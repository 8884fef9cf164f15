"""Exact, memory-bounded top-k search with a deterministic tie rule (lower gallery index first)."""

from __future__ import annotations

import torch
from torch import Tensor


def topk_lowest_index(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` of each row of ``scores`` (Q, n), sorted by score descending, ties broken by lower column.

    Returns ``(values (Q, k), columns (Q, k) int64)``. Unlike ``torch.topk``, whose choice among equal
    scores is implementation-defined (it differs between CPU paths and devices), the result here is the
    same on every device: of several equal scores, the one in the lower column is ranked first.
    """
    num_cols = scores.shape[1]
    if not 1 <= k <= num_cols:
        raise ValueError(f"topk_lowest_index: k={k} must be in [1, {num_cols}] (number of columns)")
    # One torch.topk with a look-ahead of one: where the (k+1)-th score is below the k-th, the set of the
    # top k is unique and only its order needs fixing; rows with a tie across the boundary take the slow path.
    probe_values, probe_columns = scores.topk(min(k + 1, num_cols), dim=1)
    if probe_values.is_floating_point() and torch.isnan(probe_values).any():  # topk ranks NaN first
        raise ValueError("topk_lowest_index: scores contain NaN; similarity scores must be finite")
    values, columns = probe_values[:, :k], probe_columns[:, :k]
    if k < num_cols:
        boundary_tie = probe_values[:, k] == probe_values[:, k - 1]
        if boundary_tie.any():
            rows = boundary_tie.nonzero()[:, 0]
            values, columns = values.clone(), columns.clone()
            values[rows], columns[rows] = _topk_with_boundary_ties(scores[rows], k)
    by_column = columns.argsort(dim=1)
    values, columns = values.gather(1, by_column), columns.gather(1, by_column)
    order = values.argsort(dim=1, descending=True, stable=True)  # stable: equal scores keep column order
    return values.gather(1, order), columns.gather(1, order)


def _topk_with_boundary_ties(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` (unsorted) of rows whose k-th score is tied beyond the top ``k``: lower columns win the tie."""
    num_rows = scores.shape[0]
    kth_value = scores.topk(k, dim=1).values[:, -1:]  # (R, 1): the k-th largest score
    above = scores > kth_value  # (R, n): always in the top k
    tied = scores == kth_value  # (R, n): the first (k - #above) of these, by column, fill the rest
    free_slots = k - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(dim=1, dtype=torch.int32) <= free_slots))
    columns = chosen.nonzero()[:, 1].view(num_rows, k)  # row-major nonzero: ascending columns per row
    return scores.gather(1, columns), columns


def chunked_topk(queries: Tensor, gallery: Tensor, k: int, chunk_size: int = 4096) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` gallery items by dot product for each query, ties broken by lower gallery index.

    ``queries`` (Q, D) and ``gallery`` (G, D) (normalise them first for cosine similarity); returns
    ``(scores (Q, k) float32, indices (Q, k) int64)`` on the queries' device, sorted best first. Scores are
    computed tile by tile (at most ``chunk_size`` queries and ``chunk_size²`` scores per tile), so the extra
    memory is O(chunk_size² + Q·k), never Q × G.
    """
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"chunked_topk: expected queries (Q, D) and gallery (G, D) with the same D, got "
            f"{tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunked_topk: chunk_size={chunk_size} must be >= 1")
    num_gallery = gallery.shape[0]
    if not 1 <= k <= num_gallery:
        raise ValueError(f"chunked_topk: k={k} must be in [1, {num_gallery}] (gallery size)")
    device = queries.device
    gallery = gallery.to(device)
    all_scores, all_indices = [], []
    for q_start in range(0, queries.shape[0], chunk_size):
        query_chunk = queries[q_start : q_start + chunk_size].float()  # (q, D)
        best_scores = best_indices = None  # (q, <=k) running best, sorted by (score desc, index asc)
        # Tiles hold at most chunk_size² scores: few queries get correspondingly longer gallery chunks.
        gallery_chunk = max(chunk_size, chunk_size * chunk_size // query_chunk.shape[0])
        for g_start in range(0, num_gallery, gallery_chunk):
            tile = query_chunk @ gallery[g_start : g_start + gallery_chunk].float().T  # (q, g)
            values, columns = topk_lowest_index(tile, min(k, tile.shape[1]))
            indices = columns + g_start
            if best_scores is not None:
                # Running entries all have lower gallery indices than this tile's and come first, so
                # "lower column wins" on the concatenation is "lower gallery index wins".
                values = torch.cat([best_scores, values], dim=1)
                indices = torch.cat([best_indices, indices], dim=1)
                values, columns = topk_lowest_index(values, min(k, values.shape[1]))
                indices = indices.gather(1, columns)
            best_scores, best_indices = values, indices
        all_scores.append(best_scores)
        all_indices.append(best_indices)
    if not all_scores:
        return torch.empty(0, k, device=device), torch.empty(0, k, dtype=torch.int64, device=device)
    return torch.cat(all_scores), torch.cat(all_indices)
