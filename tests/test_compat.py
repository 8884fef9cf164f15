"""rclip_hf._compat: each hook on a private or version-sensitive behaviour still does what it relies on.

A failure here means an upgrade changed a hooked behaviour: re-check the hook named in the test, then update it
and the version it names.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import datasets
import torch
from transformers import CLIPConfig, CLIPModel
from transformers.models.auto import image_processing_auto

import rclip_hf
from rclip_hf import _compat

CONSTRAINTS = Path(__file__).resolve().parents[1] / "requirements" / "constraints.txt"


def test_checked_versions_are_the_pinned_ones() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", CONSTRAINTS.read_text(), flags=re.MULTILINE))
    assert pins["transformers"] == _compat.TRANSFORMERS_CHECKED, "transformers pin moved: re-check every hook"
    assert pins["datasets"] == _compat.DATASETS_CHECKED, "datasets pin moved: re-check dataset_info_yaml"


def test_prefer_pil_image_processor_hook() -> None:
    hooked = image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS
    assert isinstance(hooked, list) and "RemoteCLIPImageProcessor" in hooked, "prefer_pil_image_processor: list gone"
    _compat.prefer_pil_image_processor("RemoteCLIPImageProcessor")
    assert hooked.count("RemoteCLIPImageProcessor") == 1


def test_tokenizer_encode_hook_sees_every_text(monkeypatch) -> None:
    tokenizer = rclip_hf.build_tokenizer()
    seen: list[object] = []
    original = getattr(type(tokenizer), _compat.TOKENIZER_ENCODE_HOOK)

    def spy(self, text, *args, **kwargs):
        seen.append(text)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), _compat.TOKENIZER_ENCODE_HOOK, spy)
    single = tokenizer("A  Ship")["input_ids"]
    tokenizer(["one", "two"])
    tokenizer.encode("three")
    assert seen == ["A  Ship", ["one", "two"], "three"], "TOKENIZER_ENCODE_HOOK: not every text goes through it"
    assert single == tokenizer("a ship")["input_ids"]  # cleaned (lower case, whitespace) inside the hook
    assert len(tokenizer(" ".join(["ship"] * 200))["input_ids"]) == 77  # and truncated there


def test_bytes_to_unicode_is_the_clip_byte_map() -> None:
    table = _compat.bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256, "bytes_to_unicode: not a byte map"
    assert table[ord("a")] == "a" and table[ord(" ")] == "Ġ" and table[0] == chr(256)
    vocabulary, merges = rclip_hf.processing_remoteclip.clip_bpe_vocabulary()
    assert len(vocabulary) == 49408 and vocabulary["<|endoftext|>"] == 49407 and len(merges) == 48894


def test_projected_features_is_the_projection() -> None:
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1}
    model = CLIPModel(CLIPConfig(text_config=tower, vision_config={**tower, "image_size": 32, "patch_size": 16},
                                 projection_dim=8)).eval()
    with torch.inference_mode():
        features = _compat.projected_features(model.get_image_features(pixel_values=torch.zeros(2, 3, 32, 32)))
        texts = _compat.projected_features(model.get_text_features(input_ids=torch.ones(3, 5, dtype=torch.long)))
    assert features.shape == (2, 8) and texts.shape == (3, 8), "projected_features: not (batch, projection_dim)"


def test_dataset_info_yaml_round_trips() -> None:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    block = _compat.dataset_info_yaml(features)
    assert isinstance(block, dict) and "features" in block, "dataset_info_yaml: no features block"
    assert datasets.DatasetInfo._from_yaml_dict(block).features == features


def test_defaults_help_formatter() -> None:
    parser = argparse.ArgumentParser(formatter_class=_compat.DefaultsHelpFormatter)
    parser.add_argument("--size", type=int, default=3, help="side")
    parser.add_argument("--name", required=True, help="who")
    parser.add_argument("--device", default=None, help="device")
    text = " ".join(parser.format_help().split())
    assert "side (default: 3)" in text and "who (default" not in text and "device (default" not in text


def test_lazy_datasets_hooks() -> None:
    from rclip_hf._compat import get_parquet_column_options, known_task_ids

    assert "image-classification" in known_task_ids and "zero-shot-image-classification" in known_task_ids
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    options = get_parquet_column_options(features, features.arrow_schema)
    assert isinstance(options, dict), "get_parquet_column_options: no longer a dict of Parquet writer options"
