"""CLI: build benchmark datasets as HF folders under ``--output DATA_DIR``:
``python -m dataset_builders.build_benchmarks --retrieval rsitmd=PATH --classification rsscn7=DIR --output DATA_DIR``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from dataset_builders.benchmarks import (
    CLASSIFICATION_NAMES,
    RETRIEVAL_NAMES,
    build_classification,
    build_retrieval,
)


@dataclass
class BenchmarksConfig:
    """Options of ``python -m dataset_builders.build_benchmarks``."""

    output: str = field(metadata={"help": "DATA_DIR: each benchmark is written to DATA_DIR/<name>"})
    retrieval: list[str] = field(default_factory=list, metadata={
        "help": f"NAME=PATH of a Karpathy caption JSON (or its folder); names: {', '.join(RETRIEVAL_NAMES)}",
        "action": "append"})
    classification: list[str] = field(default_factory=list, metadata={
        "help": f"NAME=DIR of a folder-per-class dataset; names: {', '.join(CLASSIFICATION_NAMES)}", "action": "append"})
    test_fraction: float = field(default=0.5, metadata={
        "help": "share of each class in the test split when the source has no train/test folders (1.0: all test)"})
    seed: int = field(default=0, metadata={"help": "seed of the stratified split"})

    def __post_init__(self) -> None:
        for key in ("retrieval", "classification"):
            flat: list[str] = []
            for entry in getattr(self, key):
                flat.extend([entry] if isinstance(entry, str) else entry)
            setattr(self, key, flat)


def parse_pair(entry: str, flag: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path); ValueError quoting the entry otherwise."""
    name, sep, path = entry.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--{flag} {entry!r}: expected NAME=PATH")
    return name, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Build every requested benchmark and print one JSON line of row counts per benchmark."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (config,) = HfArgumentParser(BenchmarksConfig).parse_args_into_dataclasses(args=argv)
    if not config.retrieval and not config.classification:
        raise ValueError("nothing to build: pass --retrieval NAME=PATH and/or --classification NAME=DIR")
    output = Path(config.output)
    for entry in config.retrieval:
        name, path = parse_pair(entry, "retrieval")
        print(json.dumps({name: build_retrieval(path, output / name, name)["rows"]}))
    for entry in config.classification:
        name, path = parse_pair(entry, "classification")
        report = build_classification(path, output / name, name, config.test_fraction, config.seed)
        print(json.dumps({name: report["rows"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
