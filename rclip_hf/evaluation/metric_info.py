"""The `evaluate.MetricInfo` shared by the thin `evaluate` modules in metrics/ (imports evaluate lazily)."""

from __future__ import annotations

REMOTECLIP_CITATION = """@article{liu2024remoteclip,
  title={RemoteCLIP: A Vision Language Foundation Model for Remote Sensing},
  author={Liu, Fan and Chen, Delong and Guan, Zhangqingyun and Zhou, Xiaocong and Zhu, Jiale and Ye, Qiaolin and Fu, Liyong and Zhou, Jun},
  journal={IEEE Transactions on Geoscience and Remote Sensing}, year={2024}}
"""


def metric_info(description: str, inputs_description: str, row_features: dict[str, str] | None = None):
    """MetricInfo whose per-row inputs are ``row_features`` (name -> "vector" of float32 or "int"); default
    ``predictions`` (a float32 vector per sample) and ``references`` (an int64 per sample)."""
    import datasets
    import evaluate

    kinds = {"vector": datasets.Sequence(datasets.Value("float32")), "int": datasets.Value("int64")}
    row_features = row_features or {"predictions": "vector", "references": "int"}
    return evaluate.MetricInfo(
        description=description,
        citation=REMOTECLIP_CITATION,
        inputs_description=inputs_description,
        features=datasets.Features({name: kinds[kind] for name, kind in row_features.items()}),
    )
