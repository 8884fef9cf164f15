"""Caption corpus -> augmented (image, one random caption) pairs -> padded processor batches.

Randomness (shuffle order, caption choice, augmentation) is a function of (seed, epoch, sample index), so the
data order resumes exactly after `skip_first_batches`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from datasets import Dataset, IterableDataset
from PIL import Image
from torch.utils.data import Sampler

from .arguments import DataArguments
from .augment import TrainAugmentation

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "captions")


def check_corpus_features(features: datasets.Features | None, source: str) -> None:
    """Raises when `image` (Image) or `captions` (list of strings) is missing or mistyped; other columns are fine."""
    if features is None:
        raise ValueError(f"dataset {source}: its features are unknown; expected columns {list(REQUIRED_COLUMNS)}")
    missing = [name for name in REQUIRED_COLUMNS if name not in features]
    if missing:
        raise ValueError(
            f"dataset {source}: missing column(s) {missing}; found {sorted(features)}. A caption corpus needs "
            "`image` (Image) and `captions` (list of strings)"
        )
    if not isinstance(features["image"], datasets.Image):
        raise TypeError(f"dataset {source}: column `image` must be an Image feature, got {features['image']}")
    inner = getattr(features["captions"], "feature", None)
    if not (isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string")):
        raise TypeError(
            f"dataset {source}: column `captions` must be a list of strings, got {features['captions']}"
        )


def load_caption_corpus(data_args: DataArguments) -> Dataset | IterableDataset:
    """Loads the corpus (folder of Parquet shards or hub id), checks its columns and keeps only `image`/`captions`."""
    if not data_args.dataset:
        raise ValueError("--dataset is required: a dataset folder or hub id with `image` and `captions` columns")
    corpus = datasets.load_dataset(data_args.dataset, data_args.dataset_config_name, split=data_args.split,
                                   streaming=data_args.streaming)
    check_corpus_features(corpus.features, data_args.dataset)
    corpus = corpus.select_columns(list(REQUIRED_COLUMNS))
    if data_args.max_train_samples is not None:
        corpus = corpus.take(data_args.max_train_samples)
    return corpus


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's caption choice and augmentation in one epoch."""
    return np.random.default_rng((seed, epoch, index))


def choose_caption(captions: Sequence[str], rng: np.random.Generator, where: str) -> str:
    """One of the captions, uniformly at random; an empty list raises naming the sample."""
    if len(captions) == 0:
        raise ValueError(f"{where}: `captions` is empty; every sample needs at least one caption")
    return captions[int(rng.integers(0, len(captions)))]


class EpochShuffleSampler(Sampler):
    """Yields `(index, epoch)` keys in a permutation seeded by (seed, epoch); `set_epoch` is called by accelerate."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the permutation of the coming pass."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.num_samples)
        return iter([(int(index), self.epoch) for index in order])

    def __len__(self) -> int:
        return self.num_samples


class CaptionPairDataset(torch.utils.data.Dataset):
    """Map-style pairs: key `(index, epoch)` -> (augmented PIL image, one caption drawn at random)."""

    def __init__(self, corpus: Dataset, augmentation: TrainAugmentation, seed: int):
        self.corpus = corpus
        self.augmentation = augmentation
        self.seed = seed

    def __len__(self) -> int:
        return len(self.corpus)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Image.Image, str]:
        index, epoch = key
        row = self.corpus[index]
        rng = sample_rng(self.seed, epoch, index)
        caption = choose_caption(row["captions"], rng, f"sample {index}")
        return self.augmentation(row["image"], rng), caption


class StreamingCaptionPairs(torch.utils.data.IterableDataset):
    """Streaming pairs from a shuffled `datasets.IterableDataset`; keys are (epoch, worker, position in worker)."""

    def __init__(self, corpus: IterableDataset, augmentation: TrainAugmentation, seed: int, buffer_size: int):
        self.corpus = corpus.shuffle(seed=seed, buffer_size=buffer_size)
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffles the stream for the coming pass."""
        self.epoch = epoch
        self.corpus.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Image.Image, str]]:
        worker = torch.utils.data.get_worker_info()
        worker_id = 0 if worker is None else worker.id
        for position, row in enumerate(self.corpus):
            key = position * 1024 + worker_id  # distinct per (worker, position) for up to 1024 workers
            rng = sample_rng(self.seed, self.epoch, key)
            caption = choose_caption(row["captions"], rng, f"streamed sample {position} (worker {worker_id})")
            yield self.augmentation(row["image"], rng), caption


class ProcessorCollator:
    """Batches pairs with the processor: normalised `pixel_values` and token ids padded to the longest caption."""

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, pairs: list[tuple[Image.Image, str]]) -> dict[str, torch.Tensor]:
        images, captions = zip(*pairs)
        return dict(self.processor(text=list(captions), images=list(images), return_tensors="pt", padding="longest"))


def build_train_dataloader(corpus: Dataset | IterableDataset, processor: Any, augmentation: TrainAugmentation,
                           data_args: DataArguments, per_device_batch_size: int, seed: int
                           ) -> torch.utils.data.DataLoader:
    """The per-process DataLoader (before `accelerator.prepare`), full batches only."""
    common = {"batch_size": per_device_batch_size, "collate_fn": ProcessorCollator(processor), "drop_last": True,
              "num_workers": data_args.dataloader_num_workers}
    if isinstance(corpus, IterableDataset):
        pairs = StreamingCaptionPairs(corpus, augmentation, seed, data_args.shuffle_buffer_size)
        return torch.utils.data.DataLoader(pairs, **common)
    pairs = CaptionPairDataset(corpus, augmentation, seed)
    return torch.utils.data.DataLoader(pairs, sampler=EpochShuffleSampler(len(pairs), seed), **common)
