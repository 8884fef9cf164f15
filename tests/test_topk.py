"""chunked_topk / topk_lowest_index: exact top-k with ties broken by the lower gallery index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rclip_hf.topk import chunked_topk, topk_lowest_index


def test_hand_computed_ties() -> None:
    scores = torch.tensor([[0.5, 0.75, 0.5, 0.75, 0.25], [1.0, 1.0, 1.0, 1.0, 1.0]])
    values, columns = topk_lowest_index(scores, 3)
    assert columns.tolist() == [[1, 3, 0], [0, 1, 2]] and values.tolist() == [
        [0.75, 0.75, 0.5],
        [1.0, 1.0, 1.0],
    ]


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 4096])
def test_equals_stable_full_sort(chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.randint(-2, 3, (37, 4), generator=generator).float()  # small integers: many exact ties
    gallery = torch.randint(-2, 3, (101, 4), generator=generator).float()
    scores, indices = chunked_topk(queries, gallery, 12, chunk_size=chunk_size)
    full = (queries @ gallery.T).sort(dim=1, descending=True, stable=True)
    assert torch.equal(indices, full.indices[:, :12]) and torch.equal(scores, full.values[:, :12])
    assert scores.shape == (37, 12) and indices.dtype == torch.int64


def test_oracle_nearest_is_self() -> None:
    gallery = torch.nn.functional.normalize(
        torch.randn(500, 32, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    _, indices = chunked_topk(gallery, gallery, 1, chunk_size=64)
    assert torch.equal(indices[:, 0], torch.arange(500))


def test_numpy_like_float16_gallery_and_k_equals_gallery() -> None:
    gallery = torch.eye(3, dtype=torch.float16)
    scores, indices = chunked_topk(torch.tensor([[0.0, 1.0, 0.0]]), gallery, 3, chunk_size=2)
    assert indices.tolist() == [[1, 0, 2]] and scores.dtype == torch.float32
    np.testing.assert_array_equal(scores.numpy(), [[1.0, 0.0, 0.0]])


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"k=4 must be in \[1, 3\]"):
        chunked_topk(torch.ones(2, 2), torch.ones(3, 2), 4)
    with pytest.raises(ValueError, match="same D"):
        chunked_topk(torch.ones(2, 2), torch.ones(3, 5), 1)
    with pytest.raises(ValueError, match="chunk_size=0"):
        chunked_topk(torch.ones(2, 2), torch.ones(3, 2), 1, chunk_size=0)
    with pytest.raises(ValueError, match="NaN"):
        topk_lowest_index(torch.tensor([[float("nan"), 1.0]]), 1)
