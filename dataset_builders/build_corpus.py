"""CLI: ``python -m dataset_builders.build_corpus --source FORMAT=PATH [...] --output DIR [--config YAML] ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from dataset_builders.corpus import CorpusConfig, build_corpus
from dataset_builders.publish import PublishError
from rclip_hf.errors import entry_point


def parse_config(argv: Sequence[str] | None = None) -> CorpusConfig:
    """Parse the flags; values from ``--config YAML`` are defaults that the flags override."""
    parser = HfArgumentParser(CorpusConfig, description=__doc__)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        path = Path(known.config)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values")
        allowed = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {unknown}; allowed: {sorted(allowed - {'help'})}")
        if isinstance(values.get("reader_options"), dict):
            values["reader_options"] = json.dumps(values["reader_options"])
        if isinstance(values.get("source"), str):
            values["source"] = [values["source"]]
        parser.set_defaults(**values)
    (config,) = parser.parse_args_into_dataclasses(args=argv)
    return config


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Build the corpus and print its totals."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = build_corpus(parse_config(argv))
    except PublishError as error:  # no token / no write access: found before building
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report["totals"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
