"""Zero-shot classification accuracy (RemoteCLIP Table III), a thin `evaluate` wrapper over rclip_hf.evaluation."""

import evaluate
import numpy as np

from rclip_hf.evaluation import classification_metrics
from rclip_hf.evaluation.metric_info import metric_info

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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsZeroShot(evaluate.Metric):
    """Classification metrics over per-class scores."""

    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, ks=(1, 5)):
        return classification_metrics(
            np.asarray(predictions, dtype=np.float32), np.asarray(references), ks=ks
        )
