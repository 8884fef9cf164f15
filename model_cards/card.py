"""Model card (README.md with `model-index`) of a RemoteCLIP folder, filled from the evaluation runner's results JSON."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import (
    EvalResult,
    EvalResultEntry,
    ModelCard,
    ModelCardData,
    eval_result_entries_to_yaml,
    metadata_load,
)
from huggingface_hub.constants import EVAL_RESULTS_FOLDER
from huggingface_hub.repocard_data import model_index_to_eval_results

from rclip_hf.benchmark_registry import (
    REMOTECLIP_BIBTEX,
    benchmark_of_repo_id,
    benchmark_repo_id,
    display_name,
    paper_order,
)
from rclip_hf.errors import UserError
from rclip_hf.evaluation.tables import (
    COUNT_STYLES,
    PERCENT_DECIMALS,
    cell,
    counting_table,
    markdown_table,
    per_benchmark_table,
    retrieval_table,
)
from rclip_hf.usage import CODE_URL, usage_kinds, usage_section

from .paper import (
    PAPER_ARCH_LABELS,
    PAPER_LINEAR_PROBE_KNN,
    PAPER_RETRIEVAL,
    PAPER_SOURCE,
    PAPER_URL,
    PAPER_ZERO_SHOT,
    paper_rows_for,
)

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
#: Hub task id (huggingface.co/tasks) and readable name of each results-JSON task; retrieval metrics take the task
#: of their direction (`RETRIEVAL_TASKS`).
TASKS = {
    "retrieval": ("image-feature-extraction", "Zero-shot image-text retrieval (both directions)"),
    "zero_shot_classification": ("zero-shot-image-classification", "Zero-shot classification"),
    "counting": ("zero-shot-image-classification", "Zero-shot object counting (caption scoring)"),
    "linear_probe": ("image-classification", "Linear probe on frozen image features"),
    "knn": ("image-classification", "k-NN on frozen image features"),
    "few_shot": ("image-classification", "Few-shot linear probe"),
}
#: Hub task id and readable name of each retrieval direction.
RETRIEVAL_TASKS = {"i2t": ("image-to-text", "Zero-shot image-to-text retrieval"),
                   "t2i": ("text-to-image", "Zero-shot text-to-image retrieval")}
#: Metric groups of a results-JSON entry: the main one and the counting digit variant.
METRIC_GROUPS = ("metrics", "metrics_digits")
_TOPK = re.compile(r"^top(?P<k>\d+)$")
_RECALL = re.compile(r"^(?P<direction>i2t|t2i)_R@(?P<k>\d+)$")
_SHOTS = re.compile(r"^(?P<shots>\d+)-shot\.top1_(?P<statistic>mean|std)$")
_DIRECTIONS = {"i2t": "image-to-text", "t2i": "text-to-image"}


class ResultsFormatError(UserError, ValueError):
    """The results JSON is not in the layout `rclip_hf.evaluation.runner` writes; the message names file and key."""


@dataclass(frozen=True)
class MetricEntry:
    """One scalar metric of the results JSON: `benchmarks[benchmark]`, then path `group` ('/'-separated), then `key`."""

    benchmark: str
    task: str
    split: str | None
    group: str
    key: str
    value: float

    @property
    def shown(self) -> float:
        """The value as the card shows it, in YAML and tables: every card metric is a percentage, resolved to
        ``PERCENT_DECIMALS`` decimals (float32 noise such as 14.28571492433548 stays in the results JSON only)."""
        return round(self.value, PERCENT_DECIMALS)


@dataclass
class Plot:
    """A PNG shown on the card: path relative to the card, and its alt text."""

    path: str
    title: str


@dataclass
class CardInputs:
    """Everything the card shows besides the results JSON itself."""

    base_model: str | None = None  # Hub id of the starting point (card metadata)
    starting_point: str | None = None  # where training started, in words (a folder, a Hub id, a random init)
    arch: str | None = None  # overrides the results' "arch" (e.g. found from the folder's config)
    arch_description: str | None = None  # e.g. from `architecture_summary`; default: the arch name
    summary: str | None = None  # the card's opening sentence; default from the arch and the training summary
    repo_id: str | None = None
    model_name: str | None = None
    license: str = "apache-2.0"
    datasets: list[str] = field(default_factory=list)
    benchmarks_owner: str | None = None  # Hub owner of the benchmark datasets (default: the repo's owner)
    training: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    baseline_name: str = "starting point"
    results_file: str = "results.json"
    plots: list[Plot] = field(default_factory=list)
    model_dir: str | None = None  # the folder the card describes: its files decide the "How to use" snippets


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and check a results JSON (`benchmarks.<name>.task` and `metrics`, as the evaluation runner writes it);
    raises `ResultsFormatError` naming file and key."""
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ResultsFormatError(f"{path}: cannot read results JSON ({error})") from None
    check_results(results, source=str(path))
    return results


