"""Linear-probe and few-shot accuracy (RemoteCLIP Table IV and Fig. 7 recipe) as an `evaluate` module that works
alone on the Hub.

The computation is a self-contained copy of `rclip_hf.evaluation.linear_probe` and `rclip_hf.evaluation.few_shot`
(no rclip_hf import, so the folder runs as a Space); rclip-hf's tests/test_evaluate_modules.py checks that both
give the same numbers on random and tied features.
"""

import math
from dataclasses import dataclass, fields, replace

import datasets
import evaluate
import numpy as np
import torch
import torch.nn.functional as F

_DESCRIPTION = (
    "Logistic regression on frozen image features trained by SGD (lr 0.8, cosine schedule, weight decay 4e-5, "
    "1,000 epochs, batch 10,000, 5-round random search on a validation split); test top1, top5, mean per-class "
    "recall. With `shots`, the few-shot protocol: k training images per class, several seeds, mean and std."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: test image features (list of floats per sample).
    references: test labels.
    train_features, train_labels: training features (N, D) and labels (N,) (keyword arguments).
    num_classes: number of classes; any ProbeConfig field (epochs, lr, search_rounds, ...) as keyword.
    shots: few-shot: k training samples per class (an int or a list of ints, e.g. [1, 4, 8, 16, 32]).
    seeds: few-shot seeds, default [0, 1, 2].
Returns:
    dict with top1, top5, mean_per_class_recall, plus the chosen lr and weight_decay; with `shots`,
    {"<k>-shot": {"top1_mean", "top1_std", "top1_per_seed"}} per k.
Example:
    >>> metric = evaluate.load("metrics/rs_linear_probe")
    >>> metric.compute(predictions=[[1.0, 0.0]], references=[0], train_features=[[1.0, 0.0], [0.0, 1.0]], train_labels=[0, 1], num_classes=2, epochs=10, search_rounds=1)["top1"]
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


@dataclass
class ProbeConfig:
    """Hyperparameters of the probe (defaults: the RemoteCLIP paper; SGD momentum 0.9 is not stated there)."""

    lr: float = 0.8
    weight_decay: float = 4e-5
    momentum: float = 0.9
    epochs: int = 1000
    batch_size: int = 10_000
    search_rounds: int = 5  # random-search rounds over (lr, weight_decay), round 0 the values above
    lr_range: tuple = (0.05, 5.0)
    weight_decay_range: tuple = (1e-6, 1e-3)
    val_fraction: float = 0.2  # share of each class held out for the search when no validation set is given
    seed: int = 0


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    """``top{k}`` accuracy and ``mean_per_class_recall`` of class scores (equal scores: lower class), percent."""
    num_classes = scores.shape[1]
    labels = labels.long()
    if labels.shape != (scores.shape[0],) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be (N,) = ({scores.shape[0]},) in [0, {num_classes})")
    k_max = min(max(ks), num_classes)
    correct = scores.float().sort(dim=1, descending=True, stable=True).indices[:, :k_max] == labels[:, None]
    metrics = {f"top{k}": correct[:, : min(k, k_max)].any(dim=1).double().mean().item() * 100 for k in ks}
    support = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[correct[:, 0]], minlength=num_classes).double()
    present = support > 0
    metrics["mean_per_class_recall"] = (hits[present] / support[present]).mean().item() * 100
    return metrics


def train_logistic_regression(features, labels, num_classes, lrs, weight_decays, config):
    """R probes trained at once, one per (lr, weight_decay), on the same batches: weights (R, D, C), biases (R, C)."""
    num_samples, dim = features.shape
    num_runs = len(lrs)
    lr0 = torch.tensor(lrs, dtype=torch.float32).view(num_runs, 1, 1)
    decay = torch.tensor(weight_decays, dtype=torch.float32).view(num_runs, 1, 1)
    weights = torch.zeros(num_runs, dim, num_classes, requires_grad=True)
    biases = torch.zeros(num_runs, 1, num_classes, requires_grad=True)
    buffers = [torch.zeros_like(weights), torch.zeros_like(biases)]
    batch_size = min(config.batch_size, num_samples)
    total_steps = config.epochs * math.ceil(num_samples / batch_size)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(num_samples, generator=generator)
        for start in range(0, num_samples, batch_size):
            batch = order[start : start + batch_size]
            logits = torch.baddbmm(biases, features[batch].expand(num_runs, -1, -1), weights)  # (R, B, C)
            loss = F.cross_entropy(logits.flatten(0, 1), labels[batch].repeat(num_runs), reduction="sum") / len(batch)
            grad_w, grad_b = torch.autograd.grad(loss, (weights, biases))
            scale = lr0 * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            with torch.no_grad():
                for param, grad, buffer in ((weights, grad_w, buffers[0]), (biases, grad_b, buffers[1])):
                    buffer.mul_(config.momentum).add_(grad + decay * param)
                    param.sub_(scale * buffer)
            step += 1
    return weights.detach(), biases.detach().squeeze(1)


