"""CLI: ``python -m dataset_builders.build_remotecount (--dota DIR | --release DIR) --output DATA_DIR/remotecount
[--seed S] [--push-to-hub OWNER/NAME [--private] [--dry-run]]``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataset_builders.publish import PushConfig, check_push, push_dataset
from dataset_builders.remotecount import from_dota, from_release
from dataset_builders.sources.images import PixelLimitConfig
from rclip_hf.arguments import DataclassArgumentParser
from rclip_hf.errors import entry_point
from rclip_hf.images import pixel_limit


@dataclass
class RemoteCountConfig:
    """Options of ``python -m dataset_builders.build_remotecount``."""

    output: str = field(metadata={"help": "output dataset folder (e.g. DATA_DIR/remotecount)"})
    dota: str | None = field(default=None, metadata={"help": "DOTA-format folder (images/ + labelTxt/) to rebuild from"})
    release: str | None = field(default=None, metadata={"help": "folder of the official release (see the module doc)"})
    seed: int = field(default=0, metadata={"help": "seed of the caption phrasing (--dota)"})


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Build RemoteCount (and push it) and print its row counts."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = DataclassArgumentParser((RemoteCountConfig, PushConfig, PixelLimitConfig),
                                     prog="python -m dataset_builders.build_remotecount", description=__doc__)
    config, push, limit = parser.parse_args_into_dataclasses(args=argv)
    if (config.dota is None) == (config.release is None):
        raise ValueError("pass exactly one of --dota DIR and --release DIR")
    api = check_push(push)
    with pixel_limit(limit.max_pixels):
        report = (from_dota(config.dota, config.output, config.seed) if config.dota
                  else from_release(config.release, config.output))
    print(json.dumps(report["rows"]))
    if push.push_to_hub:
        root = Path(config.dota or config.release)
        push_dataset(Path(config.output), push, {root.name: root}, api, "Upload RemoteCount (rclip-hf build_remotecount)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
