"""The `evaluate` modules in metrics/ load offline and return exactly what the wrapped functions return."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rclip_hf.evaluation import (
    LinearProbeConfig,
    classification_metrics,
    counting_metrics,
    knn_metrics,
    linear_probe,
    retrieval_metrics,
)

evaluate = pytest.importorskip("evaluate")
METRICS = Path(__file__).resolve().parents[1] / "metrics"


def _load(name: str):
    return evaluate.load(str(METRICS / name))


@pytest.fixture(scope="module")
def embeddings():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(30, 16)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    text_to_image = np.repeat(np.arange(30), 2)
    texts = images[text_to_image] + 0.8 * rng.normal(size=(60, 16)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    return images, texts, text_to_image


def test_rs_retrieval(embeddings) -> None:
    images, texts, text_to_image = embeddings
    metric = _load("rs_retrieval")
    metric.add_batch(text_embeds=texts[:25], text_to_image=text_to_image[:25])
    metric.add_batch(text_embeds=texts[25:], text_to_image=text_to_image[25:])
    assert metric.compute(image_embeds=images) == retrieval_metrics(images, texts, text_to_image)


def test_rs_zero_shot_and_counting() -> None:
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=(40, 10)).astype(np.float32), rng.integers(0, 10, size=40)
    assert _load("rs_zero_shot").compute(predictions=scores, references=labels) == classification_metrics(
        scores, labels
    )
    counts = labels + 1
    assert _load("rs_counting").compute(predictions=scores, references=counts) == counting_metrics(
        scores, counts
    )


def test_rs_knn_and_linear_probe(embeddings) -> None:
    images, _, _ = embeddings
    labels = np.arange(30) % 3
    expected = knn_metrics(images[:20], labels[:20], images[20:], labels[20:], 3)
    actual = _load("rs_knn").compute(
        predictions=images[20:],
        references=labels[20:],
        train_features=images[:20],
        train_labels=labels[:20],
        num_classes=3,
    )
    assert actual == expected
    probe = _load("rs_linear_probe").compute(
        predictions=images[20:],
        references=labels[20:],
        train_features=images[:20],
        train_labels=labels[:20],
        num_classes=3,
        epochs=30,
        search_rounds=2,
    )
    direct = linear_probe(
        images[:20], labels[:20], images[20:], labels[20:], 3, LinearProbeConfig(epochs=30, search_rounds=2)
    )
    assert probe == {**direct["metrics"], "lr": direct["lr"], "weight_decay": direct["weight_decay"]}


def test_module_cards_exist() -> None:
    for folder in METRICS.iterdir():
        if folder.is_dir():
            card = (folder / "README.md").read_text()
            assert card.startswith("---\n") and f"# {folder.name}" in card.lower().replace("-", "_")
