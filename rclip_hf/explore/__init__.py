"""`rclip-hf explore`: find things in imagery on a map in a local web app — query by text, image or labelled examples,
label windows, train a classifier, review its detections, export them (needs the `explore` extra: fastapi, uvicorn,
python-multipart, rio-tiler, scikit-learn)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # imported on use, so `rclip-hf` lists the command without the extra installed
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
