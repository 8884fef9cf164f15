"""Periodic retrieval evaluation during training, on the first images of the corpus and all their captions."""

from __future__ import annotations

import itertools
from typing import Any

from datasets import Dataset, IterableDataset
from torch import nn

from rclip_hf.embeddings import encode_images, encode_texts
from rclip_hf.evaluation.retrieval import retrieval_metrics


class RetrievalEvaluator:
    """Image<->text recall@1/5/10 and mean recall (percent) of a model on `num_samples` corpus images."""

    def __init__(self, corpus: Dataset | IterableDataset, num_samples: int, processor: Any, batch_size: int = 64):
        rows = list(itertools.islice(iter(corpus), num_samples))
        self.images = [row["image"] for row in rows]
        self.captions = [caption for row in rows for caption in row["captions"]]
        self.text_to_image = [index for index, row in enumerate(rows) for _ in row["captions"]]
        self.processor = processor
        self.batch_size = batch_size

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """Metrics keyed `i2t_R@1` ... `t2i_R@10`, `mean_recall` (the model is put back in its training mode)."""
        was_training = model.training
        model.eval()
        image_embeds = encode_images(model, self.processor, self.images, self.batch_size, show_progress=False)
        text_embeds = encode_texts(model, self.processor, self.captions, self.batch_size, show_progress=False)
        model.train(was_training)
        return retrieval_metrics(image_embeds, text_embeds, self.text_to_image)
