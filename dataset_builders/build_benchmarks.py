"""CLI: build benchmark datasets as HF folders under ``--output DATA_DIR``:
``python -m dataset_builders.build_benchmarks --retrieval rsitmd=PATH --classification rsscn7=DIR --output DATA_DIR
[--split-files DIR] [--push-to-hub OWNER/rs-{name} [--private] [--dry-run]]``.

Each benchmark is its own Hub dataset repo (``{name}`` in ``--push-to-hub`` is replaced by the benchmark name):
each has its own licence, citation, task and size, which a card holds once per repo, and a re-push of one
benchmark never touches another's card.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dataset_builders.benchmark_datasets import (
    CLASSIFICATION_NAMES,
    RETRIEVAL_NAMES,
    build_classification,
    build_retrieval,
)
from dataset_builders.publish import PublishError, PushConfig, check_push, push_dataset
from dataset_builders.sources.images import PixelLimitConfig
from rclip_hf.arguments import DataclassArgumentParser
from rclip_hf.benchmark_registry import BENCHMARK_REPO_NAME
from rclip_hf.errors import entry_point
from rclip_hf.images import pixel_limit


@dataclass
class BenchmarksConfig:
    """Options of ``python -m dataset_builders.build_benchmarks``."""

    output: str = field(metadata={"help": "DATA_DIR: each benchmark is written to DATA_DIR/<name>"})
    retrieval: list[str] = field(default_factory=list, metadata={
        "help": f"NAME=PATH of a Karpathy caption JSON (or its folder); names: {', '.join(RETRIEVAL_NAMES)}",
        "action": "append"})
    classification: list[str] = field(default_factory=list, metadata={
        "help": f"NAME=DIR of a folder-per-class dataset; names: {', '.join(CLASSIFICATION_NAMES)}", "action": "append"})
    split_files: str | None = field(default=None, metadata={
        "help": "folder of published split lists <name>-train.txt / -val.txt / -test.txt (one image file name per "
                "line, as torchgeo reads them, e.g. uc_merced-test.txt); a benchmark without lists there gets the "
                "seeded fallback split"})
    test_fraction: float = field(default=0.5, metadata={
        "help": "share of each class in the test split of the seeded fallback (1.0: all test)"})
    seed: int = field(default=0, metadata={"help": "seed of the seeded fallback split"})

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


def repo_for(push: PushConfig, name: str, count: int) -> PushConfig:
    """The push options of benchmark ``name``: ``{name}`` in ``--push-to-hub`` replaced (required when
    ``count`` > 1 benchmarks are built, so that each gets its own repo)."""
    if not push.push_to_hub:
        return push
    if "{name}" not in push.push_to_hub and count > 1:
        raise PublishError(f"--push-to-hub {push.push_to_hub}: {count} benchmarks need one repo each; put {{name}} "
                           f"in the repo id, e.g. OWNER/{BENCHMARK_REPO_NAME} (the ids the model cards link)")
    return replace(push, push_to_hub=push.push_to_hub.replace("{name}", name))


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Build every requested benchmark (and push it) and print one JSON line of row counts per benchmark."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = DataclassArgumentParser((BenchmarksConfig, PushConfig, PixelLimitConfig),
                                     prog="python -m dataset_builders.build_benchmarks", description=__doc__)
    config, push, limit = parser.parse_args_into_dataclasses(args=argv)
    if not config.retrieval and not config.classification:
        raise ValueError("nothing to build: pass --retrieval NAME=PATH and/or --classification NAME=DIR")
    output = Path(config.output)
    jobs = [("retrieval", *parse_pair(entry, "retrieval")) for entry in config.retrieval]
    jobs += [("classification", *parse_pair(entry, "classification")) for entry in config.classification]
    pushes = {name: repo_for(push, name, len(jobs)) for _, name, _ in jobs}
    apis = {name: check_push(options) for name, options in pushes.items()}  # every repo, before building
    for kind, name, path in jobs:
        with pixel_limit(limit.max_pixels):
            if kind == "retrieval":
                report = build_retrieval(path, output / name, name)
            else:
                report = build_classification(path, output / name, name, config.test_fraction, config.seed,
                                              Path(config.split_files) if config.split_files else None)
        print(json.dumps({name: report["rows"]}))
        if pushes[name].push_to_hub:
            root = path.parent if path.is_file() else path
            push_dataset(output / name, pushes[name], {name: root}, apis[name],
                         f"Upload the {name} benchmark (rclip-hf build_benchmarks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
