"""Continual pre-training of RemoteCLIP with accelerate (DDP, FSDP, DeepSpeed, single device or CPU).

    accelerate launch training_scripts/train.py --config training_scripts/configs/vit-b-32.yaml \
        --dataset DIR_OR_HUB_ID --output_dir OUT [--max_steps N] [--seed S] [--resume latest] [--FLAG VALUE ...]

Every flag of `training/arguments.py` can be set in the YAML file or on the command line (which wins).
The final model is written with `save_pretrained` to OUT/final, with its card; checkpoints go to
OUT/checkpoints/step-N. `--push_to_hub --hub_model_id OWNER/NAME` uploads OUT/final as `rclip-hf push` does.
"""

from __future__ import annotations

import logging
import sys

if __package__:  # python -m training_scripts.train
    from .training.arguments import parse_command_line
    from .training.loop import run
else:  # python training_scripts/train.py, accelerate launch training_scripts/train.py: this folder is sys.path[0]
    from training.arguments import parse_command_line
    from training.loop import run

from rclip_hf.errors import entry_point


@entry_point
def main(argv: list[str]) -> None:
    """Parses the arguments and trains; bad input prints one line and exits with 2 (`--debug`: the traceback)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    final = run(*parse_command_line(argv))
    logging.getLogger(__name__).info("final model saved to %s", final)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
