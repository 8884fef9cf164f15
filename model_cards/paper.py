"""Published RemoteCLIP numbers quoted on the cards, copied from Liu et al., IEEE TGRS 2024 (arXiv 2306.11029)."""

from __future__ import annotations

from rclip_hf.benchmark_registry import REMOTECLIP_CITATION

#: Where every number in this module comes from.
PAPER_SOURCE = REMOTECLIP_CITATION
PAPER_URL = "https://arxiv.org/abs/2306.11029"

#: The paper's architecture labels, keyed by rclip_hf preset name.
PAPER_ARCH_LABELS = {"RN50": "RN50", "ViT-B-32": "ViT-B/32", "ViT-L-14": "ViT-L/14"}

#: Table II: {benchmark: {model label: values in `rclip_hf.evaluation.tables.RETRIEVAL_COLUMNS` order}}.
PAPER_RETRIEVAL: dict[str, dict[str, tuple[float, ...]]] = {
    "rsitmd": {
        "RemoteCLIP RN50": (23.67, 47.57, 64.60, 19.29, 51.55, 70.58, 46.21),
        "RemoteCLIP ViT-B/32": (27.88, 50.66, 65.71, 22.17, 56.46, 73.41, 49.38),
        "RemoteCLIP ViT-L/14": (28.76, 52.43, 63.94, 23.76, 59.51, 74.73, 50.52),
        "best prior (Rahhal et al. 2022, B/32)": (19.69, 40.26, 54.42, 17.61, 49.73, 66.59, 41.38),
    },
    "rsicd": {
        "RemoteCLIP RN50": (13.36, 32.94, 44.83, 10.76, 32.83, 48.75, 30.58),
        "RemoteCLIP ViT-B/32": (17.02, 37.97, 51.51, 13.71, 37.11, 54.25, 35.26),
        "RemoteCLIP ViT-L/14": (18.39, 37.42, 51.05, 14.73, 39.93, 56.58, 36.35),
        "best prior (Rahhal et al. 2022)": (10.70, 29.64, 41.53, 9.14, 28.96, 44.59, 27.43),
    },
    "ucm": {
        "RemoteCLIP RN50": (13.33, 50.48, 74.76, 15.24, 57.14, 84.57, 49.25),
        "RemoteCLIP ViT-B/32": (20.48, 59.85, 83.33, 18.67, 61.52, 94.29, 56.36),
        "RemoteCLIP ViT-L/14": (19.05, 54.29, 80.95, 17.71, 62.19, 93.90, 54.68),
    },
}

#: Table III: zero-shot top-1 accuracy in `rclip_hf.benchmark_registry.paper_order("zero_shot_classification")`, then
#: the paper's average.
PAPER_ZERO_SHOT: dict[str, tuple[float, ...]] = {
    "CLIP RN50": (26.56, 34.24, 40.42, 42.02, 45.54, 46.96, 53.57, 57.35, 62.14, 64.52, 64.54, 69.42, 50.61),
    "RemoteCLIP RN50": (13.95, 33.03, 56.25, 17.19, 40.68, 45.51, 53.24, 86.55, 62.86, 70.16, 66.93, 95.15, 53.46),
    "CLIP ViT-B/32": (28.88, 37.35, 51.18, 47.11, 55.29, 58.95, 60.92, 65.65, 59.31, 68.62, 58.35, 80.61, 56.02),
    "RemoteCLIP ViT-B/32": (24.18, 39.50, 63.12, 35.96, 59.28, 57.71, 70.33, 91.30, 68.57, 77.96, 64.94, 96.12,
                            62.41),
    "CLIP ViT-L/14": (40.23, 47.94, 58.33, 60.21, 64.89, 73.78, 69.23, 69.88, 72.15, 76.83, 67.11, 87.50, 65.67),
    "RemoteCLIP ViT-L/14": (37.22, 52.82, 70.83, 59.94, 66.32, 68.75, 79.84, 87.90, 72.32, 90.05, 74.90, 94.66,
                            71.30),
}

#: Table IV: averages over the 12 zero-shot datasets, (linear probe, k-NN).
PAPER_LINEAR_PROBE_KNN: dict[str, tuple[float, float]] = {
    "RemoteCLIP RN50": (92.06, 92.04),
    "CLIP RN50": (89.47, 89.42),
    "RemoteCLIP ViT-B": (93.93, 93.77),
    "CLIP ViT-B": (92.31, 92.15),
}

def paper_rows_for(arch: str | None, kind: str) -> list[str]:
    """Paper model labels to show next to a model of `arch` (`kind`: "retrieval" or "zero_shot"); all when unknown."""
    label = PAPER_ARCH_LABELS.get(arch or "")
    if kind == "retrieval":
        if label is None:
            return [f"RemoteCLIP {name}" for name in PAPER_ARCH_LABELS.values()]
        return [f"RemoteCLIP {label}"]
    if label is None:
        return [f"RemoteCLIP {name}" for name in PAPER_ARCH_LABELS.values()]
    return [f"CLIP {label}", f"RemoteCLIP {label}"]
