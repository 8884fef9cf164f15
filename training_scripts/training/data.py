"""Caption corpus -> augmented (uint8 image tensor, one random caption) pairs -> batches of uint8 pixels and
token ids padded to the longest caption; `PixelNormalizer` turns the pixels into model input on the device.

Workers decode the stored bytes themselves (the `image` column is read undecoded), so a JPEG is decoded at the
reduced size its crop allows (see `augment.py`), and nothing but small uint8 tensors crosses between processes.
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
from datasets.exceptions import DatasetGenerationError
from PIL import Image
from torch.utils.data import Sampler

from rclip_hf.errors import UserError, dataset_not_found

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
    try:
        corpus = datasets.load_dataset(data_args.dataset, data_args.dataset_config_name, split=data_args.split,
                                       streaming=data_args.streaming)
    except (FileNotFoundError, ConnectionError) as error:
        raise dataset_not_found("--dataset", data_args.dataset, error) from None
    except (DatasetGenerationError, ValueError) as error:  # a shard that does not read (damaged, another schema), no rows
        cause = error.__cause__ or error
        raise UserError(f"--dataset {data_args.dataset}", f"its files do not read as a dataset "
                        f"({type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''})",
                        "rebuild it, or check that its build kept images") from None
    if not data_args.streaming and len(corpus) == 0:
        raise UserError(f"--dataset {data_args.dataset}", f"split {data_args.split!r} holds no rows",
                        "rebuild it from sources that keep images")
    check_corpus_features(corpus.features, data_args.dataset)
    corpus = corpus.select_columns(list(REQUIRED_COLUMNS))
    if data_args.max_train_samples is not None:
        corpus = corpus.take(data_args.max_train_samples)
    return corpus


def stored_image(value: dict[str, Any]) -> bytes | Image.Image:
    """An undecoded `image` cell (`{"bytes", "path"}`) -> its stored bytes, which the augmentation decodes; a cell
    without bytes is decoded by `datasets` itself."""
    if value.get("bytes") is None:
        return datasets.Image().decode_example(value)
    return value["bytes"]


def undecoded(corpus: Dataset | IterableDataset) -> Dataset | IterableDataset:
    """The corpus with its `image` column read as stored bytes (see `stored_image`)."""
    return corpus.cast_column("image", datasets.Image(decode=False))


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
    """Map-style pairs: key `(index, epoch)` -> ((3, size, size) uint8 augmented image, one caption drawn at random)."""

    def __init__(self, corpus: Dataset, augmentation: TrainAugmentation, seed: int):
        self.corpus = undecoded(corpus)
        self.augmentation = augmentation
        self.seed = seed

    def __len__(self) -> int:
        return len(self.corpus)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, str]:
        index, epoch = key
        row = self.corpus[index]
        return self._pair(index, epoch, row["image"], row["captions"])

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[tuple[torch.Tensor, str]]:
        """The pairs of a batch of keys from one read of their rows (the DataLoader's batched fetch)."""
        rows = self.corpus[[index for index, _ in keys]]
        return [self._pair(index, epoch, image, captions)
                for (index, epoch), image, captions in zip(keys, rows["image"], rows["captions"], strict=True)]

    def _pair(self, index: int, epoch: int, image: dict[str, Any], captions: Sequence[str]) -> tuple[torch.Tensor, str]:
        rng = sample_rng(self.seed, epoch, index)
        caption = choose_caption(captions, rng, f"sample {index}")
        return self.augmentation(stored_image(image), rng), caption


class StreamingCaptionPairs(torch.utils.data.IterableDataset):
    """Streaming pairs from a shuffled `datasets.IterableDataset`; keys are (epoch, worker, position in worker)."""

    def __init__(self, corpus: IterableDataset, augmentation: TrainAugmentation, seed: int, buffer_size: int):
        self.corpus = undecoded(corpus).shuffle(seed=seed, buffer_size=buffer_size)
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffles the stream for the coming pass."""
        self.epoch = epoch
        self.corpus.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, str]]:
        worker = torch.utils.data.get_worker_info()
        worker_id = 0 if worker is None else worker.id
        for position, row in enumerate(self.corpus):
            key = position * 1024 + worker_id  # distinct per (worker, position) for up to 1024 workers
            rng = sample_rng(self.seed, self.epoch, key)
            caption = choose_caption(row["captions"], rng, f"streamed sample {position} (worker {worker_id})")
            yield self.augmentation(stored_image(row["image"]), rng), caption


class PairCollator:
    """Batches pairs: (batch, 3, size, size) uint8 `pixel_values` and token ids padded to the longest caption,
    tokenised in one call of the fast tokenizer."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, pairs: list[tuple[torch.Tensor, str]]) -> dict[str, torch.Tensor]:
        images, captions = zip(*pairs)
        tokens = self.tokenizer(list(captions), return_tensors="pt", padding="longest", truncation=True)
        return {"pixel_values": torch.stack(images), "input_ids": tokens["input_ids"],
                "attention_mask": tokens["attention_mask"]}


class PixelNormalizer:
    """(batch, 3, H, W) uint8 pixels -> float32 normalised with the image processor's mean and std, on their
    device (the training step's), as the processor's rescale + normalise would."""

    def __init__(self, image_mean: Sequence[float], image_std: Sequence[float]):
        self.mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1) * 255

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.mean.device != pixel_values.device:
            self.mean, self.std = self.mean.to(pixel_values.device), self.std.to(pixel_values.device)
        return (pixel_values.float() - self.mean) / self.std


def build_train_dataloader(corpus: Dataset | IterableDataset, processor: Any, augmentation: TrainAugmentation,
                           data_args: DataArguments, per_device_batch_size: int, seed: int
                           ) -> torch.utils.data.DataLoader:
    """The per-process DataLoader (before `accelerate.prepare`), full batches only, pinned when CUDA is there."""
    common = {"batch_size": per_device_batch_size, "collate_fn": PairCollator(processor.tokenizer),
              "drop_last": True, "num_workers": data_args.dataloader_num_workers,
              "pin_memory": torch.cuda.is_available()}
    if isinstance(corpus, IterableDataset):
        pairs = StreamingCaptionPairs(corpus, augmentation, seed, data_args.shuffle_buffer_size)
        return torch.utils.data.DataLoader(pairs, **common)
    pairs = CaptionPairDataset(corpus, augmentation, seed)
    return torch.utils.data.DataLoader(pairs, sampler=EpochShuffleSampler(len(pairs), seed), **common)
