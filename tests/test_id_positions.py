"""`IdPositions`, the index's id -> position mapping kept as arrays: equal to a dict, exact when hashes collide."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from rclip_hf.inference import positions
from rclip_hf.inference.positions import IdPositions


def test_equal_to_a_dict_across_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(positions, "HASH_BATCH", 7)  # several batches
    rng = random.Random(0)
    ids = [f"scene-{rng.randrange(10**9)}.tif@{i}" for i in range(1000)]
    mapping = IdPositions(pa.chunked_array([ids[:300], ids[300:]]))
    assert dict(mapping) == {item_id: position for position, item_id in enumerate(ids)}
    assert len(mapping) == 1000 and list(mapping) == ids
    assert "scene-x.tif@0" not in mapping and mapping.get("scene-x.tif@0") is None and 3 not in mapping


def test_colliding_hashes_are_told_apart_by_the_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(positions, "hash", len, raising=False)  # "a", "c", "e" share a hash, and "bb", "dd"
    mapping = IdPositions(pa.array(["a", "bb", "c", "dd", "e"]))
    assert [mapping[item_id] for item_id in ["a", "bb", "c", "dd", "e"]] == [0, 1, 2, 3, 4]
    assert "f" not in mapping and "zz" not in mapping
    with pytest.raises(KeyError):
        mapping["f"]
