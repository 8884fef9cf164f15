"""Few-shot linear probes: k random training images per class (several seeds), reported as mean ± std."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from .linear_probe import LinearProbeConfig, linear_probe
from .retrieval import as_tensor

logger = logging.getLogger(__name__)

PAPER_SHOTS = (1, 4, 8, 16, 32)


def sample_shots(labels: Tensor, shots: int, seed: int, exclude: Tensor | None = None) -> Tensor:
    """Indices of ``shots`` random samples per class (all of a class when it has fewer), sorted."""
    generator = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    available = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None:
        available[exclude.cpu()] = False
    chosen = []
    for label in torch.unique(labels):
        members = torch.nonzero((labels == label) & available).flatten()
        if len(members) < shots:
            logger.warning(
                "few-shot: class %d has %d samples left for %d shots; all used",
                int(label),
                len(members),
                shots,
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:shots]])
    return torch.cat(chosen).sort().values


def few_shot(
    train_features: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray | Sequence[int],
    test_features: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray | Sequence[int],
    num_classes: int,
    shots: Sequence[int] = PAPER_SHOTS,
    seeds: Sequence[int] = (0, 1, 2),
    config: LinearProbeConfig | None = None,
) -> dict[str, dict]:
    """``{"<k>-shot": {"top1_mean", "top1_std", "top1_per_seed": [...]}}`` (percent).

    For each seed, k training samples per class fit the probe; the random search validates on another
    min(k, 4) samples per class drawn from the remaining training data (none left: no search).
    """
    config = config or LinearProbeConfig()
    train_x = as_tensor(train_features, "train_features").float()
    train_y = as_tensor(train_labels, "train_labels", train_x.device).long()
    results = {}
    for k in shots:
        if k < 1:
            raise ValueError(f"few_shot: shots must be >= 1, got {k}")
        per_seed = []
        for seed in seeds:
            fit = sample_shots(train_y, k, seed)
            val = sample_shots(train_y, min(k, 4), seed + 10_000, exclude=fit)
            run_config = replace(config, seed=seed, search_rounds=config.search_rounds if len(val) else 1)
            outcome = linear_probe(
                train_x[fit],
                train_y[fit],
                test_features,
                test_labels,
                num_classes,
                run_config,
                val_features=train_x[val] if len(val) else None,
                val_labels=train_y[val] if len(val) else None,
            )
            per_seed.append(outcome["metrics"]["top1"])
        results[f"{k}-shot"] = {
            "top1_mean": float(np.mean(per_seed)),
            "top1_std": float(np.std(per_seed)),
            "top1_per_seed": per_seed,
        }
    return results
