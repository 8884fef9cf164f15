"""The one writer of the paper-layout Markdown tables: the runner's report and the model card both build theirs here.

Layouts: retrieval as the paper's Table II (one row per test set and model; R@1/5/10 in both directions, mean
recall), zero-shot as Table III (one column per benchmark, in the paper's order, and the average), counting as
RemoteCount's top-k accuracy with the count written as words and as digits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..benchmark_registry import display_name
from ..prompts import MAX_COUNT

#: Retrieval metric keys of the results JSON, in the paper's column order (Table II).
RETRIEVAL_COLUMNS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall")
RETRIEVAL_HEADER = ("i2t R@1", "R@5", "R@10", "t2i R@1", "R@5", "R@10", "mR")
#: Decimals of the metrics (percentages) in tables and on model cards; results JSON keeps full precision.
PERCENT_DECIMALS = 2
#: How the two counting variants of the results JSON are labelled.
COUNT_STYLES = (("metrics", "words"), ("metrics_digits", "digits"))


def cell(value: float | None) -> str:
    """A metric as a table cell: `PERCENT_DECIMALS` decimals, "–" when not evaluated."""
    return "–" if value is None else f"{value:.{PERCENT_DECIMALS}f}"


def average(values: Sequence[float | None]) -> float | None:
    """Mean of `values`, or None when any is missing (a partial average would not compare with the paper's)."""
    if not values or any(value is None for value in values):
        return None
    return sum(values) / len(values)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of string cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def retrieval_table(rows: Sequence[tuple[str, str | None, Mapping[str, float] | Sequence[float]]]) -> str:
    """Table II: one row per (benchmark, model label, metrics by key or in `RETRIEVAL_COLUMNS` order); the
    model column only when some row has a label."""
    with_model = any(label is not None for _, label, _ in rows)
    header = ["test set"] + (["model"] if with_model else []) + list(RETRIEVAL_HEADER)
    lines = []
    for benchmark, label, metrics in rows:
        values = ([metrics.get(key) for key in RETRIEVAL_COLUMNS] if isinstance(metrics, Mapping)
                  else list(metrics))
        lines.append([display_name(benchmark)] + ([label or ""] if with_model else []) + [cell(v) for v in values])
    return markdown_table(header, lines)


def per_benchmark_table(benchmarks: Sequence[str], rows: Sequence[tuple[str | None, Sequence[float | None]]]) -> str:
    """Table III: one column per benchmark and the average, one row per (model label, values): `values` holds
    one value per benchmark, optionally followed by the average (computed by `average` when absent)."""
    with_model = any(label is not None for label, _ in rows)
    header = (["model"] if with_model else []) + [display_name(name) for name in benchmarks] + ["average"]
    lines = []
    for label, values in rows:
        values = list(values) if len(values) > len(benchmarks) else [*values, average(values)]
        lines.append(([label or ""] if with_model else []) + [cell(value) for value in values])
    return markdown_table(header, lines)


def counting_table(rows: Sequence[tuple[str, str | None, str, Mapping[str, float]]]) -> str:
    """RemoteCount top-1…top-10 accuracy, one row per (benchmark, model label, "words"/"digits", metrics)."""
    with_model = any(label is not None for _, label, _, _ in rows)
    header = ["benchmark"] + (["model"] if with_model else []) + ["numbers"] + [
        f"top-{k}" for k in range(1, MAX_COUNT + 1)]
    lines = [[display_name(benchmark)] + ([label or ""] if with_model else []) + [style]
             + [cell(metrics.get(f"top{k}")) for k in range(1, MAX_COUNT + 1)]
             for benchmark, label, style, metrics in rows]
    return markdown_table(header, lines)


__all__ = ["COUNT_STYLES", "PERCENT_DECIMALS", "RETRIEVAL_COLUMNS", "RETRIEVAL_HEADER", "average", "cell", "counting_table",
           "markdown_table", "per_benchmark_table", "retrieval_table"]
