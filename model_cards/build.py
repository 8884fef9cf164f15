"""Write a model folder's card: `DIR/README.md` (metadata + results tables) and `DIR/plots/*.png`.

    python -m model_cards.build --results results.json --model-dir DIR [--base-model ID]
        [--baseline_results untrained.json] [--training_summary training.json] [--repo_id OWNER/NAME]
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rclip_hf.arguments import DataclassArgumentParser
from rclip_hf.errors import entry_point
from rclip_hf.usage import arch_of_model_dir, architecture_summary

from .card import (
    CardInputs,
    ResultsFormatError,
    build_model_card,
    check_card_offline,
    load_results,
)
from .paper import PAPER_ARCH_LABELS
from .plots import make_plots

logger = logging.getLogger(__name__)
PLOT_DIR = "plots"


@dataclass
class CardArguments:
    """Options of `python -m model_cards.build`."""

    results: str = field(metadata={"help": "results JSON written by training_scripts/evaluate.py"})
    model_dir: str = field(metadata={"help": "model folder; README.md and plots/ are written into it"})
    base_model: str | None = field(default=None, metadata={"help": "Hub id of the model this one starts from"})
    baseline_results: str | None = field(
        default=None, metadata={"help": "results JSON of the starting point, shown next to this model's"})
    baseline_name: str = field(default="starting point", metadata={"help": "row label of --baseline_results"})
    training_summary: str | None = field(
        default=None, metadata={"help": "JSON object of training settings shown on the card (none: converted)"})
    repo_id: str | None = field(default=None, metadata={"help": "Hub repo id used in the card's code example"})
    model_name: str | None = field(default=None, metadata={"help": "name in model-index (default: folder name)"})
    summary: str | None = field(default=None, metadata={"help": "opening sentence of the card (default: from arch)"})
    license: str = field(default="apache-2.0", metadata={"help": "licence identifier of the card's metadata"})
    datasets: list[str] = field(default_factory=list, metadata={"help": "Hub dataset ids used for training"})


def write_model_card(args: CardArguments) -> Path:
    """Build plots and card for `args.model_dir`, check its metadata offline, return the README path."""
    results = load_results(args.results)
    baseline = load_results(args.baseline_results) if args.baseline_results else None
    training = None
    if args.training_summary:
        try:
            training = json.loads(Path(args.training_summary).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ResultsFormatError(f"--training_summary {args.training_summary}: {error}") from None
        if not isinstance(training, dict):
            raise ResultsFormatError(f"{args.training_summary}: expected a JSON object of training settings")
    model_dir = Path(args.model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"--model_dir {model_dir} is not a folder")
    has_config = (model_dir / "config.json").is_file()
    arch = results.get("arch")
    if arch not in PAPER_ARCH_LABELS and has_config:
        arch = arch_of_model_dir(model_dir) or arch
    plots = make_plots(results, model_dir / PLOT_DIR, arch, baseline, args.baseline_name)
    description = architecture_summary(model_dir) if arch not in PAPER_ARCH_LABELS and has_config else None
    inputs = CardInputs(base_model=args.base_model, arch=arch, arch_description=description, summary=args.summary,
                        repo_id=args.repo_id,
                        model_name=args.model_name or model_dir.resolve().name, license=args.license,
                        datasets=list(args.datasets), training=training, baseline=baseline,
                        baseline_name=args.baseline_name, results_file=Path(args.results).name, plots=plots,
                        model_dir=str(model_dir))
    readme = model_dir / "README.md"
    build_model_card(results, inputs).save(readme)
    check_card_offline(readme, results)
    logger.info("wrote %s with %d plots", readme, len(plots))
    return readme


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; 0 on success, 2 with a message on bad input (`--debug`: the traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = DataclassArgumentParser(CardArguments, prog="python -m model_cards.build", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    try:
        readme = write_model_card(args)
    except (ResultsFormatError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
