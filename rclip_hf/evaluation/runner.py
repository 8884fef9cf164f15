"""Evaluate a model on benchmark datasets (the folders `dataset_builders.build_benchmarks` writes) and write a
results JSON and a Markdown report."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..benchmark_registry import display_name, sort_paper_first
from ..embeddings import encode_images, encode_texts, zero_shot_classifier
from ..errors import UserError, dataset_not_found, entry_point
from ..loading import HUB_ID, resolve_device
from ..precision import precision_name, torch_dtype
from ..prompts import MAX_COUNT, class_names_for, count_caption_variants, templates_for
from .classification import classification_metrics
from .counting import counting_metrics
from .few_shot import PAPER_SHOTS, few_shot
from .knn import knn_metrics
from .linear_probe import LinearProbeConfig, linear_probe
from .retrieval import retrieval_metrics
from .tables import COUNT_STYLES, cell, counting_table, markdown_table, per_benchmark_table, retrieval_table

logger = logging.getLogger(__name__)

VALIDATION_SPLIT = "validation"  # reported, and searched on by the linear probe, where a benchmark has it


@dataclass
class EvalArguments:
    """Command-line options of ``training_scripts/evaluate.py`` / ``rclip-hf eval``."""

    model: str = field(
        metadata={"help": "Model folder or Hub id (any CLIPModel), or open_clip:ARCH[:/path/weights.pt]"}
    )
    benchmarks: str = field(
        metadata={"help": "Comma-separated benchmark names, e.g. rsitmd,rsicd,ucm,eurosat,remotecount"}
    )
    data_dir: str = field(metadata={"help": (
        "Folder holding one Hugging Face dataset folder per benchmark, or Hub dataset ids: OWNER/NAME for one "
        "benchmark, OWNER/rs-{name} for several ({name} is replaced by each benchmark's name, as "
        "build_benchmarks --push-to-hub names them)")})
    output: str = field(
        default="results.json", metadata={"help": "Results JSON path (the markdown table goes next to it)"}
    )
    split: str = field(default="test", metadata={"help": "Evaluation split"})
    train_split: str = field(
        default="train", metadata={"help": "Training split for linear probe / k-NN / few-shot"}
    )
    batch_size: int = field(default=64, metadata={"help": "Images per encoding batch"})
    text_batch_size: int = field(default=256, metadata={"help": "Texts per encoding batch"})
    device: str | None = field(
        default=None, metadata={"help": "Device (default: cuda when available, else cpu)"}
    )
    dtype: str = field(default="float32", metadata={
        "help": "Precision of the encoding (autocast): float32, bfloat16 or float16"})
    bf16: bool = field(default=False, metadata={"help": "Deprecated: use --dtype bfloat16"})
    templates: str = field(
        default="paper", metadata={"help": "Zero-shot templates: 'paper' (one) or 'ensemble'"}
    )
    linear_probe: bool = field(
        default=False, metadata={"help": "Also run the linear probe (needs a train split)"}
    )
    knn: bool = field(default=False, metadata={"help": "Also run k-NN (k=20, T=0.07; needs a train split)"})
    few_shot: bool = field(default=False, metadata={"help": "Also run few-shot probes (1/4/8/16/32 shots)"})
    few_shot_seeds: int = field(default=3, metadata={"help": "Seeds per few-shot setting"})
    probe_epochs: int = field(default=1000, metadata={"help": "Epochs of the linear / few-shot probe"})
    chunk_size: int = field(
        default=4096, metadata={"help": "Chunk size of the retrieval / k-NN similarity blocks"}
    )
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars"})


def load_eval_model(spec: str, device: str) -> tuple[torch.nn.Module, Any, dict[str, str]]:
    """(model in eval mode on ``device``, processor, info) for a folder / Hub id or ``open_clip:ARCH[:weights]``."""
    if spec.startswith("open_clip:"):
        from .open_clip_adapter import load_open_clip

        model, processor, arch = load_open_clip(spec)
        info = {"model_type": "open_clip", "arch": arch}
    else:
        from ..loading import load_model

        model, processor = load_model(spec, dtype=torch.float32)
        config = model.config
        preset = config.matching_preset() if hasattr(config, "matching_preset") else None
        info = {"model_type": config.model_type, "arch": preset or config.model_type}
    return model.to(device).eval(), processor, info


class BenchmarkRunner:
    """Encodes one benchmark's splits with a model and computes its metrics."""

    def __init__(self, model: torch.nn.Module, processor, args: EvalArguments, device: str):
        self.model, self.processor, self.args, self.device = model, processor, args, device
        self.dtype = None if args.dtype == "float32" else torch_dtype(args.dtype)

    def images(self, dataset) -> torch.Tensor:
        """Embeddings (N, D) of the ``image`` column."""
        images = dataset.select_columns(["image"])
        return encode_images(
            self.model,
            self.processor,
            (row["image"] for row in images),
            self.args.batch_size,
            device=self.device,
            dtype=self.dtype,
            num_images=len(images),
            show_progress=self.args.show_progress,
        )

    def texts(self, texts: list[str]) -> torch.Tensor:
        """Embeddings (M, D) of ``texts``."""
        return encode_texts(
            self.model,
            self.processor,
            texts,
            self.args.text_batch_size,
            device=self.device,
            dtype=self.dtype,
            show_progress=self.args.show_progress,
        )

    def retrieval(self, dataset) -> dict:
        """Image-text retrieval entry of the results JSON."""
        captions = dataset["captions"]
        texts = [caption for image_captions in captions for caption in image_captions]
        text_to_image = [index for index, image_captions in enumerate(captions) for _ in image_captions]
        metrics = retrieval_metrics(
            self.images(dataset), self.texts(texts), text_to_image, chunk_size=self.args.chunk_size
        )
        return {"task": "retrieval", "num_images": len(dataset), "num_texts": len(texts), "metrics": metrics}

    def counting(self, dataset) -> dict:
        """RemoteCount entry: words and digits variants; captions without their number are skipped with a reason."""
        rows = dataset.select_columns(["caption", "count"])
        variants = {"words": [], "digits": []}
        kept, skipped = [], []
        for index, (caption, count) in enumerate(zip(rows["caption"], rows["count"])):
            try:
                words = count_caption_variants(caption, count, "words")
                digits = count_caption_variants(caption, count, "digits")
            except ValueError as error:
                skipped.append({"index": index, "reason": str(error)})
                continue
            kept.append(index)
            variants["words"].extend(words)
            variants["digits"].extend(digits)
        if skipped:
            logger.warning(
                "remotecount: skipped %d of %d samples (see 'skipped' in the results)",
                len(skipped),
                len(rows),
            )
        if not kept:
            raise ValueError("remotecount: no sample has a caption containing its count")
        images = self.images(dataset.select(kept))  # (N, D)
        counts = torch.tensor([rows["count"][index] for index in kept])
        entry: dict[str, Any] = {"task": "counting", "num_samples": len(kept)}
        for style, key in (("words", "metrics"), ("digits", "metrics_digits")):
            texts = self.texts(variants[style]).view(len(kept), MAX_COUNT, -1)  # (N, 10, D)
            scores = torch.einsum("nd,ncd->nc", images, texts)
            entry[key] = counting_metrics(scores, counts)
        if skipped:
            entry["skipped"] = skipped
        return entry

    def classification(self, name: str, splits) -> dict:
        """Zero-shot entry, plus linear probe / k-NN / few-shot sub-entries when requested."""
        test = splits[self.args.split]
        label_names = test.features["label"].names
        class_names = class_names_for(name, label_names)
        classifier = zero_shot_classifier(
            self.model,
            self.processor,
            class_names,
            templates_for(self.args.templates),
            self.args.text_batch_size,
            device=self.device,
            dtype=self.dtype,
        )
        test_features = self.images(test)
        test_labels = torch.tensor(test["label"])
        entry: dict[str, Any] = {
            "task": "zero_shot_classification",
            "num_samples": len(test),
            "num_classes": len(label_names),
            "templates": self.args.templates,
            "metrics": classification_metrics(test_features @ classifier.T, test_labels),
        }
        val_features = val_labels = None
        if VALIDATION_SPLIT in splits and self.args.split != VALIDATION_SPLIT:
            validation = splits[VALIDATION_SPLIT]
            val_features, val_labels = self.images(validation), torch.tensor(validation["label"])
            entry[VALIDATION_SPLIT] = {
                "num_samples": len(validation),
                "metrics": classification_metrics(val_features @ classifier.T, val_labels),
            }
        if not (self.args.linear_probe or self.args.knn or self.args.few_shot):
            return entry
        if self.args.train_split not in splits:
            reason = f"no {self.args.train_split!r} split in {sorted(splits)}"
            logger.warning("%s: linear probe / k-NN / few-shot skipped: %s", name, reason)
            entry["skipped"] = reason
            return entry
        train = splits[self.args.train_split]
        train_features, train_labels = self.images(train), torch.tensor(train["label"])
        common = {"split": self.args.split, "train_split": self.args.train_split, "num_train": len(train)}
        probe_config = LinearProbeConfig(epochs=self.args.probe_epochs)
        if self.args.linear_probe:
            # The search validates on the published validation split where there is one (else a held-out share).
            outcome = linear_probe(
                train_features, train_labels, test_features, test_labels, len(label_names), probe_config,
                val_features, val_labels,
            )
            search_split = VALIDATION_SPLIT if val_features is not None else "held-out share of train"
            entry["linear_probe"] = {"task": "linear_probe", **common, "search_split": search_split, **outcome}
        if self.args.knn:
            metrics = knn_metrics(train_features, train_labels, test_features, test_labels, len(label_names))
            entry["knn"] = {"task": "knn", **common, "k": 20, "temperature": 0.07, "metrics": metrics}
        if self.args.few_shot:
            results = few_shot(
                train_features,
                train_labels,
                test_features,
                test_labels,
                len(label_names),
                PAPER_SHOTS,
                range(self.args.few_shot_seeds),
                probe_config,
            )
            entry["few_shot"] = {"task": "few_shot", **common, "metrics": results}
        return entry

    def run(self, name: str, dataset_dir: Path | str | Any) -> dict:
        """Evaluate benchmark ``name`` according to its columns: ``dataset_dir`` is a dataset folder, a Hub dataset
        id (through ``load_dataset``, so a cached copy works offline) or a loaded ``DatasetDict``. A streaming
        (iterable) dataset is refused: the metrics need whole splits."""
        import datasets

        if isinstance(dataset_dir, Path):
            if not dataset_dir.is_dir():
                raise FileNotFoundError(
                    f"benchmark {name!r}: dataset folder {dataset_dir} not found (--data-dir)"
                )
            splits = datasets.load_dataset(str(dataset_dir))
        elif isinstance(dataset_dir, str):
            try:
                splits = datasets.load_dataset(dataset_dir)
            except OSError as error:  # not on the Hub, not cached offline, no access
                raise dataset_not_found("--data-dir", dataset_dir, error) from None
        else:
            splits = dataset_dir
        if isinstance(splits, (datasets.IterableDataset, datasets.IterableDatasetDict)):
            raise UserError(f"benchmark {name!r}", "a streaming (iterable) dataset cannot be evaluated: the metrics "
                            "need whole splits", "load it without streaming=True, or download it first")
        if self.args.split not in splits:
            raise ValueError(
                f"benchmark {name!r}: no split {self.args.split!r} in {dataset_dir} (found {sorted(splits)})"
            )
        columns = set(splits[self.args.split].column_names)
        if "captions" in columns:
            entry = self.retrieval(splits[self.args.split])
        elif {"caption", "count"} <= columns:
            entry = self.counting(splits[self.args.split])
        elif "label" in columns:
            entry = self.classification(name, splits)
        else:
            raise ValueError(
                f"benchmark {name!r}: {dataset_dir} has columns {sorted(columns)}; expected 'captions' (retrieval), "
                "'caption'+'count' (counting) or 'label' (classification)"
            )
        # the builders record which split definition they used
        report = dataset_dir / "build_report.json" if isinstance(dataset_dir, Path) else None
        if report is not None and report.is_file() and "split_definition" in (
                built := json.loads(report.read_text(encoding="utf-8"))):
            entry["split_definition"] = built["split_definition"]
        return {"task": entry.pop("task"), "split": self.args.split, **entry}