def check_results(results: Any, source: str = "results") -> None:
    """Raise `ResultsFormatError` unless `results` has `benchmarks.<name>.task` and numeric `metrics`."""
    if not isinstance(results, Mapping) or not isinstance(results.get("benchmarks"), Mapping):
        raise ResultsFormatError(f"{source}: key 'benchmarks' (an object of benchmark results) is missing")
    for name, entry in results["benchmarks"].items():
        where = f"{source}: benchmarks.{name}"
        if not isinstance(entry, Mapping) or "task" not in entry or not isinstance(entry.get("metrics"), Mapping):
            raise ResultsFormatError(f"{where} needs 'task' and a 'metrics' object, found {entry!r:.120}")
        if entry["task"] not in TASKS:
            raise ResultsFormatError(f"{where}.task is {entry['task']!r}; known tasks: {', '.join(TASKS)}")
        for group in METRIC_GROUPS:
            for key, value in entry.get(group, {}).items():
                if key != "confusion_matrix" and not isinstance(value, int | float | Mapping):
                    raise ResultsFormatError(f"{where}.{group}.{key} is {value!r:.60}, expected a number")


def iter_metrics(results: Mapping[str, Any]) -> Iterator[MetricEntry]:
    """Every scalar metric of a results dict: each entry's `metrics` / `metrics_digits` and those of its probe
    sub-entries (`linear_probe`, `knn`, `few_shot`); nested objects are flattened with '.', lists are skipped
    (confusion matrices, per-seed values)."""

    def leaves(prefix: str, values: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
        for key, value in values.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                yield from leaves(f"{name}.", value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                yield name, float(value)

    for benchmark, entry in results["benchmarks"].items():
        parts = [(entry["task"], "", entry)] + [
            (value["task"], f"{key}/", value) for key, value in entry.items()
            if isinstance(value, Mapping) and value.get("task") in TASKS and isinstance(value.get("metrics"), Mapping)]
        for task, prefix, part in parts:
            for group in METRIC_GROUPS:
                for key, value in leaves("", part.get(group, {})):
                    yield MetricEntry(benchmark, task, entry.get("split"), f"{prefix}{group}", key, value)


def describe_metric(entry: MetricEntry) -> tuple[str, str, dict[str, Any] | None]:
    """(Hub metric type, readable name, args) of one metric of the results JSON."""
    variant = " (digits)" if entry.group.endswith("metrics_digits") else ""
    style = {"count_style": "digits" if variant else "words"} if entry.task == "counting" else {}
    if match := _RECALL.match(entry.key):
        direction = _DIRECTIONS[match["direction"]]
        return "recall", f"{direction} R@{match['k']}", {"k": int(match["k"]), "direction": direction}
    if entry.key == "mean_recall":
        return "mean_recall", "mean recall (R@1/5/10, both directions)", None
    if match := _TOPK.match(entry.key):
        return "accuracy", f"top-{match['k']} accuracy{variant}", {"k": int(match["k"]), **style}
    if match := _SHOTS.match(entry.key):
        statistic = "mean" if match["statistic"] == "mean" else "standard deviation"
        return (f"accuracy_{match['statistic']}", f"{match['shots']}-shot top-1 accuracy ({statistic} over seeds)",
                {"shots": int(match["shots"])})
    if entry.key == "mean_per_class_recall":
        return "recall", f"mean per-class recall{variant}", {"average": "macro", **style}
    return entry.key, f"{entry.key}{variant}", style or None


def metric_task(entry: MetricEntry) -> tuple[str, str]:
    """(Hub task id, readable name) of one metric: its task's, or its direction's for retrieval recall."""
    match = _RECALL.match(entry.key) if entry.task == "retrieval" else None
    return RETRIEVAL_TASKS[match["direction"]] if match else TASKS[entry.task]


def benchmarks_owner(inputs: CardInputs) -> str | None:
    """The Hub owner of the benchmark datasets a card links: `inputs.benchmarks_owner`, else the repo's owner."""
    if inputs.benchmarks_owner:
        return inputs.benchmarks_owner
    return inputs.repo_id.split("/")[0] if inputs.repo_id and "/" in inputs.repo_id else None


def eval_results_from_results(results: Mapping[str, Any], owner: str | None = None) -> list[EvalResult]:
    """One `EvalResult` per scalar metric, its dataset the benchmark's Hub id under `owner` (`OWNER/rs-{name}`, as
    `build_benchmarks --push-to-hub` publishes it); `metric_config` holds its results-JSON path (`metrics/top1`)."""
    eval_results = []
    for entry in iter_metrics(results):
        task_type, task_name = metric_task(entry)
        metric_type, metric_name, metric_args = describe_metric(entry)
        eval_results.append(EvalResult(
            task_type=task_type, task_name=task_name, dataset_type=benchmark_repo_id(entry.benchmark, owner),
            dataset_name=display_name(entry.benchmark), dataset_split=entry.split,
            metric_type=metric_type, metric_name=metric_name, metric_args=metric_args,
            metric_config=f"{entry.group}/{entry.key}", metric_value=entry.shown,
        ))
    return eval_results


def eval_results_files(results: Mapping[str, Any], inputs: CardInputs) -> dict[str, str]:
    """The Hub's `.eval_results/` files (huggingface.co/docs/hub/eval-results): one YAML list per benchmark
    (`.eval_results/<benchmark>.yaml`), one entry per metric: dataset id and task id (the results-JSON path),
    value, date, source (the model repo) and a readable note."""
    owner = benchmarks_owner(inputs)
    source = {"source_url": f"https://huggingface.co/{inputs.repo_id}", "source_name": "Model card"} \
        if inputs.repo_id else {}
    entries: dict[str, list[EvalResultEntry]] = {}
    for entry in iter_metrics(results):
        _, task_name = metric_task(entry)
        _, metric_name, _ = describe_metric(entry)
        entries.setdefault(entry.benchmark, []).append(EvalResultEntry(
            dataset_id=benchmark_repo_id(entry.benchmark, owner), task_id=f"{entry.group}/{entry.key}",
            value=entry.shown, date=results.get("created"), notes=f"{task_name}: {metric_name} (percent)", **source))
    return {f"{EVAL_RESULTS_FOLDER}/{benchmark}.yaml": yaml.safe_dump(eval_result_entries_to_yaml(values),
                                                                      sort_keys=False, allow_unicode=True)
            for benchmark, values in entries.items()}


def _arch(results: Mapping[str, Any], inputs: CardInputs) -> str | None:
    return inputs.arch or results.get("arch")


def _model_rows(results: Mapping[str, Any], inputs: CardInputs) -> list[tuple[str, Mapping[str, Any]]]:
    """(row label, results dict) for this model and, when given, its starting point."""
    rows = [("**this model**", results)]
    if inputs.baseline is not None:
        rows.append((inputs.baseline_name, inputs.baseline))
    return rows


def _metrics(results: Mapping[str, Any], benchmark: str, group: str = "metrics") -> Mapping[str, Any]:
    return results["benchmarks"].get(benchmark, {}).get(group, {})


def _benchmarks_of(results: Mapping[str, Any], task: str) -> list[str]:
    return [name for name, entry in results["benchmarks"].items() if entry["task"] == task]


def retrieval_section(results: Mapping[str, Any], inputs: CardInputs) -> str:
    """Table II layout: per test set, R@1/5/10 both directions and mean recall, with the paper's rows."""
    benchmarks = _benchmarks_of(results, "retrieval")
    if not benchmarks:
        return ""
    rows: list[tuple[str, str | None, Any]] = []
    for benchmark in benchmarks:
        rows += [(benchmark, label, _metrics(source, benchmark)) for label, source in _model_rows(results, inputs)]
        wanted = paper_rows_for(_arch(results, inputs), "retrieval")
        rows += [(benchmark, f"{label} (paper)", numbers) for label, numbers in PAPER_RETRIEVAL.get(benchmark, {}).items()
                 if label in wanted or label.startswith("best prior")]
    return ("### Image–text retrieval\n\nRecall@k as in the paper's Table II (image→text: an image counts as found "
            "when any of its captions is in the top k).\n\n" + retrieval_table(rows))


def zero_shot_section(results: Mapping[str, Any], inputs: CardInputs) -> str:
    """Table III layout (the paper's 12 datasets and average), then any other zero-shot benchmarks."""
    benchmarks = _benchmarks_of(results, "zero_shot_classification")
    if not benchmarks:
        return ""
    parts = [("### Zero-shot classification\n\nTop-1 accuracy, template \"a satellite photo of {class name}.\" "
              "unless the results say otherwise.")]
    table_iii = paper_order("zero_shot_classification")
    if any(name in benchmarks for name in table_iii):
        rows = [(label, [_metrics(source, name).get("top1") for name in table_iii])
                for label, source in _model_rows(results, inputs)]
        rows += [(f"{label} (paper)", PAPER_ZERO_SHOT[label]) for label in paper_rows_for(_arch(results, inputs),
                                                                                          "zero_shot")]
        parts.append(per_benchmark_table(table_iii, rows) + "\n\n\"–\": not evaluated here; the average is given "
                     "only when all 12 datasets were evaluated.")
    others = [name for name in benchmarks if name not in table_iii]
    if others:
        header = ["benchmark", "split", "classes", "samples"] + [
            f"{label} top-1" for label, _ in _model_rows(results, inputs)] + ["top-5", "mean per-class recall"]
        rows = []
        for name in others:
            entry = results["benchmarks"][name]
            top1 = [cell(_metrics(source, name).get("top1")) for _, source in _model_rows(results, inputs)]
            rows.append([display_name(name), str(entry.get("split", "")), str(entry.get("num_classes", "")),
                         str(entry.get("num_samples", ""))] + top1
                        + [cell(entry["metrics"].get("top5")), cell(entry["metrics"].get("mean_per_class_recall"))])
        parts.append("Benchmarks outside the paper's table (no published number to compare with; top-5 and "
                     "per-class recall are this model's):\n\n" + markdown_table(header, rows))
    return "\n\n".join(parts)


def counting_section(results: Mapping[str, Any], inputs: CardInputs) -> str:
    """RemoteCount-style top-k accuracy, count words and digits, for this model and its starting point."""
    benchmarks = _benchmarks_of(results, "counting")
    if not benchmarks:
        return ""
    rows = [(name, label, style, _metrics(source, name, group)) for name in benchmarks
            for label, source in _model_rows(results, inputs) for group, style in COUNT_STYLES
            if _metrics(source, name, group)]
    return ("### Object counting\n\nThe number in each caption is replaced by one…ten (or 1…10) and the ten captions "
            "are scored against the image; top-k: the true count is among the k best. Chance top-1 is 10 %. The "
            "paper reports RemoteCount only as a figure, so no published numbers are quoted.\n\n"
            + counting_table(rows))


def other_tasks_section(results: Mapping[str, Any]) -> str:
    """Linear probe / k-NN / few-shot metrics as a flat table, with the paper's Table IV averages for reference."""
    entries = [entry for entry in iter_metrics(results) if entry.task in ("linear_probe", "knn", "few_shot")]
    if not entries:
        return ""
    rows = [[display_name(entry.benchmark), TASKS[entry.task][1], entry.key, cell(entry.value)] for entry in entries]
    paper = "; ".join(f"{label} {probe:.2f} / {knn:.2f}" for label, (probe, knn) in PAPER_LINEAR_PROBE_KNN.items())
    return ("### Frozen-feature classification\n\n" + markdown_table(["benchmark", "protocol", "metric", "value"], rows)
            + f"\n\nPaper (Table IV), linear probe / k-NN averages over its 12 datasets: {paper}.")


def training_section(inputs: CardInputs) -> str:
    """This model's training (from the training summary) and the paper's recipe."""
    paper = ("The paper's recipe: CLIP initialised from OpenAI weights and trained further with the symmetric "
             "InfoNCE loss on 165,745 images × 5 captions (828,725 pairs) from 17 datasets: RET-3 human captions "
             "(RSICD, RSITMD, UCM-captions), DET-10 boxes turned into captions (Box-to-Caption) and SEG-4 masks turned "
             "into boxes (Mask-to-Box) then captions, de-duplicated with p-Hash. Random resized crop, horizontal flip "
             "and 90° rotations; Adam, warm-up then cosine decay, AMP; 108,215 steps (RN50 lr 7e-5 / batch 256, "
             "ViT-B/32 4e-5 / 256, ViT-L/14 1e-4 / 28).")
    if not inputs.training:
        return ("No training summary was given: this folder is a conversion of a RemoteCLIP checkpoint "
                "(`python -m rclip_hf.convert`, outputs equal to open_clip's within 1e-4), trained as follows.\n\n"
                + paper)
    rows = [[f"`{key}`", f"`{value}`"] for key, value in inputs.training.items()]
    start = f" from {inputs.starting_point}" if inputs.starting_point else ""
    return (f"Trained with rclip-hf (`training_scripts/train.py`, accelerate){start}:\n\n"
            + markdown_table(["setting", "value"], rows) + "\n\nFor comparison, " + paper[0].lower() + paper[1:])


def limitations_text(results: Mapping[str, Any], inputs: CardInputs) -> str:
    """Honest limits of the model and of its numbers."""
    lines = [
        ("- Trained on RGB satellite and aerial imagery with template-like captions; Box-to-Caption captions describe "
         "object classes, counts and coarse positions only, so fine attributes, colours and relations are weak."),
        ("- Counting by caption scoring is coarse: read the top-k numbers and the confusion matrix, not top-1 alone; "
         "zero-shot accuracy depends on the prompt wording and the class names."),
        ("- Benchmarks overlap in sources with the training corpus; rclip-hf removes near-duplicate test images "
         "(p-Hash) from the corpus it builds, but other leakage (same scenes, other crops) is possible."),
    ]
    if _arch(results, inputs) not in PAPER_ARCH_LABELS:
        lines.insert(0, "- **This is not an official RemoteCLIP model.** Its architecture is none of the paper's (RN50, "
                        "ViT-B/32, ViT-L/14); its numbers show the pipeline working, not RemoteCLIP's quality, and "
                        "are not comparable to the paper's.")
    if inputs.training and inputs.training.get("note"):
        lines.insert(0, f"- {inputs.training['note']}")
    return "\n".join(lines)


def licence_paragraph(inputs: CardInputs) -> str:
    """Licence paragraph: the card's licence and the terms of the data behind the weights."""
    return (f"Released under `{inputs.license}`. The training and evaluation datasets (DOTA, DIOR, iSAID, AID, "
            "RSSCN7, RSICD, RSITMD, UCM, …) are academic datasets for research use; their terms apply to the data "
            "and may restrict uses of models trained on it.")


def build_model_card(results: Mapping[str, Any], inputs: CardInputs) -> ModelCard:
    """The model card (YAML metadata with `model-index` + Markdown body) for `results`."""
    check_results(results, source=inputs.results_file)
    if inputs.baseline is not None:
        check_results(inputs.baseline, source=f"{inputs.results_file} baseline")
    arch = _arch(results, inputs)
    model_name = inputs.model_name or Path(str(results.get("model", "remoteclip"))).name
    card_data = ModelCardData(
        model_name=model_name, base_model=inputs.base_model, license=inputs.license,
        datasets=inputs.datasets or None, library_name="transformers", pipeline_tag="zero-shot-image-classification",
        tags=["remote-sensing", "clip", "remoteclip", "vision-language", "rclip-hf"],
        metrics=["recall", "accuracy"],
        eval_results=eval_results_from_results(results, benchmarks_owner(inputs)) or None,
    )
    tables = [section for section in (retrieval_section(results, inputs), zero_shot_section(results, inputs),
                                      counting_section(results, inputs), other_tasks_section(results)) if section]
    label = PAPER_ARCH_LABELS.get(arch or "")
    if inputs.summary:
        summary = inputs.summary
    elif inputs.training:
        summary = (f"A RemoteCLIP-style model ({f'`{arch}`' if arch else 'a custom architecture'}) trained with "
                   "rclip-hf; see the training section and limitations.")
    else:
        summary = f"RemoteCLIP {label or arch}, the remote-sensing CLIP of Liu et al. (2024), in transformers format."
    return ModelCard.from_template(
        card_data, template_path=str(TEMPLATE),
        model_name=model_name, summary=summary,
        arch_description=inputs.arch_description or (
            f"`{arch}` (QuickGELU, as the official open_clip checkpoints)" if label
            else f"`{arch}`" if arch else "not one of rclip-hf's presets (see `config.json`)"),
        evaluated_on=", ".join(display_name(name) for name in results["benchmarks"]),
        starting_point=inputs.starting_point or (f"`{inputs.base_model}`" if inputs.base_model else ""),
        results_file=inputs.results_file, created=results.get("created", "unknown"),
        rclip_hf_version=results.get("rclip_hf_version", "unknown"), dtype=results.get("dtype", "float32"),
        paper_url=PAPER_URL, paper_source=PAPER_SOURCE, code_url=CODE_URL, repo_id=inputs.repo_id or model_name,
        usage=usage_section(inputs.repo_id or model_name, usage_kinds(inputs.model_dir, arch)),
        training_section=training_section(inputs),
        baseline_name=inputs.baseline_name if inputs.baseline is not None else "",
        results_tables="\n\n".join(tables) or "No benchmark results yet.",
        plots=inputs.plots, limitations=limitations_text(results, inputs), licence_paragraph=licence_paragraph(inputs),
        bibtex=REMOTECLIP_BIBTEX,
    )


def card_metrics(card: ModelCard) -> dict[tuple[str, str], float]:
    """{(benchmark, results-JSON path): value} read back from a card's `model-index` (the inverse of the card)."""
    return {(benchmark_of_repo_id(result.dataset_type), result.metric_config): result.metric_value
            for result in card.data.eval_results or []}


def check_card_offline(readme: str | Path, results: Mapping[str, Any]) -> None:
    """Offline metadata check (`ModelCard.validate` needs the network): the YAML header parses, `ModelCardData`
    accepts it, and its `model-index` reads back to exactly the results' metrics. Raises ValueError otherwise."""
    readme = Path(readme)
    metadata = metadata_load(readme)
    if metadata is None:
        raise ValueError(f"{readme}: no YAML metadata block")
    model_name, read_back = model_index_to_eval_results(metadata.get("model-index", []) or [{"name": "", "results": []}])
    ModelCardData(**metadata)  # raises ValueError on an invalid model-index
    expected = {(entry.benchmark, f"{entry.group}/{entry.key}"): entry.shown for entry in iter_metrics(results)}
    found = {(benchmark_of_repo_id(result.dataset_type), result.metric_config): result.metric_value
             for result in read_back}
    if found != expected:
        differing = sorted(set(found.items()) ^ set(expected.items()))[:6]
        raise ValueError(f"{readme}: model-index of {model_name!r} differs from the results JSON: {differing}")
