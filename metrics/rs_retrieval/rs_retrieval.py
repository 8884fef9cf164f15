"""Image-text retrieval recall@k (RemoteCLIP Table II), a thin `evaluate` wrapper over rclip_hf.evaluation."""

import evaluate
import numpy as np

from rclip_hf.evaluation import retrieval_metrics
from rclip_hf.evaluation.metric_info import metric_info

_DESCRIPTION = (
    "Image->text and text->image recall@k in percent and their mean (mean_recall), with the definitions of the "
    "official RemoteCLIP retrieval.py / clip_benchmark (a query hits at k when any positive is in its top k)."
)

_KWARGS_DESCRIPTION = """
Args:
    text_embeds: one L2-normalised text embedding (list of floats) per caption.
    text_to_image: for each caption, the index of its image in `image_embeds`.
    image_embeds: (N, D) L2-normalised image embeddings (keyword argument of `compute`).
    ks: recall cut-offs, default (1, 5, 10).
    tie_break: "torch" (clip_benchmark-identical, default) or "lowest_index".
Returns:
    dict with i2t_R@1, i2t_R@5, i2t_R@10, t2i_R@1, t2i_R@5, t2i_R@10, mean_recall.
Example:
    >>> metric = evaluate.load("metrics/rs_retrieval")
    >>> metric.compute(text_embeds=[[1.0, 0.0], [0.0, 1.0]], text_to_image=[0, 1], image_embeds=[[1.0, 0.0], [0.0, 1.0]], ks=(1,))
    {'i2t_R@1': 100.0, 't2i_R@1': 100.0, 'mean_recall': 100.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsRetrieval(evaluate.Metric):
    """Retrieval recall@k over text embeddings (rows) against image embeddings (keyword argument)."""

    def _info(self):
        return metric_info(
            _DESCRIPTION, _KWARGS_DESCRIPTION, {"text_embeds": "vector", "text_to_image": "int"}
        )

    def _compute(self, text_embeds, text_to_image, image_embeds, ks=(1, 5, 10), tie_break="torch"):
        return retrieval_metrics(
            np.asarray(image_embeds, dtype=np.float32),
            np.asarray(text_embeds, dtype=np.float32),
            np.asarray(text_to_image),
            ks=ks,
            tie_break=tie_break,
        )
