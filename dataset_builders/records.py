"""Plain records exchanged by the dataset builders: boxes, images with annotations, skipped items."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Box", "Record", "Skipped"]


@dataclass(frozen=True)
class Box:
    """Horizontal box in pixel coordinates (floats) with ``x_min < x_max`` and ``y_min < y_max``.

    ``label`` is the class name as written by the source; B2C normalises it (``normalize_class_name``).
    """

    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def __post_init__(self) -> None:
        coords = (self.x_min, self.y_min, self.x_max, self.y_max)
        if not all(math.isfinite(c) for c in coords):
            raise ValueError(f"Box {self.label!r}: coordinates must be finite, got {coords}")
        if not (self.x_min < self.x_max and self.y_min < self.y_max):
            raise ValueError(
                f"Box {self.label!r}: need x_min < x_max and y_min < y_max, got "
                f"x_min={self.x_min}, y_min={self.y_min}, x_max={self.x_max}, y_max={self.y_max}"
            )

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        return ((self.x_min + self.x_max) / 2.0, (self.y_min + self.y_max) / 2.0)

    def as_dict(self) -> dict[str, float | str]:
        """The box as ``{label, x_min, y_min, x_max, y_max}`` (the corpus ``boxes`` column layout)."""
        return {"label": self.label, "x_min": self.x_min, "y_min": self.y_min, "x_max": self.x_max, "y_max": self.y_max}


@dataclass
class Record:
    """One image of a source with its boxes (detection/M2B sources) or captions (caption sources)."""

    image_path: Path
    width: int
    height: int
    source: str
    boxes: list[Box] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """Anything not turned into a sample, with the reason (and the 1-based line when it came from a text file)."""

    path: str
    reason: str
    line: int | None = None
    source: str = ""
