"""RemoteCount top-k accuracy and confusion matrix as an `evaluate` module that works alone on the Hub.

The computation is a self-contained copy of `rclip_hf.evaluation.counting_metrics` (no rclip_hf import, so the
folder runs as a Space); rclip-hf's tests/test_evaluate_modules.py checks that both give the same numbers on
random and tied scores.
"""

import datasets
import evaluate
import numpy as np
import torch

MAX_COUNT = 10

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


def counting_metrics(scores: torch.Tensor, counts: torch.Tensor) -> dict:
    """``top1``...``top10`` (percent) and ``confusion_matrix`` (10 x 10, rows true counts divided by their
    sample count); the prediction is the argmax, equal scores ranked by the smaller count."""
    if scores.ndim != 2 or scores.shape[1] != MAX_COUNT or counts.shape != (scores.shape[0],) or not len(counts):
        raise ValueError(f"expected scores (N, {MAX_COUNT}) with N >= 1 and counts (N,), got {tuple(scores.shape)} "
                         f"and {tuple(counts.shape)}")
    if counts.min() < 1 or counts.max() > MAX_COUNT:
        raise ValueError(f"counts must be in [1, {MAX_COUNT}], found [{int(counts.min())}, {int(counts.max())}]")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; they must be finite")
    ranked = scores.sort(dim=1, descending=True, stable=True).indices  # (N, 10) count indices, best first
    correct = ranked == (counts - 1)[:, None]
    metrics = {f"top{k}": correct[:, :k].any(dim=1).double().mean().item() * 100 for k in range(1, MAX_COUNT + 1)}
    confusion = torch.zeros(MAX_COUNT, MAX_COUNT, dtype=torch.float64)
    confusion.index_put_((counts - 1, ranked[:, 0]), torch.ones(len(counts), dtype=torch.float64), accumulate=True)
    row_totals = confusion.sum(dim=1, keepdim=True)
    metrics["confusion_matrix"] = torch.where(row_totals > 0, confusion / row_totals.clamp(min=1), 0.0).tolist()
    return metrics


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsCounting(evaluate.Metric):
    """Counting metrics over the 10 count-caption scores of each image."""

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

    def _compute(self, predictions, references):
        scores = torch.from_numpy(np.asarray(predictions, dtype=np.float32))
        return counting_metrics(scores, torch.as_tensor(np.asarray(references)).long())
