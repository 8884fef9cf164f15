"""Write a model folder's card: `DIR/README.md` (metadata + results tables), `DIR/plots/*.png` and the Hub's
`DIR/.eval_results/<benchmark>.yaml` files (never through a symlink).

    python -m model_cards.build --results results.json --model-dir DIR [--base-model ID]
        [--baseline_results untrained.json] [--training_summary training.json] [--repo_id OWNER/NAME]
        [--benchmarks_owner OWNER]
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.constants import EVAL_RESULTS_FOLDER

from rclip_hf.arguments import DataclassArgumentParser
from rclip_hf.errors import entry_point
from rclip_hf.hub import PublishError, write_new_file
from rclip_hf.usage import arch_of_model_dir, architecture_summary

from .card import (
    CardInputs,
    ResultsFormatError,
    build_model_card,
    check_card_offline,
    eval_results_files,
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
    benchmarks_owner: str | None = field(default=None, metadata={
        "help": "Hub owner of the benchmark datasets (OWNER/rs-{name}, as build_benchmarks --push-to-hub names "
                "them) that model-index and .eval_results link (default: the owner of --repo_id)"})


def refuse_links(model_dir: Path, names: list[str]) -> None:
    """`PublishError` when a folder or file the card writes (`names`, relative to `model_dir`) is a symlink."""
    for name in names:
        if (model_dir / name).is_symlink():
            raise PublishError(f"{model_dir / name} is a symlink; the card is never written through one "
                               "(remove the link)")


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
    refuse_links(model_dir, ["README.md", PLOT_DIR, EVAL_RESULTS_FOLDER]
                 + [path.relative_to(model_dir).as_posix() for path in (model_dir / PLOT_DIR).glob("*.png")])
    plots = make_plots(results, model_dir / PLOT_DIR, arch, baseline, args.baseline_name)
    description = architecture_summary(model_dir) if arch not in PAPER_ARCH_LABELS and has_config else None
    inputs = CardInputs(base_model=args.base_model, arch=arch, arch_description=description, summary=args.summary,
                        repo_id=args.repo_id,
                        model_name=args.model_name or model_dir.resolve().name, license=args.license,
                        datasets=list(args.datasets), training=training, baseline=baseline,
                        baseline_name=args.baseline_name, results_file=Path(args.results).name, plots=plots,
                        model_dir=str(model_dir), benchmarks_owner=args.benchmarks_owner,
                        starting_point=f"`{args.base_model}`" if args.base_model else None)
    readme = model_dir / "README.md"
    write_new_file(readme, str(build_model_card(results, inputs)).encode())
    check_card_offline(readme, results)
    files = eval_results_files(results, inputs)
    if files:
        (model_dir / EVAL_RESULTS_FOLDER).mkdir(exist_ok=True)
    for name, text in files.items():
        write_new_file(model_dir / name, text.encode())
    logger.info("wrote %s with %d plots and %d %s files", readme, len(plots), len(files), EVAL_RESULTS_FOLDER)
    return readme


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; 0 on success; bad input is one `error:` line and 2 (`--debug`: the traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = DataclassArgumentParser(CardArguments, prog="python -m model_cards.build", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    readme = write_model_card(args)
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
