"""How the source readers store images: decoded by `rclip_hf.images` (the package's one conversion rule, so the
corpus has the pixels inference sees), kept as the original bytes when already 8-bit RGB JPEG/PNG, else as PNG."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from rclip_hf.images import ImageReadError, RasterSource


@dataclass
class PixelLimitConfig:
    """The builders' ``--max-pixels``: the largest image read whole (larger ones are skipped and recorded)."""

    max_pixels: int | None = field(default=None, metadata={
        "help": "largest image read whole, in pixels (default: Pillow's limit, 89,478,485); larger ones are "
                "skipped and recorded in the build report"})


#: formats whose original bytes are stored unchanged in the corpus when the image is 8-bit RGB
PASSTHROUGH_FORMATS = ("JPEG", "PNG")


@dataclass
class DecodedImage:
    """A decoded image as 8-bit RGB, with whether the original file bytes can be stored unchanged."""

    image: Image.Image
    passthrough: bool
    converted_from: str  # "" when stored as is, else what was converted (e.g. "RGBA", "TIFF", "5-band uint16")


@functools.lru_cache(maxsize=2)
def decoded_whole(path: Path, decode: Callable[[Path], Any]) -> Any:
    """``decode(path)``, kept for the next calls: the windows of one large tile (and of its mask), taken one
    after the other, decode it once. ``decoded_whole.cache_clear()`` frees it."""
    return decode(path)


def _decode_for_windows(path: Path) -> DecodedImage:
    """The whole tile a reader cuts into windows: over the pixel limit too (the corpus keeps only windows)."""
    return decode_rgb(path, windowed=True)


def decode_rgb(path: Path, window: tuple[int, int, int, int] | None = None, windowed: bool = False) -> DecodedImage:
    """Fully decode an image file (or the ``window`` (x0, y0, x1, y1) of it, stored as PNG) as 8-bit RGB; raises
    ImageReadError naming the file when it cannot."""
    if window is not None:
        whole: DecodedImage = decoded_whole(path, _decode_for_windows)
        width, height = whole.image.size
        if window[2] > width or window[3] > height:
            raise ImageReadError(f"{path}: window {window} is outside the {width}x{height} image")
        source = whole.converted_from or whole.image.format or "image"
        return DecodedImage(whole.image.crop(window), passthrough=False,
                            converted_from=f"{source} window {','.join(map(str, window))}")
    with RasterSource(path, windowed=windowed) as source:
        image = source.read()
    passthrough = not source.converted_from and source.format in PASSTHROUGH_FORMATS
    return DecodedImage(image, passthrough=passthrough,
                        converted_from="" if passthrough else source.converted_from or source.format)


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG bytes of an image (used for converted images)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_cell(path: Path, name: str) -> dict[str, bytes | str]:
    """An ``Image()`` feature value for a file: its original bytes when 8-bit RGB JPEG/PNG, else converted PNG."""
    decoded = decode_rgb(path)
    data = path.read_bytes() if decoded.passthrough else encode_png(decoded.image)
    return {"bytes": data, "path": name}
