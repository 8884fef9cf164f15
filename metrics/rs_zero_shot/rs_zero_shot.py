"""Zero-shot classification accuracy (RemoteCLIP Table III) as an `evaluate` module that works alone on the Hub.

The computation is a self-contained copy of `rclip_hf.evaluation.classification_metrics` (no rclip_hf import, so
the folder runs as a Space); rclip-hf's tests/test_evaluate_modules.py checks that both give the same numbers on
random and tied scores.
"""

import datasets
import evaluate
import numpy as np
import torch

_DESCRIPTION = (
    "Top-1 / top-5 accuracy and mean per-class recall (percent) of class scores, e.g. image-to-class-prompt "
    "similarities of a zero-shot classifier (prompts 'a satellite photo of {class}.')."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: per sample, the scores of every class (list of C floats).
    references: per sample, the true class index.
    ks: top-k cut-offs, default (1, 5).
Returns:
    dict with top1, top5, mean_per_class_recall.
Example:
    >>> metric = evaluate.load("metrics/rs_zero_shot")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.3, 0.7]], references=[0, 0], ks=(1,))
    {'top1': 50.0, 'mean_per_class_recall': 50.0}
"""

_CITATION = """@article{remoteclip,
  author       = {Fan Liu and
                  Delong Chen and
                  Zhangqingyun Guan and
                  Xiaocong Zhou and
                  Jiale Zhu and
                  Qiaolin Ye and
                  Liyong Fu and
                  Jun Zhou},
  title        = {RemoteCLIP: {A} Vision Language Foundation Model for Remote Sensing},
  journal      = {{IEEE} Transactions on Geoscience and Remote Sensing},
  volume       = {62},
  pages        = {1--16},
  year         = {2024},
  url          = {https://doi.org/10.1109/TGRS.2024.3390838},
  doi          = {10.1109/TGRS.2024.3390838},
}
"""


def ranked(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Columns (N, k) of the k best scores of each row, equal scores ranked by lower column."""
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; they must be finite")
    return scores.sort(dim=1, descending=True, stable=True).indices[:, :k]


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    """``top{k}`` accuracy and ``mean_per_class_recall`` (balanced accuracy over the classes present), percent."""
    if scores.ndim != 2 or labels.shape != (scores.shape[0],) or scores.shape[0] == 0:
        raise ValueError(f"expected scores (N, C) with N >= 1 and labels (N,), got {tuple(scores.shape)} "
                         f"and {tuple(labels.shape)}")
    num_classes = scores.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), found [{int(labels.min())}, {int(labels.max())}]")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks={tuple(ks)} must be integers >= 1")
    k_max = min(max(int(k) for k in ks), num_classes)
    correct = ranked(scores.float(), k_max) == labels[:, None]
    metrics = {f"top{k}": correct[:, : min(int(k), k_max)].any(dim=1).double().mean().item() * 100 for k in ks}
    support = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[correct[:, 0]], minlength=num_classes).double()
    present = support > 0
    metrics["mean_per_class_recall"] = (hits[present] / support[present]).mean().item() * 100
    return metrics


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsZeroShot(evaluate.Metric):
    """Classification metrics over per-class scores."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
            homepage="https://huggingface.co/chendelong/RemoteCLIP",
            license="apache-2.0",
            codebase_urls=["https://github.com/ChenDelong1999/RemoteCLIP"],
            reference_urls=["https://arxiv.org/abs/2306.11029"],
        )

    def _compute(self, predictions, references, ks=(1, 5)):
        scores = torch.from_numpy(np.asarray(predictions, dtype=np.float32))
        return classification_metrics(scores, torch.as_tensor(np.asarray(references)).long(), ks=ks)
