"""Evaluation of RemoteCLIP-style models: metric functions (plain tensors in, floats out) and the runner."""

from .classification import classification_metrics
from .counting import counting_metrics
from .few_shot import PAPER_SHOTS, few_shot, sample_shots
from .knn import knn_metrics, knn_scores
from .linear_probe import LinearProbeConfig, linear_probe, train_logistic_regression
from .retrieval import retrieval_metrics
from .zero_shot import zero_shot_metrics

__all__ = [
    "PAPER_SHOTS",
    "LinearProbeConfig",
    "classification_metrics",
    "counting_metrics",
    "few_shot",
    "knn_metrics",
    "knn_scores",
    "linear_probe",
    "retrieval_metrics",
    "sample_shots",
    "train_logistic_regression",
    "zero_shot_metrics",
]
