"""The processor against open_clip: identical token ids and pixel values on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rclip_hf
from rclip_hf.processing_remoteclip import CONTEXT_LENGTH, clean_caption, open_clip_rgb

open_clip = pytest.importorskip("open_clip")

CAPTIONS_FILE = Path(__file__).parent / "data" / "rs_captions.txt"


@pytest.fixture(scope="module")
def processor() -> rclip_hf.RemoteCLIPProcessor:
    return rclip_hf.build_processor()


@pytest.fixture(scope="module")
def open_clip_preprocess():
    """open_clip's eval transform of the QuickGELU models (all three paper backbones share it)."""
    return open_clip.create_model_and_transforms("ViT-B-32-quickgelu", pretrained=None)[2]


@pytest.fixture(scope="module")
def real_captions(shared_data: Path) -> list[str]:
    """Hand-written remote-sensing captions plus prompts built from the real datasets' class names."""
    captions = CAPTIONS_FILE.read_text(encoding="utf-8").split("\n")
    captions = [caption for caption in captions if caption.strip()]
    class_names = sorted(p.name for root in ("aid150", "rsscn7") for p in (shared_data / root).iterdir() if p.is_dir())
    dota_labels = {line.split()[8] for path in (shared_data / "dota" / "labelTxt").glob("*.txt")
                   for line in path.read_text().splitlines() if len(line.split()) >= 10}
    class_names += sorted(dota_labels)
    captions += [f"a satellite photo of {name}." for name in class_names]
    captions += [f"There are {index % 12 + 1} {name}s in the image." for index, name in enumerate(class_names)]
    return captions


def test_token_ids_identical_to_open_clip(processor, real_captions):
    assert len(real_captions) >= 100
    expected = open_clip.tokenize(real_captions)  # (N, 77), zero padded
    encoded = processor(text=real_captions, return_tensors="pt", padding="max_length")
    ids = torch.where(encoded.attention_mask.bool(), encoded.input_ids, torch.zeros_like(encoded.input_ids))
    mismatched = [caption for caption, a, b in zip(real_captions, ids, expected) if not torch.equal(a, b)]
    assert mismatched == []


def test_long_captions_truncated_at_77_with_end_token(processor, real_captions):
    long_captions = [caption for caption in real_captions if len(caption.split()) > 80]
    assert long_captions, "the caption file must hold captions longer than the context"
    encoded = processor(text=long_captions, return_tensors="pt", padding=True)
    assert encoded.input_ids.shape == (len(long_captions), CONTEXT_LENGTH)
    assert (encoded.input_ids[:, 0] == 49406).all() and (encoded.input_ids[:, -1] == 49407).all()


def test_padding_to_longest_uses_end_token_and_mask(processor):
    encoded = processor(text=["a ship", "two large storage tanks near a harbor"], return_tensors="pt", padding=True)
    assert encoded.input_ids.shape[1] == 9  # start + 7 words + end
    first = encoded.input_ids[0]
    assert first[:4].tolist() == [49406, *processor.tokenizer("a ship", add_special_tokens=False).input_ids, 49407]
    assert encoded.attention_mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_cleaning_matches_open_clip_rules():
    assert clean_caption("  Cars &amp;amp; “Trucks”\t ON  a Road ") == 'cars & "trucks" on a road'


