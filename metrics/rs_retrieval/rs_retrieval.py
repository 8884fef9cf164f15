"""Image-text retrieval recall@k (RemoteCLIP Table II) as an `evaluate` module that works alone on the Hub.

The computation is a self-contained copy of `rclip_hf.evaluation.retrieval_metrics` (no rclip_hf import, so the
folder runs as a Space), written as clip_benchmark ranks: rclip-hf's tests/test_evaluate_modules.py checks that
both give the same numbers on random and tied embeddings, for both tie rules.
"""

import datasets
import evaluate
import numpy as np
import torch

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
QUERY_CHUNK = 1024  # queries scored at once: memory QUERY_CHUNK x gallery


def hits_at_k(scores: torch.Tensor, positive: torch.Tensor, ks, tie_break: str) -> dict:
    """Per query (row of ``scores``), whether a positive is among its k best: ``torch.topk``'s choice among equal
    scores (clip_benchmark's ``recall_at_k(...) > 0``) or equal scores ranked by lower column."""
    num_gallery = scores.shape[1]
    if tie_break == "torch":
        return {k: positive.gather(1, scores.topk(min(k, num_gallery), dim=1).indices).any(dim=1) for k in ks}
    ranked_positive = positive.gather(1, scores.sort(dim=1, descending=True, stable=True).indices)
    first = torch.where(ranked_positive.any(dim=1), ranked_positive.int().argmax(dim=1), num_gallery)  # best positive's rank
    return {k: first < min(k, num_gallery) for k in ks}


def retrieval_metrics(images: torch.Tensor, texts: torch.Tensor, text_to_image: torch.Tensor, ks=(1, 5, 10),
                      tie_break: str = "torch") -> dict:
    """``i2t_R@k`` (an image hits when any of its captions is in its top k), ``t2i_R@k`` (a caption hits when its
    image is in its top k), percent, and ``mean_recall``; a k above the gallery is clamped to it."""
    if tie_break not in ("torch", "lowest_index"):
        raise ValueError(f"tie_break={tie_break!r}, expected 'torch' or 'lowest_index'")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks={tuple(ks)} must be a non-empty sequence of integers >= 1")
    if images.ndim != 2 or texts.ndim != 2 or images.shape[1] != texts.shape[1] or not len(images) or not len(texts):
        raise ValueError(f"expected image_embeds (N, D) and text_embeds (M, D), N, M >= 1, got {tuple(images.shape)} "
                         f"and {tuple(texts.shape)}")
    if text_to_image.shape != (len(texts),) or text_to_image.min() < 0 or text_to_image.max() >= len(images):
        raise ValueError(f"text_to_image must give each of the {len(texts)} captions an image index in "
                         f"[0, {len(images)})")
    if torch.isnan(images).any() or torch.isnan(texts).any():
        raise ValueError("embeddings contain NaN; they must be finite")
    ks = [int(k) for k in ks]
    positive = torch.zeros(len(texts), len(images), dtype=torch.bool)  # (M, N): caption m belongs to image n
    positive[torch.arange(len(texts)), text_to_image] = True
    i2t = {k: [] for k in ks}
    t2i = {k: [] for k in ks}
    for start in range(0, len(images), QUERY_CHUNK):  # scores computed as clip_benchmark does: texts @ images.T
        block = (texts @ images[start : start + QUERY_CHUNK].T).T
        for k, hits in hits_at_k(block, positive[:, start : start + QUERY_CHUNK].T, ks, tie_break).items():
            i2t[k].append(hits)
    for start in range(0, len(texts), QUERY_CHUNK):
        block = texts[start : start + QUERY_CHUNK] @ images.T
        for k, hits in hits_at_k(block, positive[start : start + QUERY_CHUNK], ks, tie_break).items():
            t2i[k].append(hits)
    metrics = {f"i2t_R@{k}": torch.cat(i2t[k]).float().mean().item() * 100 for k in ks}
    metrics.update({f"t2i_R@{k}": torch.cat(t2i[k]).float().mean().item() * 100 for k in ks})
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    return metrics


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsRetrieval(evaluate.Metric):
    """Retrieval recall@k over text embeddings (rows) against image embeddings (keyword argument)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"text_embeds": datasets.Sequence(datasets.Value("float32")), "text_to_image": datasets.Value("int64")}
            ),
            homepage="https://huggingface.co/chendelong/RemoteCLIP",
            license="apache-2.0",
            codebase_urls=["https://github.com/ChenDelong1999/RemoteCLIP"],
            reference_urls=["https://arxiv.org/abs/2306.11029"],
        )

    def _compute(self, text_embeds, text_to_image, image_embeds, ks=(1, 5, 10), tie_break="torch"):
        return retrieval_metrics(
            torch.from_numpy(np.asarray(image_embeds, dtype=np.float32)),
            torch.from_numpy(np.asarray(text_embeds, dtype=np.float32)),
            torch.as_tensor(np.asarray(text_to_image)).long(),
            ks=ks,
            tie_break=tie_break,
        )
