"""Tests of zero-shot classification, model loading and the transformers pipeline on a converted model."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import pipeline

from rclip_hf import RemoteCLIPProcessor
from rclip_hf.convert import main as convert_main
from rclip_hf.inference import NotACLIPModelError, UnknownPresetError, classify, load_model, model_fingerprint
from rclip_hf.prompts import BENCHMARK_PRESETS, REMOTE_SENSING_TEMPLATES

embeddings_module = importlib.import_module("rclip_hf.embeddings")
from rclip_hf.embeddings import class_embedding_cache

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, other_model_dir, tiny_model

LABELS = ["airport", "grass land", "parking lot", "a cute cat"]
TEMPLATE = "a satellite photo of {}."


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[Image.Image]:
    paths = [shared_data / "remoteclip" / "airport.jpg", shared_data / "rsscn7" / "aGrass" / "a001.jpg",
             shared_data / "rsscn7" / "gParking" / "g001.jpg"]
    return [Image.open(path).convert("RGB") for path in paths]


def _raw_probabilities(model, processor, images, prompts) -> torch.Tensor:
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**inputs).logits_per_image.softmax(dim=-1)  # (N, C)


def test_ranking_and_probabilities_match_raw_logits(tiny_model, images) -> None:
    model, processor = tiny_model
    ranked = classify(images, LABELS, TEMPLATE, model=model, processor=processor)
    expected = _raw_probabilities(model, processor, images, [TEMPLATE.format(label) for label in LABELS])
    assert len(ranked) == len(images) and all(len(hits) == len(LABELS) for hits in ranked)
    for hits, row in zip(ranked, expected):
        assert [hit["label"] for hit in hits] == [LABELS[i] for i in row.argsort(descending=True).tolist()]
        torch.testing.assert_close(torch.tensor([hit["score"] for hit in hits]), row.sort(descending=True).values,
                                   atol=1e-5, rtol=1e-5)
        assert abs(sum(hit["score"] for hit in hits) - 1.0) < 1e-5


def test_single_image_path_and_top_k(tiny_model, shared_data: Path) -> None:
    model, processor = tiny_model
    path = shared_data / "remoteclip" / "airport.jpg"
    top2 = classify(path, LABELS, model=model, processor=processor, top_k=2)
    full = classify(str(path), LABELS, model=model, processor=processor)
    assert isinstance(top2[0], dict) and top2 == full[:2]
    with pytest.raises(ValueError, match=r"top_k=5 must be in \[1, 4\]"):
        classify(path, LABELS, model=model, processor=processor, top_k=5)


def test_preset_uses_its_class_names_and_template_sets(tiny_model, images) -> None:
    model, processor = tiny_model
    names, templates = BENCHMARK_PRESETS["rsscn7"]
    ranked = classify(images[:1], "rsscn7", model=model, processor=processor)[0]
    assert sorted(hit["label"] for hit in ranked) == sorted(names)
    by_labels = classify(images[:1], list(names), list(templates), model=model, processor=processor)[0]
    assert ranked == by_labels
    ensemble = classify(images[:1], "rsscn7", "ensemble", model=model, processor=processor)[0]
    explicit = classify(images[:1], list(names), list(REMOTE_SENSING_TEMPLATES), model=model, processor=processor)[0]
    assert ensemble == explicit and ensemble != ranked


def test_class_embeddings_are_cached_per_model_labels_and_templates(tiny_model, other_model_dir, images,
                                                                    monkeypatch) -> None:
    model, processor = tiny_model
    calls = []
    original = embeddings_module.zero_shot_classifier

    def counting(*args, **kwargs):
        calls.append(tuple(args[2]))
        return original(*args, **kwargs)

    monkeypatch.setattr(embeddings_module, "zero_shot_classifier", counting)
    class_embedding_cache.clear()
    first = classify(images[:1], LABELS, model=model, processor=processor)
    assert classify(images[:1], LABELS, model=model, processor=processor) == first
    assert calls == [tuple(LABELS)]
    classify(images[:1], LABELS[:2], model=model, processor=processor)
    other, other_processor = load_model(other_model_dir)
    classify(images[:1], LABELS, model=other, processor=other_processor)
    assert calls == [tuple(LABELS), tuple(LABELS[:2]), tuple(LABELS)] and len(class_embedding_cache) == 3


def test_pipeline_output_equals_classify(tiny_model_dir: Path, shared_data: Path) -> None:
    path = shared_data / "remoteclip" / "airport.jpg"
    # The folder is plain CLIP (Hub-native): give the pipeline open_clip's exact transform, as classify uses.
    image_processor = RemoteCLIPProcessor.from_pretrained(tiny_model_dir).image_processor
    classifier = pipeline("zero-shot-image-classification", model=str(tiny_model_dir), image_processor=image_processor)
    from_pipeline = classifier(str(path), candidate_labels=LABELS, hypothesis_template=TEMPLATE)
    ours = classify(path, LABELS, TEMPLATE, model=tiny_model_dir)
    assert [hit["label"] for hit in from_pipeline] == [hit["label"] for hit in ours]
    torch.testing.assert_close(torch.tensor([hit["score"] for hit in from_pipeline]),
                               torch.tensor([hit["score"] for hit in ours]), atol=1e-5, rtol=1e-5)


def test_bad_labels_presets_and_templates(tiny_model, images) -> None:
    model, processor = tiny_model
    with pytest.raises(UnknownPresetError, match="unknown preset 'nope'; choose one of .*eurosat"):
        classify(images[:1], "nope", model=model, processor=processor)
    with pytest.raises(ValueError, match="template 'a photo' has no '{}' placeholder"):
        classify(images[:1], LABELS, "a photo", model=model, processor=processor)
    with pytest.raises(ValueError, match="labels must be distinct"):
        classify(images[:1], ["a", "a"], model=model, processor=processor)
    with pytest.raises(ValueError, match="no images given"):
        classify([], LABELS, model=model, processor=processor)


def test_load_model_rejects_what_is_not_a_clip_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model folder not found: .*nowhere"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotACLIPModelError, match="has no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(NotACLIPModelError, match="model of type 'bert', not a RemoteCLIP/CLIP model"):
        load_model(tmp_path / "bert")
    with pytest.raises(NotACLIPModelError, match="is a file, not a model folder"):
        load_model(tiny_model_dir / "config.json")


def test_fingerprint_ignores_dtype_but_not_weights(tiny_model_dir: Path, tiny_model) -> None:
    model, _ = tiny_model
    bf16, _ = load_model(tiny_model_dir, dtype=torch.bfloat16)
    assert model_fingerprint(bf16) == model_fingerprint(model)
    changed, _ = load_model(tiny_model_dir)
    with torch.no_grad():
        changed.text_projection.weight[0, 0] += 1.0
    assert model_fingerprint(changed) != model_fingerprint(model)


@pytest.mark.slow
def test_full_size_vit_b_32_converted_with_the_cli_matches_open_clip(tmp_path: Path, shared_data: Path) -> None:
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    reference, _, transform = open_clip.create_model_and_transforms("ViT-B-32-quickgelu", pretrained=None)
    reference.eval()
    checkpoint = tmp_path / "vit-b-32.pt"
    torch.save(reference.state_dict(), checkpoint)
    output = tmp_path / "converted"
    assert convert_main(["--checkpoint", str(checkpoint), "--arch", "ViT-B-32", "--output", str(output)]) == 0
    checkpoint.unlink()
    image_path = shutil.copy(shared_data / "remoteclip" / "airport.jpg", tmp_path / "airport.jpg")
    ours = classify(image_path, LABELS, TEMPLATE, model=output)
    with torch.no_grad():
        image = reference.encode_image(transform(Image.open(image_path)).unsqueeze(0), normalize=True)
        texts = reference.encode_text(open_clip.tokenize([TEMPLATE.format(label) for label in LABELS]), normalize=True)
        expected = (reference.logit_scale.exp() * image @ texts.T).softmax(dim=-1)[0]
    assert [hit["label"] for hit in ours] == [LABELS[i] for i in expected.argsort(descending=True).tolist()]
    torch.testing.assert_close(torch.tensor([hit["score"] for hit in ours]), expected.sort(descending=True).values,
                               atol=1e-4, rtol=1e-4)
