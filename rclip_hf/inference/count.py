"""Object counting by the RemoteCount protocol: score ten captions (one ... ten objects), take the argmax."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from transformers import CLIPModel, ProcessorMixin

from ..embeddings import class_embeddings, encode_images
from ..images import as_rgb_image
from ..loading import resolve_model
from ..prompts import COUNT_WORDS, counting_prompt
from .classify import ImageInput, score_images


@dataclass
class CountResult:
    """Predicted count (1..10), the softmax over the ten captions (index i = count i + 1) and the captions."""

    count: int
    probabilities: list[float]
    captions: list[str]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form: count, {count: probability} distribution, captions."""
        distribution = {number: probability for number, probability in enumerate(self.probabilities, start=1)}
        return {"count": self.count, "distribution": distribution, "captions": self.captions}


def count(
    image: ImageInput,
    object_name: str,
    *,
    model: CLIPModel | str | Path,
    processor: ProcessorMixin | None = None,
    style: Literal["words", "digits"] = "words",
    bands: Sequence[int] | None = None,
) -> CountResult:
    """How many `object_name`s the image shows, from 1 to 10 (RemoteCount protocol).

    The ten captions are `counting_prompt(object_name, n, style)` for n = 1..10 ("There are three ships in
    the image."; `style="digits"` writes "1" ... "10"). Each caption is scored against the image as in
    `classify` (one caption per class, no template); the count is the argmax. `bands` picks the bands of a
    (Geo)TIFF file, as `load_image` does.
    """
    if not object_name or not object_name.strip():
        raise ValueError(f"count: object_name must be a non-empty name such as 'ship', got {object_name!r}")
    captions = [counting_prompt(object_name, number, style=style) for number in range(1, len(COUNT_WORDS) + 1)]
    model, processor = resolve_model(model, processor)
    caption_embeds = class_embeddings(model, processor, captions, ("{}",))  # (10, D)
    image_embeds = encode_images(model, processor, [as_rgb_image(image, bands)], batch_size=1, show_progress=False)  # (1, D)
    probabilities = score_images(model, image_embeds, caption_embeds).softmax(dim=-1)[0].cpu()  # (10,)
    return CountResult(count=int(probabilities.argmax()) + 1, probabilities=probabilities.tolist(), captions=captions)


__all__ = ["CountResult", "count"]