def benchmark_source(data_dir: str, name: str, count: int) -> Path | str:
    """Where benchmark ``name`` is: ``DATA_DIR/name`` when ``data_dir`` is a folder, else the Hub dataset id
    ``data_dir`` with ``{name}`` replaced (needed when ``count`` benchmarks share the flag)."""
    folder = Path(data_dir).expanduser()
    if folder.is_dir() or not HUB_ID.match(data_dir.replace("{name}", name)):
        return folder / name
    if "{name}" not in data_dir and count > 1:
        raise UserError(f"--data-dir {data_dir}", f"{count} benchmarks need one Hub dataset each",
                        "put {name} in the id, e.g. OWNER/rs-{name}, as build_benchmarks --push-to-hub names them")
    return data_dir.replace("{name}", name)


def run_evaluation(args: EvalArguments) -> dict:
    """Evaluate ``args.model`` on every benchmark; write ``args.output`` (JSON) and the markdown table beside it."""
    from rclip_hf import __version__

    names = [name.strip() for name in args.benchmarks.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--benchmarks {args.benchmarks!r}: no benchmark names given")
    templates_for(args.templates)  # validate before loading anything
    args.dtype = precision_name(args.dtype)
    if args.bf16:
        warnings.warn("--bf16 is deprecated: use --dtype bfloat16 (one precision vocabulary with training and "
                      "inference)", FutureWarning, stacklevel=2)
        args.dtype = "bfloat16"
    for option in ("batch_size", "text_batch_size", "probe_epochs", "chunk_size"):
        if getattr(args, option) < 1:
            raise UserError(f"--{option} {getattr(args, option)}", "must be at least 1")
    device = resolve_device(args.device)
    model, processor, info = load_eval_model(args.model, device)
    runner = BenchmarkRunner(model, processor, args, device)
    results = {
        "model": args.model,
        **info,
        "dtype": args.dtype,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rclip_hf_version": __version__,
        "benchmarks": {},
    }
    for name in names:
        logger.info("evaluating %s on %s", args.model, name)
        results["benchmarks"][name] = runner.run(name, benchmark_source(args.data_dir, name, len(names)))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown_report(results))
    logger.info("wrote %s and %s", output, output.with_suffix(".md"))
    return results


