"""Linear-probe accuracy (RemoteCLIP Table IV recipe), a thin `evaluate` wrapper over rclip_hf.evaluation."""

import evaluate
import numpy as np

from rclip_hf.evaluation import LinearProbeConfig, linear_probe
from rclip_hf.evaluation.metric_info import metric_info

_DESCRIPTION = (
    "Logistic regression on frozen image features trained by SGD (lr 0.8, cosine schedule, weight decay 4e-5, "
    "1,000 epochs, batch 10,000, 5-round random search on a validation split); test top1, top5, mean per-class recall."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: test image features (list of floats per sample).
    references: test labels.
    train_features, train_labels: training features (N, D) and labels (N,) (keyword arguments).
    num_classes: number of classes; any LinearProbeConfig field (epochs, lr, search_rounds, ...) as keyword.
Returns:
    dict with top1, top5, mean_per_class_recall, plus the chosen lr and weight_decay.
Example:
    >>> metric = evaluate.load("metrics/rs_linear_probe")
    >>> metric.compute(predictions=[[1.0, 0.0]], references=[0], train_features=[[1.0, 0.0], [0.0, 1.0]], train_labels=[0, 1], num_classes=2, epochs=10, search_rounds=1)["top1"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsLinearProbe(evaluate.Metric):
    """Linear-probe metrics of test features, the probe fitted on training features."""

    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, train_features, train_labels, num_classes, **config):
        outcome = linear_probe(
            np.asarray(train_features, dtype=np.float32),
            np.asarray(train_labels),
            np.asarray(predictions, dtype=np.float32),
            np.asarray(references),
            num_classes,
            LinearProbeConfig(**config),
        )
        return {**outcome["metrics"], "lr": outcome["lr"], "weight_decay": outcome["weight_decay"]}
