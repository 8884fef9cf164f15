"""Id -> position of every item of an index, kept as arrays: the ids as one Arrow string array and the positions
sorted by the ids' hashes (about 16 bytes an item beside the ids themselves, where a dict of Python strings takes
about 150: 1.5 GB at 10M items, benchmarks/search_scale.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

#: Ids hashed at a time while building (bounds the Python strings alive at once).
HASH_BATCH = 1 << 20


class IdPositions(Mapping[str, int]):
    """Read-only mapping id -> position (0-based, in the index's order) over `ids` (a pyarrow string array or
    chunked array, one id per position, unique). Lookups are exact: equal hashes are told apart by the ids."""

    def __init__(self, ids: Any):
        self._ids = ids.combine_chunks() if hasattr(ids, "combine_chunks") else ids  # (N,) strings
        hashes = np.empty(len(self._ids), dtype=np.int64)
        for start in range(0, len(self._ids), HASH_BATCH):
            batch = self._ids.slice(start, HASH_BATCH).to_pylist()
            hashes[start : start + len(batch)] = np.fromiter(map(hash, batch), dtype=np.int64, count=len(batch))
        self._order = np.argsort(hashes, kind="stable")  # (N,) positions, by hash
        self._hashes = hashes[self._order]  # (N,) sorted

    def position(self, item_id: str) -> int | None:
        """The position of `item_id`, or None when the index has no such item."""
        if not isinstance(item_id, str):
            return None
        wanted = hash(item_id)
        at = int(np.searchsorted(self._hashes, wanted))
        while at < len(self._hashes) and self._hashes[at] == wanted:
            position = int(self._order[at])
            if self._ids[position].as_py() == item_id:
                return position
            at += 1
        return None

    def __getitem__(self, item_id: str) -> int:
        position = self.position(item_id)
        if position is None:
            raise KeyError(item_id)
        return position

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self.position(item_id) is not None

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self._ids), HASH_BATCH):
            yield from self._ids.slice(start, HASH_BATCH).to_pylist()


__all__ = ["HASH_BATCH", "IdPositions"]
