"""CLI: ``python -m dataset_builders.build_corpus --source FORMAT=PATH [...] --output DIR [--config YAML] ...``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from dataset_builders.corpus import CorpusConfig, build_corpus
from rclip_hf.arguments import parse_with_yaml_defaults
from rclip_hf.errors import entry_point
from rclip_hf.images import pixel_limit


def parse_config(argv: Sequence[str] | None = None) -> CorpusConfig:
    """Parse the flags; values from ``--config YAML`` are defaults that the flags override."""
    (config,) = parse_with_yaml_defaults((CorpusConfig,), argv, prog="python -m dataset_builders.build_corpus",
                                         description=__doc__, prepare=_yaml_values)
    return config


def _yaml_values(values: dict[str, Any]) -> dict[str, Any]:
    """YAML values as the flags give them: ``reader_options`` as JSON text, ``source`` as a list."""
    if isinstance(values.get("reader_options"), dict):
        values["reader_options"] = json.dumps(values["reader_options"])
    if isinstance(values.get("source"), str):
        values["source"] = [values["source"]]
    return values


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Build the corpus and print its totals."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = parse_config(argv)
    with pixel_limit(config.max_pixels):
        report = build_corpus(config)  # no token / no write access: a PublishError before building
    print(json.dumps(report["totals"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
