"""Evaluation of RemoteCLIP-style models: metric functions (plain tensors in, floats out), encoders, the runner."""

from .classification import classification_metrics
from .counting import COUNT_DIGITS, COUNT_WORDS, count_caption_variants, counting_metrics, counting_prompt
from .encode import encode_images, encode_texts
from .few_shot import PAPER_SHOTS, few_shot, sample_shots
from .knn import knn_metrics, knn_scores
from .linear_probe import LinearProbeConfig, linear_probe, train_logistic_regression
from .presets import (
    BENCHMARK_PRESETS,
    FOLDER_NAMES,
    PAPER_TEMPLATE,
    REMOTE_SENSING_TEMPLATES,
    class_names_for,
    clean_class_name,
    templates_for,
)
from .retrieval import retrieval_metrics
from .topk import chunked_topk, topk_lowest_index
from .zero_shot import zero_shot_classifier, zero_shot_metrics

__all__ = [
    "BENCHMARK_PRESETS",
    "COUNT_DIGITS",
    "COUNT_WORDS",
    "FOLDER_NAMES",
    "PAPER_SHOTS",
    "PAPER_TEMPLATE",
    "REMOTE_SENSING_TEMPLATES",
    "LinearProbeConfig",
    "chunked_topk",
    "class_names_for",
    "classification_metrics",
    "clean_class_name",
    "count_caption_variants",
    "counting_metrics",
    "counting_prompt",
    "encode_images",
    "encode_texts",
    "few_shot",
    "knn_metrics",
    "knn_scores",
    "linear_probe",
    "retrieval_metrics",
    "sample_shots",
    "templates_for",
    "topk_lowest_index",
    "train_logistic_regression",
    "zero_shot_classifier",
    "zero_shot_metrics",
]