def stratified_split(labels, fraction, seed):
    """Indices (kept, held out): ``fraction`` of each class held out (at least one of a class of two or more)."""
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        num_held = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(members[:num_held])
        kept.append(members[num_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def linear_probe(train_x, train_y, test_x, test_y, num_classes, config, val_x=None, val_y=None) -> dict:
    """Random search on a validation set (given, or a stratified share of train), the best setting refit on all
    training data: ``{"metrics", "lr", "weight_decay"}``."""
    if config.search_rounds < 1 or config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"search_rounds, epochs and batch_size must be >= 1, got {config}")
    if train_y.shape != (train_x.shape[0],) or train_x.shape[0] == 0:
        raise ValueError(f"train_labels {tuple(train_y.shape)} must match train_features {tuple(train_x.shape)}")
    if train_y.min() < 0 or train_y.max() >= num_classes:
        raise ValueError(f"train_labels must be in [0, {num_classes})")
    rng = np.random.default_rng(config.seed)
    lrs, decays = [config.lr], [config.weight_decay]
    for _ in range(config.search_rounds - 1):
        lrs.append(float(np.exp(rng.uniform(*np.log(config.lr_range)))))
        decays.append(float(np.exp(rng.uniform(*np.log(config.weight_decay_range)))))
    if config.search_rounds > 1:
        if val_x is None:
            fit, held = stratified_split(train_y, config.val_fraction, config.seed)
            fit_x, fit_y, val_x, val_y = train_x[fit], train_y[fit], train_x[held], train_y[held]
        else:
            fit_x, fit_y = train_x, train_y
        weights, biases = train_logistic_regression(fit_x, fit_y, num_classes, lrs, decays, config)
        val_logits = torch.baddbmm(biases[:, None], val_x.expand(len(lrs), -1, -1), weights)  # (R, V, C)
        accuracy = [classification_metrics(val_logits[run], val_y, ks=(1,))["top1"] for run in range(len(lrs))]
        best = max(range(len(lrs)), key=lambda run: (accuracy[run], -run))
        lrs, decays = [lrs[best]], [decays[best]]
    weights, biases = train_logistic_regression(train_x, train_y, num_classes, lrs[:1], decays[:1], config)
    return {"metrics": classification_metrics(test_x @ weights[0] + biases[0], test_y), "lr": lrs[0],
            "weight_decay": decays[0]}


def sample_shots(labels, shots, seed, exclude=None):
    """Indices of ``shots`` random samples per class (all of a class when it has fewer), sorted."""
    generator = torch.Generator().manual_seed(seed)
    available = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None:
        available[exclude] = False
    chosen = []
    for label in torch.unique(labels):
        members = torch.nonzero((labels == label) & available).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:shots]])
    return torch.cat(chosen).sort().values


def few_shot(train_x, train_y, test_x, test_y, num_classes, shots, seeds, config) -> dict:
    """Per k: for each seed, k samples per class fit the probe, the search validates on min(k, 4) others per class."""
    results = {}
    for k in shots:
        if k < 1:
            raise ValueError(f"shots must be >= 1, got {k}")
        per_seed = []
        for seed in seeds:
            fit = sample_shots(train_y, k, seed)
            val = sample_shots(train_y, min(k, 4), seed + 10_000, exclude=fit)
            run_config = replace(config, seed=seed, search_rounds=config.search_rounds if len(val) else 1)
            outcome = linear_probe(train_x[fit], train_y[fit], test_x, test_y, num_classes, run_config,
                                   train_x[val] if len(val) else None, train_y[val] if len(val) else None)
            per_seed.append(outcome["metrics"]["top1"])
        results[f"{k}-shot"] = {"top1_mean": float(np.mean(per_seed)), "top1_std": float(np.std(per_seed)),
                                "top1_per_seed": per_seed}
    return results


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RsLinearProbe(evaluate.Metric):
    """Linear-probe (or, with ``shots``, few-shot) metrics of test features, the probe fitted on training features."""

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

    def _compute(self, predictions, references, train_features, train_labels, num_classes, shots=None,
                 seeds=(0, 1, 2), **options):
        unknown = sorted(set(options) - {field.name for field in fields(ProbeConfig)})
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; probe options: {[f.name for f in fields(ProbeConfig)]}")
        config = ProbeConfig(**options)
        train_x = torch.from_numpy(np.asarray(train_features, dtype=np.float32))
        train_y = torch.as_tensor(np.asarray(train_labels)).long()
        test_x = torch.from_numpy(np.asarray(predictions, dtype=np.float32))
        test_y = torch.as_tensor(np.asarray(references)).long()
        if shots is not None:
            return few_shot(train_x, train_y, test_x, test_y, num_classes, [shots] if isinstance(shots, int) else shots,
                            seeds, config)
        outcome = linear_probe(train_x, train_y, test_x, test_y, num_classes, config)
        return {**outcome["metrics"], "lr": outcome["lr"], "weight_decay": outcome["weight_decay"]}
