"""Model cards for RemoteCLIP folders: metadata (`model-index`), results tables next to the paper's, plots."""

from rclip_hf.benchmark_registry import REMOTECLIP_BIBTEX

from .card import (
    CardInputs,
    MetricEntry,
    Plot,
    ResultsFormatError,
    build_model_card,
    card_metrics,
    eval_results_from_results,
    iter_metrics,
    load_results,
)

__all__ = [
    "REMOTECLIP_BIBTEX",
    "CardInputs",
    "MetricEntry",
    "Plot",
    "ResultsFormatError",
    "build_model_card",
    "card_metrics",
    "eval_results_from_results",
    "iter_metrics",
    "load_results",
]
