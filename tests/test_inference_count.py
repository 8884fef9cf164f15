"""Tests of RemoteCount-style counting: ten captions, argmax, distribution equal to the raw logits' softmax."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from rclip_hf.inference import count

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, tiny_model


@pytest.mark.parametrize("style", ["words", "digits"])
def test_count_is_the_argmax_of_the_ten_captions(tiny_model, shared_data: Path, style: str) -> None:
    model, processor = tiny_model
    path = shared_data / "dota" / "images" / "P1888.png"
    result = count(path, "storage tank", model=model, processor=processor, style=style)
    number = "three" if style == "words" else "3"
    assert result.captions[0] == f"There is {'one' if style == 'words' else '1'} storage tank in the image."
    assert result.captions[2] == f"There are {number} storage tanks in the image."
    inputs = processor(text=result.captions, images=[Image.open(path).convert("RGB")], return_tensors="pt",
                       padding=True)
    with torch.no_grad():
        expected = model(**inputs).logits_per_image.softmax(dim=-1)[0]  # (10,)
    torch.testing.assert_close(torch.tensor(result.probabilities), expected, atol=1e-5, rtol=1e-5)
    assert result.count == int(expected.argmax()) + 1
    assert list(result.as_dict()["distribution"]) == list(range(1, 11))


def test_count_rejects_an_empty_object_name(tiny_model, shared_data: Path) -> None:
    model, processor = tiny_model
    with pytest.raises(ValueError, match="object_name must be a non-empty name"):
        count(shared_data / "dota" / "images" / "P1888.png", " ", model=model, processor=processor)
