"""Weighted k-NN classification (RemoteCLIP Table IV) as an `evaluate` module that works alone on the Hub.

The computation is a self-contained copy of `rclip_hf.evaluation.knn_metrics` (no rclip_hf import, so the folder
runs as a Space); rclip-hf's tests/test_evaluate_modules.py checks that both give the same numbers on random and
tied features.
"""

import datasets
import evaluate
import numpy as np
import torch

_DESCRIPTION = (
    "k-NN classification of frozen, L2-normalised image features: the k=20 most similar training features vote "
    "for their class with weight exp(similarity / 0.07). Returns top1, top5, mean_per_class_recall (percent)."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: test image features (list of floats per sample).
    references: test labels.
    train_features, train_labels: the training features (N, D) and labels (N,) (keyword arguments).
    num_classes: number of classes; k (20) and temperature (0.07).
Returns:
    dict with top1, top5, mean_per_class_recall.
Example:
    >>> metric = evaluate.load("metrics/rs_knn")
    >>> metric.compute(predictions=[[1.0, 0.0]], references=[0], train_features=[[1.0, 0.0], [0.0, 1.0]], train_labels=[0, 1], num_classes=2, k=1)["top1"]
    100.0
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
QUERY_CHUNK = 1024  # test features scored at once: memory QUERY_CHUNK x training set


def ranked(scores: torch.Tensor, k: int) -> tuple:
    """(values, columns) (N, k) of the k best scores of each row, equal scores ranked by lower column."""
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; they must be finite")
    values, columns = scores.sort(dim=1, descending=True, stable=True)
    return values[:, :k], columns[:, :k]


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    """``top{k}`` accuracy and ``mean_per_class_recall`` of class scores, percent."""
    num_classes = scores.shape[1]
    if labels.shape != (scores.shape[0],) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"test labels must be (N,) = ({scores.shape[0]},) in [0, {num_classes})")
    k_max = min(max(ks), num_classes)
    correct = ranked(scores.float(), k_max)[1] == labels[:, None]
    metrics = {f"top{k}": correct[:, : min(k, k_max)].any(dim=1).double().mean().item() * 100 for k in ks}
    support = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[correct[:, 0]], minlength=num_classes).double()
    present = support > 0
    metrics["mean_per_class_recall"] = (hits[present] / support[present]).mean().item() * 100
    return metrics


def knn_metrics(train, train_labels, test, test_labels, num_classes: int, k: int = 20, temperature: float = 0.07):
    """Each test feature's k most similar training features (dot product, ties: lower index) add
    ``exp(similarity / temperature)`` to their class; metrics of these votes."""
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1] or train_labels.shape != (len(train),):
        raise ValueError(f"expected train_features (N, D), train_labels (N,) and test features (Q, D), got "
                         f"{tuple(train.shape)}, {tuple(train_labels.shape)} and {tuple(test.shape)}")
    if train_labels.min() < 0 or train_labels.max() >= num_classes:
        raise ValueError(f"train_labels must be in [0, {num_classes})")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    k = min(k, len(train))
    votes = torch.zeros(len(test), num_classes, dtype=torch.float64)
    for start in range(0, len(test), QUERY_CHUNK):
        similarities, neighbours = ranked(test[start : start + QUERY_CHUNK] @ train.T, k)
        # minus each query's best similarity: exp stays finite, one factor per query leaves its ranking unchanged
        weights = torch.exp((similarities.double() - similarities.double().amax(dim=1, keepdim=True)) / temperature)
        votes[start : start + QUERY_CHUNK].scatter_add_(1, train_labels[neighbours], weights)
    return classification_metrics(votes, test_labels)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsKnn(evaluate.Metric):
    """k-NN metrics of test features against training features."""

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

    def _compute(self, predictions, references, train_features, train_labels, num_classes, k=20, temperature=0.07):
        return knn_metrics(
            torch.from_numpy(np.asarray(train_features, dtype=np.float32)),
            torch.as_tensor(np.asarray(train_labels)).long(),
            torch.from_numpy(np.asarray(predictions, dtype=np.float32)),
            torch.as_tensor(np.asarray(references)).long(),
            num_classes,
            k,
            temperature,
        )