def markdown_report(results: dict) -> str:
    """Markdown tables in the paper's layout: retrieval (Table II), zero-shot (Table III), probes, counting."""
    benchmarks = results["benchmarks"]
    by_task: dict[str, list[str]] = {}
    for name in sort_paper_first(list(benchmarks)):
        by_task.setdefault(benchmarks[name]["task"], []).append(name)
    lines = [f"# Evaluation of `{results['model']}`", ""]
    if "retrieval" in by_task:
        rows = [(name, None, benchmarks[name]["metrics"]) for name in by_task["retrieval"]]
        lines += ["## Retrieval", "", retrieval_table(rows), ""]
    ordered = by_task.get("zero_shot_classification", [])
    if ordered:
        top1 = [benchmarks[name]["metrics"]["top1"] for name in ordered]
        lines += [f"## Zero-shot classification (top-1, templates: {benchmarks[ordered[0]]['templates']})", "",
                  per_benchmark_table(ordered, [(None, top1)]), ""]
        for key, title in (("linear_probe", "Linear probe"), ("knn", "k-NN (k=20, T=0.07)")):
            probed = [name for name in ordered if key in benchmarks[name]]
            if probed:
                values = [benchmarks[name][key]["metrics"]["top1"] for name in probed]
                lines += [f"## {title} (top-1)", "", per_benchmark_table(probed, [(None, values)]), ""]
        few = [name for name in ordered if "few_shot" in benchmarks[name]]
        if few:
            shots = list(benchmarks[few[0]]["few_shot"]["metrics"])
            rows = [[display_name(name)] + [f"{cell(cells[s]['top1_mean'])} ± {cell(cells[s]['top1_std'])}" for s in shots]
                    for name in few for cells in [benchmarks[name]["few_shot"]["metrics"]]]
            lines += ["## Few-shot linear probe (top-1, mean ± std over seeds)", "",
                      markdown_table(["dataset", *shots], rows), ""]
    counting = [(name, None, style, benchmarks[name][key]) for name in by_task.get("counting", [])
                for key, style in COUNT_STYLES if key in benchmarks[name]]
    if counting:
        lines += ["## Counting (top-k accuracy)", "", counting_table(counting), ""]
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` into :class:`EvalArguments`, run, print the markdown table; returns the exit code."""
    from ..arguments import DataclassArgumentParser

    parser = DataclassArgumentParser(EvalArguments, prog=prog, description=__doc__)  # prog None: `rclip-hf eval`
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = run_evaluation(args)
    print(markdown_report(results))  # the CLI's output
    return 0


__all__ = ["BenchmarkRunner", "EvalArguments", "load_eval_model", "main", "markdown_report", "run_evaluation"]
