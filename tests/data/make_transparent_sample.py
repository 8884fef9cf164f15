"""Writes tests/data/transparent/P1888_rotated.png: a real remote-sensing image with real transparent pixels.

The pixels are a 160 x 160 crop of DOTA v1.0 image P1888 (../shared/data/dota/images/P1888.png, research use; the
crop at left 260, top 160 shows school buses in a parking lot) turned by 17 degrees, as a scene reprojected onto a
north-up grid: the corners outside the original footprint are transparent (alpha 0, colour black, GDAL's nodata
collar), and the footprint's edges are anti-aliased (alpha between 0 and 255: the share of each pixel the footprint
covers, from a 4x supersampled mask). Run from the repository root:
``.venv/bin/python tests/data/make_transparent_sample.py`` (the same bytes each time).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT.parents[1].parent / "shared" / "data" / "dota" / "images" / "P1888.png"
BOX = (260, 160, 420, 320)
ANGLE = 17
SUPERSAMPLE = 4


def transparent_sample(source: Path = SOURCE) -> Image.Image:
    """The RGBA sample: the rotated crop (bicubic) with its footprint as alpha."""
    crop = Image.open(source).convert("RGB").crop(BOX)
    rotated = crop.rotate(ANGLE, resample=Image.Resampling.BICUBIC, expand=True)
    footprint = Image.new("L", (crop.width * SUPERSAMPLE, crop.height * SUPERSAMPLE), 255)
    alpha = footprint.rotate(ANGLE, expand=True).resize(rotated.size, Image.Resampling.BOX)
    rotated.putalpha(alpha)
    return rotated


if __name__ == "__main__":
    path = ROOT / "transparent" / "P1888_rotated.png"
    path.parent.mkdir(exist_ok=True)
    transparent_sample().save(path, optimize=True)
    print(path, path.stat().st_size, "bytes")