@pytest.mark.parametrize("relative", [
    "remoteclip/airport.jpg",            # the authors' demo image
    "rsscn7/aGrass",                      # 400x400 JPEG
    "neon_trees/OSBS_029.png",           # non-square large PNG
    "dota_split",                         # RGBA PNG patch, 285x294
    "dior/JPEGImages/00001.jpg",
])
def test_pixel_values_identical_to_open_clip(processor, open_clip_preprocess, shared_data, relative):
    path = shared_data / relative
    if path.is_dir():
        path = min(p for p in path.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    with Image.open(path) as image:
        expected = open_clip_preprocess(image).unsqueeze(0)
        actual = processor(images=image, return_tensors="pt").pixel_values
    assert actual.shape == (1, 3, 224, 224)
    # Same PIL bicubic resize, same crop offsets, same float arithmetic: identical up to float32 rounding
    # of the normalisation ((x / 255 - mean) / std vs (x - mean) / std on [0, 1] tensors).
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_processor_round_trip(processor, tmp_path):
    """Saved alone (no remote-code config.json beside it), the files name plain CLIP classes; RemoteCLIPProcessor
    reloads them as its own classes, with identical outputs."""
    from transformers import AutoProcessor, CLIPProcessor

    processor.save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is CLIPProcessor
    reloaded = rclip_hf.RemoteCLIPProcessor.from_pretrained(tmp_path)
    assert isinstance(reloaded.image_processor, rclip_hf.RemoteCLIPImageProcessor)
    assert isinstance(reloaded.tokenizer, rclip_hf.RemoteCLIPTokenizer)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8))
    texts = ["Cars &amp; trucks", "a harbor"]
    before = processor(text=texts, images=[image], return_tensors="pt", padding=True)
    after = reloaded(text=texts, images=[image], return_tensors="pt", padding=True)
    for key in ("input_ids", "attention_mask", "pixel_values"):
        assert torch.equal(before[key], after[key]), key


def _mode_images() -> dict[str, Image.Image]:
    """Seeded 301x257 images in every PIL mode whose conversion to RGB is not a plain copy."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (301, 257, 3), dtype=np.uint8)
    alpha = np.tile(np.linspace(0, 255, 257).astype(np.uint8), (301, 1))  # fully transparent to opaque
    alpha[:40] = rng.integers(0, 256, (40, 257), dtype=np.uint8)  # and some noisy alpha
    rgba = Image.fromarray(np.dstack([rgb, alpha]))
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 3
    # log-uniform over 1..65535 with a 0 and a 65535: spans the 16-bit range, and half of it lies in 0..255, which
    # RGB keeps (the rest clips)
    grey16 = np.exp(rng.uniform(0, np.log(65535), (301, 257))).round().astype(np.uint16)
    grey16.flat[:2] = 0, 65535
    grey16 = Image.fromarray(grey16)
    return {"RGBA": rgba, "LA": rgba.convert("LA"), "P+transparency": palette, "CMYK": Image.fromarray(rgb).convert("CMYK"),
            "I;16": grey16.convert("I;16") if grey16.mode != "I;16" else grey16, "L": Image.fromarray(rgb).convert("L"),
            "1": Image.fromarray(rgb).convert("1"), "RGBA-small": rgba.resize((100, 150))}


def test_sixteen_bit_image_spans_its_range_and_rgbs():
    """The I;16 image exercises both: 16-bit values up to 65535 and a converted image with every 8-bit level."""
    grey16 = _mode_images()["I;16"]
    values, converted = np.asarray(grey16), np.asarray(grey16.convert("RGB"))[..., 0]
    assert grey16.mode == "I;16" and values.min() == 0 and values.max() == 65535
    assert 0.4 < (values <= 255).mean() < 0.6 and len(np.unique(converted)) == 256


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_pixel_values_equal_open_clip_in_every_mode(processor, open_clip_preprocess, mode):
    """Alpha is dropped after the resize, as open_clip does, not composited on white (3.2 apart before)."""
    image = _mode_images()[mode]
    expected = open_clip_preprocess(image).unsqueeze(0)
    actual = processor(images=image, return_tensors="pt").pixel_values
    assert actual.shape == (1, 3, 224, 224)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_open_clip_rgb_resizes_and_crops_before_dropping_alpha():
    image = _mode_images()["RGBA"]
    converted = open_clip_rgb(image, shortest_edge=64, crop_size=(64, 48))
    assert (converted.mode, converted.size) == ("RGB", (48, 64))
    resized = image.resize((64, 74), resample=Image.Resampling.BICUBIC)  # 301x257 -> shorter side 64, 74 floored
    top, left = round((74 - 64) / 2), round((64 - 48) / 2)
    expected = resized.crop((left, top, left + 48, top + 64)).convert("RGB")
    assert np.array_equal(np.asarray(converted), np.asarray(expected))
    assert open_clip_rgb(image).size == image.size


def test_image_size_of_processor_follows_the_model():
    pixel_values = rclip_hf.build_processor(image_size=64)(
        images=Image.new("RGB", (100, 80)), return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 64, 64)
