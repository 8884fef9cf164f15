"""The scenes of an index as `rclip-hf explore` shows them, each addressed by an id made from its path.

An index's items are windows of scenes (`rclip-hf index --window`) or whole images; either way every item names
its scene (`path`, a file or a dataset row). A scene's id is a digest of that name, so the app never takes a path
from a request: it looks the id up here. Georeferenced scenes are shown in web-mercator, the others in pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..inference import EmbeddingIndex
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
    """The scenes of an index and, for every item, its position, scene and pixel window (read once, kept as arrays)."""

    def __init__(self, index: EmbeddingIndex):
        self.ids: list[str] = index.ids()
        self.position_of: dict[str, int] = {item_id: position for position, item_id in enumerate(self.ids)}
        paths = index.column("path")
        columns = {name: index.column(name) for name in ("left", "top", "width", "height")}
        self.windowed = bool(paths) and columns["left"][0] is not None
        self.boxes = np.array([[-1 if value is None else value for value in values]
                               for values in zip(*columns.values())], dtype=np.int64).reshape(-1, 4)
        crs = index.column("crs")
        bboxes = index.column("bbox")
        names, codes = np.unique(np.array(paths, dtype=object), return_inverse=True)
        self.scene_of = codes  # (N,) scene number of each item
        self.scenes: dict[str, SceneInfo] = {}
        self._numbers: list[str] = []
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(len(names) + 1))
        for number, path in enumerate(names):
            positions = order[starts[number]:starts[number + 1]]
            first = int(positions[0])
            boxes = self.boxes[positions]
            size = (int((boxes[:, 0] + boxes[:, 2]).max()), int((boxes[:, 1] + boxes[:, 3]).max())) \
                if self.windowed else (None, None)
            known = [bboxes[p] for p in positions if bboxes[p] is not None]
            bounds = None if not known else [min(b["xmin"] for b in known), min(b["ymin"] for b in known),
                                             max(b["xmax"] for b in known), max(b["ymax"] for b in known)]
            info = SceneInfo(scene_id(path), path, scene_name(path), crs[first] if bounds else None, *size,
                             bounds=bounds, positions=positions)
            self.scenes[info.id] = info
            self._numbers.append(info.id)

    def scene_of_position(self, position: int) -> SceneInfo:
        return self.scenes[self._numbers[self.scene_of[position]]]

    def window(self, position: int) -> list[int] | None:
        """[left, top, width, height] of the item at `position`; None for a whole image."""
        return self.boxes[position].tolist() if self.windowed else None


__all__ = ["SceneCatalog", "SceneInfo", "scene_id", "scene_name"]
