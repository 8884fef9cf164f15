"""Weighted k-NN classification (RemoteCLIP Table IV), a thin `evaluate` wrapper over rclip_hf.evaluation."""

import evaluate
import numpy as np

from rclip_hf.evaluation import knn_metrics
from rclip_hf.evaluation.metric_info import metric_info

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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsKnn(evaluate.Metric):
    """k-NN metrics of test features against training features."""

    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(
        self, predictions, references, train_features, train_labels, num_classes, k=20, temperature=0.07
    ):
        return knn_metrics(
            np.asarray(train_features, dtype=np.float32),
            np.asarray(train_labels),
            np.asarray(predictions, dtype=np.float32),
            np.asarray(references),
            num_classes,
            k,
            temperature,
        )
