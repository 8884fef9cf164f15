"""The card of `train.py`'s `final/` folder and its upload with `--push_to_hub --hub_model_id OWNER/NAME`.

Every run writes `final/README.md` (`model_cards`: the architecture, the starting point, the training settings; no
results until `python -m model_cards.build` adds them), so the folder is publishable as it is. With `--push_to_hub`
the token's write access is checked before training and `final/` goes up through the one publishing path
(`rclip_hf.hub.publish`), with the Hub options of `rclip-hf push` (`--token`, `--revision`, `--commit_message`,
`--create_pr`, `--private`), as the transformers example scripts push their output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard

from model_cards.card import CardInputs, build_model_card
from rclip_hf.hub import check_write_access, publish, write_new_file
from rclip_hf.usage import arch_of_model_dir, architecture_summary

from .arguments import DataArguments, HubArguments, ModelArguments, TrainArguments


def check_hub_arguments(hub: HubArguments) -> HfApi | None:
    """Before training: None without `--push_to_hub`; else an `HfApi` whose token may write to `--hub_model_id`
    (`PublishError`, one line, otherwise)."""
    if not hub.push_to_hub:
        return None
    if not hub.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id OWNER/NAME (the Hub model repo to upload final/ to)")
    return check_write_access(hub.hub_model_id, "--hub_model_id", token=hub.token)


def starting_point(model_args: ModelArguments) -> str:
    """Where training started, in words: the folder or Hub id, or a random initialisation of a preset or config."""
    if model_args.model_name_or_path:
        return f"`{model_args.model_name_or_path}`"
    if model_args.arch:
        return f"random initialisation of the `{model_args.arch}` preset"
    return "random initialisation of an inline `--model_config`"


def training_summary(data_args: DataArguments, args: TrainArguments, num_processes: int) -> dict[str, Any]:
    """The settings a card shows for a `train.py` run."""
    return {"dataset": data_args.dataset, "split": data_args.split, "steps": args.max_steps,
            "global batch": args.batch_size, "processes": num_processes,
            "gradient accumulation": args.gradient_accumulation_steps, "learning rate": args.learning_rate,
            "warm-up steps": args.warmup_steps, "weight decay": args.weight_decay,
            "AdamW betas": [args.adam_beta1, args.adam_beta2], "mixed precision": args.mixed_precision,
            "local loss": args.local_loss, "seed": args.seed}


def training_card(final: Path, model_args: ModelArguments, data_args: DataArguments, args: TrainArguments,
                  num_processes: int, repo_id: str | None) -> ModelCard:
    """The card of a `train.py` `final/` folder: its architecture, starting point and training settings."""
    path = model_args.model_name_or_path
    hub_base = path if path and not Path(path).exists() and not path.startswith((".", "/")) else None
    arch = arch_of_model_dir(final)
    inputs = CardInputs(base_model=hub_base, arch=arch, arch_description=architecture_summary(final),
                        starting_point=starting_point(model_args), repo_id=repo_id, model_name=final.parent.name,
                        training=training_summary(data_args, args, num_processes), model_dir=str(final),
                        datasets=[data_args.dataset] if data_args.dataset and not Path(data_args.dataset).exists()
                        else [])
    return build_model_card({"benchmarks": {}}, inputs)


def write_card_and_push(final: Path, card: ModelCard, hub: HubArguments, api: HfApi | None) -> None:
    """Write `final/README.md` (never through a symlink) and, with `--push_to_hub`, upload `final/`."""
    write_new_file(final / "README.md", str(card).encode())
    if hub.push_to_hub:
        publish(final, hub.hub_model_id, hub, api=api, flag="--hub_model_id")
