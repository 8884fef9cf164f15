"""RemoteCount top-k accuracy and confusion matrix, a thin `evaluate` wrapper over rclip_hf.evaluation."""

import evaluate
import numpy as np

from rclip_hf.evaluation import counting_metrics
from rclip_hf.evaluation.metric_info import metric_info

_DESCRIPTION = (
    "RemoteCount: each image is scored against its caption with the number replaced by one...ten; the predicted "
    "count is the argmax. Returns top-1...top-10 accuracy (percent) and the row-normalised 10x10 confusion matrix."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: per sample, 10 scores (captions with counts 1..10).
    references: per sample, the true count (1..10).
Returns:
    dict with top1 ... top10 and confusion_matrix (rows: true count, columns: predicted count).
Example:
    >>> metric = evaluate.load("metrics/rs_counting")
    >>> metric.compute(predictions=[[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]], references=[3])["top1"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsCounting(evaluate.Metric):
    """Counting metrics over the 10 count-caption scores of each image."""

    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references):
        return counting_metrics(np.asarray(predictions, dtype=np.float32), np.asarray(references))
