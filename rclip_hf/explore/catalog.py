"""The scenes of an index as `rclip-hf explore` shows them, each addressed by an id made from its path.

An index's items are windows of scenes (`rclip-hf index --window`) or whole images; either way every item names
its scene (`path`, a file or a dataset row). A scene's id is a digest of that name, so the app never takes a path
from a request: it looks the id up here. Georeferenced scenes are shown in web-mercator, the others in pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..inference import EmbeddingIndex
from ..inference.index import BBOX_COLUMNS
from ..inference.windows import parse_dataset_row


@dataclass
class SceneInfo:
    """One scene of the index: its id, name and file, CRS (None: pixel space), size from its windows' extents, the
    longitude/latitude bounds of its windows, and the index positions of its windows."""

    id: str
    path: str
    name: str
    crs: str | None
    width: int | None
    height: int | None
    bounds: list[float] | None
    positions: np.ndarray = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "space": "pixel" if self.crs is None else "lonlat",
                "crs": self.crs, "width": self.width, "height": self.height, "bounds": self.bounds,
                "windows": len(self.positions)}


def scene_id(path: str) -> str:
    """The id of the scene named `path` in the index (16 hex digits of its BLAKE2b)."""
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def scene_name(path: str) -> str:
    """A short display name: a file's name, or `<dataset folder> row N` for a dataset row."""
    row = parse_dataset_row(path)
    if row is not None:
        return f"{Path(row[0]).name} row {row[3]}"
    return Path(path).name


class SceneCatalog:
    """The scenes of an index and, for every item, its position, scene and pixel window, kept as arrays (a few
    bytes per item); id -> position is the index's own `positions_of()`, which its search reads too."""

    def __init__(self, index: EmbeddingIndex):
        self.position_of: Mapping[str, int] = index.positions_of()
        names = index.column_names
        if "left" in names:
            columns = [index.arrow_column(name) for name in ("left", "top", "width", "height")]
            self.windowed = len(index) > 0 and columns[0][0].is_valid
            self.boxes = np.stack([column.fill_null(-1).to_numpy() for column in columns],
                                  axis=1).astype(np.int32)
        else:
            self.windowed, self.boxes = False, np.full((len(index), 4), -1, dtype=np.int32)
        encoded = index.arrow_column("path").combine_chunks().dictionary_encode()
        paths = np.array(encoded.dictionary.to_pylist(), dtype=object)
        rank = np.empty(len(paths), dtype=np.int32)
        rank[np.argsort(paths)] = np.arange(len(paths))  # scenes in the order of their names
        self.scene_of = rank[encoded.indices.to_numpy(zero_copy_only=False)]  # (N,) scene number of each item
        self.scenes: dict[str, SceneInfo] = {}
        self._numbers: list[str] = []
        order = np.argsort(self.scene_of, kind="stable")
        starts = np.searchsorted(self.scene_of[order], np.arange(len(paths) + 1))
        scene_positions = [order[starts[number]:starts[number + 1]] for number in range(len(paths))]
        bounds: list[list[float] | None] = [None] * len(paths)
        if "xmin" in names:  # each scene's [min xmin, min ymin, max xmax, max ymax] (NaN: not georeferenced)
            xmin, ymin, xmax, ymax = (index.arrow_column(name).to_numpy(zero_copy_only=False)
                                      for name in BBOX_COLUMNS)
            bounds = [None if np.isnan(xmin[positions]).all() else
                      [float(np.nanmin(xmin[positions])), float(np.nanmin(ymin[positions])),
                       float(np.nanmax(xmax[positions])), float(np.nanmax(ymax[positions]))]
                      for positions in scene_positions]
        georeferenced = [int(positions[0]) for positions, box in zip(scene_positions, bounds) if box]
        crs = {position: item.get("crs") for position, item in zip(georeferenced, index.items(georeferenced))}
        for path, positions, box in zip(sorted(paths), scene_positions, bounds):
            boxes = self.boxes[positions]
            size = (int((boxes[:, 0] + boxes[:, 2]).max()), int((boxes[:, 1] + boxes[:, 3]).max())) \
                if self.windowed else (None, None)
            info = SceneInfo(scene_id(path), path, scene_name(path), crs[int(positions[0])] if box else None,
                             *size, bounds=box, positions=positions)
            self.scenes[info.id] = info
            self._numbers.append(info.id)

    def scene_of_position(self, position: int) -> SceneInfo:
        return self.scenes[self._numbers[self.scene_of[position]]]

    def window(self, position: int) -> list[int] | None:
        """[left, top, width, height] of the item at `position`; None for a whole image."""
        return self.boxes[position].tolist() if self.windowed else None


__all__ = ["SceneCatalog", "SceneInfo", "scene_id", "scene_name"]
