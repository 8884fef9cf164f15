"""Card plots (matplotlib, Agg backend, PNG): zero-shot accuracy, recall@k, counting confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from rclip_hf.benchmark_registry import display_name, paper_order
from rclip_hf.evaluation.tables import RETRIEVAL_COLUMNS

from .card import Plot
from .paper import PAPER_ARCH_LABELS, PAPER_RETRIEVAL, PAPER_ZERO_SHOT

RECALL_KS = (1, 5, 10)
DPI = 110


def _task_benchmarks(results: Mapping[str, Any], task: str) -> list[str]:
    return [name for name, entry in results["benchmarks"].items() if entry["task"] == task]


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_zero_shot(results: Mapping[str, Any], path: Path, arch: str | None = None,
                   baseline: Mapping[str, Any] | None = None, baseline_name: str = "starting point") -> bool:
    """Horizontal bars of top-1 accuracy per zero-shot benchmark (+ starting point, + paper's same-arch value)."""
    names = _task_benchmarks(results, "zero_shot_classification")
    if not names:
        return False
    y = np.arange(len(names))  # one row per benchmark
    height = 0.38 if baseline is not None else 0.6
    figure, axes = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    ours = [results["benchmarks"][name]["metrics"]["top1"] for name in names]
    axes.barh(y, ours, height=height, color="tab:blue", label="this model")
    if baseline is not None:
        theirs = [baseline["benchmarks"].get(name, {}).get("metrics", {}).get("top1", np.nan) for name in names]
        axes.barh(y + height, theirs, height=height, color="tab:gray", label=baseline_name)
    label = PAPER_ARCH_LABELS.get(arch or "")
    if label is not None:
        paper = PAPER_ZERO_SHOT[f"RemoteCLIP {label}"]
        points = [(index, paper[paper_order("zero_shot_classification").index(name)]) for index, name in enumerate(names)
                  if name in paper_order("zero_shot_classification")]
        if points:
            rows, values = zip(*points)
            axes.scatter(values, rows, marker="D", color="black", zorder=3, label=f"RemoteCLIP {label} (paper)")
    offset = height if baseline is not None else 0.0
    for index, name in enumerate(names):
        num_classes = results["benchmarks"][name].get("num_classes")
        if num_classes:
            axes.vlines(100.0 / num_classes, index - 0.4, index + 0.4 + offset, colors="tab:red", linewidth=1,
                        linestyles=":")
    axes.plot([], [], color="tab:red", linestyle=":", label="chance")
    axes.set_yticks(y + offset / 2, [display_name(name) for name in names])
    axes.set_xlim(0, 100)
    axes.set_xlabel("top-1 accuracy (%)")
    axes.set_title("Zero-shot classification")
    axes.invert_yaxis()
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    _save(figure, path)
    return True


def plot_recall_at_k(results: Mapping[str, Any], path: Path, arch: str | None = None,
                     baseline: Mapping[str, Any] | None = None, baseline_name: str = "starting point") -> bool:
    """Recall@1/5/10 per retrieval benchmark, both directions (+ starting point, + paper's same-arch curve)."""
    names = _task_benchmarks(results, "retrieval")
    if not names:
        return False
    figure, all_axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    label = PAPER_ARCH_LABELS.get(arch or "")
    for axes, name in zip(all_axes[0], names):
        sources = [("this model", results, "-")]
        if baseline is not None and name in baseline["benchmarks"]:
            sources.append((baseline_name, baseline, "--"))
        for source_label, source, style in sources:
            metrics = source["benchmarks"][name]["metrics"]
            for direction, color in (("i2t", "tab:blue"), ("t2i", "tab:orange")):
                axes.plot(RECALL_KS, [metrics[f"{direction}_R@{k}"] for k in RECALL_KS], style, marker="o",
                          color=color, label=f"{direction} {source_label}")
        paper = PAPER_RETRIEVAL.get(name, {}).get(f"RemoteCLIP {label}") if label else None
        if paper is not None:
            for direction, color in (("i2t", "tab:blue"), ("t2i", "tab:orange")):
                values = [paper[RETRIEVAL_COLUMNS.index(f"{direction}_R@{k}")] for k in RECALL_KS]
                axes.plot(RECALL_KS, values, ":", marker="s", color=color, label=f"{direction} paper")
        axes.set_xticks(RECALL_KS)
        axes.set_ylim(0, 100)
        axes.set_xlabel("k")
        axes.set_ylabel("recall@k (%)")
        axes.set_title(display_name(name))
        axes.legend(fontsize=7)
    _save(figure, path)
    return True


def plot_counting_confusion(results: Mapping[str, Any], path: Path) -> bool:
    """Row-normalised confusion matrix (true count × predicted count) of the first counting benchmark."""
    names = [name for name in _task_benchmarks(results, "counting")
             if "confusion_matrix" in results["benchmarks"][name]["metrics"]]
    if not names:
        return False
    matrix = np.asarray(results["benchmarks"][names[0]]["metrics"]["confusion_matrix"], dtype=float)  # (10, 10)
    counts = np.arange(1, matrix.shape[0] + 1)
    figure, axes = plt.subplots(figsize=(5.2, 4.6))
    image = axes.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            if matrix[row, column] >= 0.005:
                axes.text(column, row, f"{matrix[row, column]:.2f}", ha="center", va="center", fontsize=6,
                          color="white" if matrix[row, column] > 0.5 else "black")
    axes.set_xticks(range(len(counts)), counts)
    axes.set_yticks(range(len(counts)), counts)
    axes.set_xlabel("predicted count")
    axes.set_ylabel("true count")
    axes.set_title(f"{display_name(names[0])}: confusion matrix (count words)")
    figure.colorbar(image, ax=axes, fraction=0.046)
    _save(figure, path)
    return True


def make_plots(results: Mapping[str, Any], plot_dir: Path, arch: str | None = None,
               baseline: Mapping[str, Any] | None = None, baseline_name: str = "starting point") -> list[Plot]:
    """Write every plot the results allow into `plot_dir`; returns them with paths relative to its parent."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    drawn = {
        "zero_shot_accuracy.png": ("Zero-shot top-1 accuracy per dataset",
                                   plot_zero_shot(results, plot_dir / "zero_shot_accuracy.png", arch, baseline,
                                                  baseline_name)),
        "recall_at_k.png": ("Retrieval recall@k",
                            plot_recall_at_k(results, plot_dir / "recall_at_k.png", arch, baseline, baseline_name)),
        "remotecount_confusion.png": ("Counting confusion matrix",
                                      plot_counting_confusion(results, plot_dir / "remotecount_confusion.png")),
    }
    return [Plot(path=f"{plot_dir.name}/{filename}", title=title) for filename, (title, made) in drawn.items() if made]
