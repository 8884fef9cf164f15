"""Zero-shot: classification metrics vs scikit-learn, template ensembling, presets, oracle and chance level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, top_k_accuracy_score

import rclip_hf
from rclip_hf.benchmark_registry import BENCHMARKS
from rclip_hf.embeddings import encode_texts, zero_shot_classifier
from rclip_hf.evaluation import classification_metrics, zero_shot_metrics
from rclip_hf.prompts import (
    BENCHMARK_PRESETS,
    PAPER_TEMPLATE,
    REMOTE_SENSING_TEMPLATES,
    class_names_for,
    clean_class_name,
    templates_for,
)


def test_equals_sklearn_on_same_logits() -> None:
    generator = np.random.default_rng(0)
    logits = generator.normal(size=(500, 12))
    labels = generator.integers(0, 12, size=500)
    metrics = classification_metrics(logits, labels)
    assert metrics["top1"] == pytest.approx(100 * accuracy_score(labels, logits.argmax(1)), abs=1e-9)
    assert metrics["top5"] == pytest.approx(
        100 * top_k_accuracy_score(labels, logits, k=5, labels=range(12)), abs=1e-9
    )
    assert metrics["mean_per_class_recall"] == pytest.approx(
        100 * balanced_accuracy_score(labels, logits.argmax(1)), abs=1e-9
    )


def test_hand_computed() -> None:
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.4, 0.4, 0.2]])
    labels = torch.tensor([0, 1, 1, 1])  # correct, wrong (2nd), correct, wrong (tie 0/1 -> class 0 first)
    metrics = classification_metrics(logits, labels, ks=(1, 2))
    assert metrics["top1"] == 50.0 and metrics["top2"] == 100.0
    assert metrics["mean_per_class_recall"] == pytest.approx(
        (100 + 100 / 3) / 2
    )  # class 0: 1/1, class 1: 1/3
    assert classification_metrics(logits, labels, ks=(5,))["top5"] == 100.0  # k > C clamped


def test_oracle_and_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    classes = torch.nn.functional.normalize(torch.randn(10, 64, generator=generator), dim=-1)
    labels = torch.randint(0, 10, (2000,), generator=generator)
    assert zero_shot_metrics(classes[labels], classes, labels)["top1"] == 100.0
    random_images = torch.nn.functional.normalize(torch.randn(2000, 64, generator=generator), dim=-1)
    chance = zero_shot_metrics(random_images, classes, labels)
    bound = 5 * np.sqrt(0.1 * 0.9 / 2000) * 100  # 5 standard deviations of a 10 % binomial rate
    assert (
        abs(chance["top1"] - 10.0) <= bound and abs(chance["top5"] - 50.0) <= 5 * np.sqrt(0.25 / 2000) * 100
    )


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    config = rclip_hf.RemoteCLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        projection_dim=8,
    )
    return rclip_hf.RemoteCLIPModel(config).eval(), rclip_hf.build_processor(image_size=32)


def test_template_ensembling(tiny_clip) -> None:
    model, processor = tiny_clip
    templates = ["a satellite photo of {}.", "an aerial image of {}."]
    classifier = zero_shot_classifier(model, processor, ["forest", "harbor"], templates, batch_size=3)
    prompts = encode_texts(
        model,
        processor,
        [
            "a satellite photo of forest.",
            "an aerial image of forest.",
            "a satellite photo of harbor.",
            "an aerial image of harbor.",
        ],
        show_progress=False,
    )
    expected = torch.nn.functional.normalize(
        prompts.view(2, 2, -1).mean(1), dim=-1
    )  # normalise, average, renormalise
    torch.testing.assert_close(classifier, expected, rtol=1e-5, atol=1e-6)
    assert classifier.shape == (2, 8) and torch.allclose(classifier.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="has no '\\{\\}' placeholder"):
        zero_shot_classifier(model, processor, ["forest"], ["a photo"])
    with pytest.raises(ValueError, match="need class names and templates"):
        zero_shot_classifier(model, processor, [], templates)


def test_presets() -> None:
    assert PAPER_TEMPLATE == "a satellite photo of {}." and templates_for("paper") == (PAPER_TEMPLATE,)
    assert templates_for("ensemble") == REMOTE_SENSING_TEMPLATES and all(
        "{}" in t for t in REMOTE_SENSING_TEMPLATES
    )
    expected_sizes = {
        "eurosat": 10,
        "ucmerced": 21,
        "aid": 30,
        "resisc45": 45,
        "rsi_cb128": 45,
        "rsi_cb256": 35,
        "mlrsnet": 46,
        "patternnet": 38,
        "rs2800": 7,
        "optimal31": 31,
        "rsc11": 11,
        "whu_rs19": 19,
        "rsscn7": 7,
        "aid150": 30,
    }
    for name, size in expected_sizes.items():
        names, templates = BENCHMARK_PRESETS[name]
        assert len(names) == size == len(set(names)) and templates == (PAPER_TEMPLATE,), name
        assert list(BENCHMARKS[name].class_folders) == sorted(BENCHMARKS[name].class_folders), name  # ClassLabel order of the folders
    assert BENCHMARK_PRESETS["rsscn7"][0][:2] == ("grass land", "farm field")
    assert (
        clean_class_name("DenseResidential") == "dense residential"
        and clean_class_name("storage_tank") == "storage tank"
    )
    assert clean_class_name("railwayStation") == "railway station"


def test_presets_match_real_folders(shared_data) -> None:
    for name, folder in (("rsscn7", "rsscn7"), ("aid150", "aid150")):
        assert sorted(p.name for p in (shared_data / folder).iterdir() if p.is_dir()) == list(
            BENCHMARKS[name].class_folders
        )


def test_unknown_class_folder_is_cleaned_and_reported(caplog) -> None:
    assert class_names_for("eurosat", ["SeaLake", "NewClass_x"]) == ["sea or lake", "new class x"]
    assert "'NewClass_x'->'new class x'" in caplog.text
    with pytest.raises(ValueError, match="'fancy' is not a template set"):
        templates_for("fancy")


def test_metric_errors() -> None:
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\), found \[0, 2\]"):
        classification_metrics(torch.zeros(2, 2), [0, 2])
    with pytest.raises(ValueError, match="expected scores \\(N, C\\)"):
        classification_metrics(torch.zeros(2, 2), [0])
    with pytest.raises(ValueError, match="same D"):
        zero_shot_metrics(torch.zeros(2, 3), torch.zeros(2, 4), [0, 1])
