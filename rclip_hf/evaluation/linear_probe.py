"""Linear probe: multinomial logistic regression trained by SGD on frozen image features (the paper's §4 recipe)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .classification import classification_metrics
from .retrieval import as_tensor

logger = logging.getLogger(__name__)


@dataclass
class LinearProbeConfig:
    """Hyperparameters of the logistic-regression probe (defaults: the RemoteCLIP paper)."""

    lr: float = 0.8
    """Initial learning rate of SGD (cosine-annealed to 0 over all steps)."""
    weight_decay: float = 4e-5
    """L2 penalty added to the gradient of the weights and the bias."""
    momentum: float = 0.9
    """SGD momentum (the paper does not state it; 0.9 is the usual linear-probe setting)."""
    epochs: int = 1000
    """Passes over the training features."""
    batch_size: int = 10_000
    """Samples per SGD step (the whole set when smaller)."""
    search_rounds: int = 5
    """Random-search rounds over (lr, weight_decay), round 0 being the defaults above; 1 disables the search."""
    lr_range: tuple[float, float] = (0.05, 5.0)
    """Log-uniform range searched for lr."""
    weight_decay_range: tuple[float, float] = (1e-6, 1e-3)
    """Log-uniform range searched for weight_decay."""
    val_fraction: float = 0.2
    """Fraction of each class held out for the search when no validation set is given."""
    seed: int = 0
    """Seed of the search, the validation split and the batch order."""


def train_logistic_regression(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    config: LinearProbeConfig,
) -> tuple[Tensor, Tensor]:
    """Train R probes at once (one per (lr, weight_decay) pair); returns weights (R, D, C) and biases (R, C).

    All probes see the same batches; each has its own SGD-with-momentum update and cosine schedule, so the
    R trainings are vectorised into batched matrix products.
    """
    num_samples, dim = features.shape
    num_runs = len(lrs)
    device = features.device
    lr0 = torch.tensor(lrs, dtype=torch.float32, device=device).view(num_runs, 1, 1)
    decay = torch.tensor(weight_decays, dtype=torch.float32, device=device).view(num_runs, 1, 1)
    weights = torch.zeros(num_runs, dim, num_classes, device=device, requires_grad=True)
    biases = torch.zeros(num_runs, 1, num_classes, device=device, requires_grad=True)
    buffers = [torch.zeros_like(weights), torch.zeros_like(biases)]
    batch_size = min(config.batch_size, num_samples)
    steps_per_epoch = math.ceil(num_samples / batch_size)
    total_steps = config.epochs * steps_per_epoch
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(num_samples, generator=generator).to(device)
        for start in range(0, num_samples, batch_size):
            batch = order[start : start + batch_size]
            logits = torch.baddbmm(biases, features[batch].expand(num_runs, -1, -1), weights)  # (R, B, C)
            # Sum over runs of each run's mean loss: the gradient of run r is that of its own loss.
            loss = F.cross_entropy(
                logits.flatten(0, 1), labels[batch].repeat(num_runs), reduction="sum"
            ) / len(batch)
            grad_w, grad_b = torch.autograd.grad(loss, (weights, biases))
            scale = lr0 * 0.5 * (1 + math.cos(math.pi * step / total_steps))  # (R, 1, 1)
            with torch.no_grad():
                for param, grad, buffer in ((weights, grad_w, buffers[0]), (biases, grad_b, buffers[1])):
                    buffer.mul_(config.momentum).add_(grad + decay * param)
                    param.sub_(scale * buffer)
            step += 1
    return weights.detach(), biases.detach().squeeze(1)


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, held-out): ``fraction`` of each class (at least one when it has two or more samples)."""
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for label in torch.unique(labels.cpu()):
        members = torch.nonzero(labels.cpu() == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        num_held = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(members[:num_held])
        kept.append(members[num_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def _search_space(config: LinearProbeConfig) -> tuple[list[float], list[float]]:
    """Round 0: the configured (lr, weight_decay); further rounds: log-uniform samples from the ranges."""
    rng = np.random.default_rng(config.seed)
    lrs, decays = [config.lr], [config.weight_decay]
    for _ in range(config.search_rounds - 1):
        lrs.append(float(np.exp(rng.uniform(*np.log(config.lr_range)))))
        decays.append(float(np.exp(rng.uniform(*np.log(config.weight_decay_range)))))
    return lrs, decays


def linear_probe(
    train_features: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray | Sequence[int],
    test_features: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray | Sequence[int],
    num_classes: int,
    config: LinearProbeConfig | None = None,
    val_features: Tensor | np.ndarray | None = None,
    val_labels: Tensor | np.ndarray | Sequence[int] | None = None,
) -> dict:
    """Fit the probe (random search on a validation set, then the best setting refit on all training data)
    and return ``{"metrics": {top1, top5, mean_per_class_recall}, "lr", "weight_decay", "search": [...]}``.

    Without ``val_features`` a stratified ``config.val_fraction`` of the training set is held out for the
    search; with ``config.search_rounds == 1`` the configured (lr, weight_decay) is used directly.
    """
    config = config or LinearProbeConfig()
    if config.search_rounds < 1 or config.epochs < 1 or config.batch_size < 1:
        raise ValueError(
            f"LinearProbeConfig: search_rounds, epochs and batch_size must be >= 1, got {asdict(config)}"
        )
    train_x = as_tensor(train_features, "train_features").float()
    train_y = as_tensor(train_labels, "train_labels", train_x.device).long()
    test_x = as_tensor(test_features, "test_features", train_x.device).float()
    if train_y.shape != (train_x.shape[0],) or train_x.shape[0] == 0:
        raise ValueError(
            f"linear_probe: train_labels {tuple(train_y.shape)} must match train_features {tuple(train_x.shape)}"
        )
    if train_y.min() < 0 or train_y.max() >= num_classes:
        raise ValueError(
            f"linear_probe: train_labels must be in [0, {num_classes}), found [{int(train_y.min())}, {int(train_y.max())}]"
        )
    lrs, decays = _search_space(config)
    search = []
    if config.search_rounds > 1:
        if val_features is None:
            fit_idx, val_idx = stratified_split(train_y, config.val_fraction, config.seed)
            fit_x, fit_y, val_x, val_y = (
                train_x[fit_idx],
                train_y[fit_idx],
                train_x[val_idx],
                train_y[val_idx],
            )
        else:
            fit_x, fit_y = train_x, train_y
            val_x = as_tensor(val_features, "val_features", train_x.device).float()
            val_y = as_tensor(val_labels, "val_labels", train_x.device).long()
        weights, biases = train_logistic_regression(fit_x, fit_y, num_classes, lrs, decays, config)
        val_logits = torch.baddbmm(biases[:, None], val_x.expand(len(lrs), -1, -1), weights)  # (R, V, C)
        for run, (lr, decay) in enumerate(zip(lrs, decays)):
            accuracy = classification_metrics(val_logits[run], val_y, ks=(1,))["top1"]
            search.append({"lr": lr, "weight_decay": decay, "val_top1": accuracy})
        best = max(range(len(search)), key=lambda run: (search[run]["val_top1"], -run))
        lrs, decays = [lrs[best]], [decays[best]]
        logger.info(
            "linear probe: best of %d rounds lr=%.4g weight_decay=%.3g (val top1 %.2f)",
            len(search),
            lrs[0],
            decays[0],
            search[best]["val_top1"],
        )
    weights, biases = train_logistic_regression(train_x, train_y, num_classes, lrs[:1], decays[:1], config)
    test_logits = test_x @ weights[0] + biases[0]  # (N, C)
    return {
        "metrics": classification_metrics(test_logits, test_labels),
        "lr": lrs[0],
        "weight_decay": decays[0],
        "search": search,
    }
