"""`rclip-hf count`: how many of an object each image shows (1-10), by the RemoteCount protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .options import BANDS_HELP, ModelOptions, expand_images, flag_help, load_model_for, parse_options
from .output import emit

HELP = "count objects (1-10) with the RemoteCount protocol"


@dataclass(kw_only=True)
class CountOptions(ModelOptions):
    """Options of `rclip-hf count`."""

    image: list[str] = field(metadata=flag_help("Image files", nargs="+"))
    object: str = field(metadata=flag_help("Object name, e.g. ship, plane, storage tank"))
    style: Literal["words", "digits"] = field(default="words", metadata=flag_help(
        "Numbers in the captions: one / 1"))
    bands: str | None = field(default=None, metadata=flag_help(BANDS_HELP))


def run_count(argv: list[str]) -> int:
    """`rclip-hf count`: predicted count and the probability of each count, per image."""
    from ..inference.count import count
    from ..inference.windows import parse_bands

    options = parse_options(CountOptions, argv, prog="rclip-hf count", description=HELP)
    bands = parse_bands(options.bands)
    images = expand_images(options.image)
    model, processor = load_model_for(options)
    results = [count(image, options.object, model=model, processor=processor, style=options.style, bands=bands)
               for image in images]
    rows = [{"image": str(image), "count": number, "probability": probability, "predicted": number == result.count,
             "caption": caption}
            for image, result in zip(images, results)
            for number, (probability, caption) in enumerate(zip(result.probabilities, result.captions), start=1)]
    document = [{"image": str(image), "object": options.object, **result.as_dict()}
                for image, result in zip(images, results)]
    emit(rows, options.format, document=document)
    return 0
