"""Command-line and YAML arguments of `train.py`: three dataclasses parsed by `rclip_hf.arguments`.

`--config FILE.yaml` supplies defaults (a flat mapping of field names); flags given on the command line override it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rclip_hf.arguments import parse_with_yaml_defaults
from rclip_hf.configuration_remoteclip import PRESETS
from rclip_hf.hub import HubOptions


@dataclass
class ModelArguments:
    """Which model to start from: exactly one of a converted folder, a preset name or an inline config."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "save_pretrained folder (e.g. a converted RemoteCLIP/OpenAI checkpoint)"})
    arch: str | None = field(
        default=None, metadata={"help": f"randomly initialised preset, one of {sorted(PRESETS)}"})
    model_config: dict | str | None = field(
        default=None, metadata={"help": "inline RemoteCLIPConfig kwargs (YAML mapping), randomly initialised"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})
    torch_compile: bool = field(default=False, metadata={"help": "compile the training module with torch.compile"})


@dataclass
class DataArguments:
    """The caption corpus and its augmentation."""

    dataset: str | None = field(
        default=None, metadata={"help": "dataset folder (Parquet shards) or hub id with `image` and `captions`"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "dataset configuration name"})
    split: str = field(default="train", metadata={"help": "split to train on"})
    streaming: bool = field(default=False, metadata={"help": "stream the corpus (larger than RAM or disk)"})
    shuffle_buffer_size: int = field(default=10_000, metadata={"help": "shuffle buffer when streaming"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N samples"})
    crop_scale: list[float] = field(
        default_factory=lambda: [0.9, 1.0], metadata={"help": "random resized crop area range (open_clip default)"})
    crop_ratio: list[float] = field(
        default_factory=lambda: [3 / 4, 4 / 3], metadata={"help": "random resized crop aspect-ratio range"})
    horizontal_flip: bool = field(default=True, metadata={"help": "random horizontal flip (p = 0.5)"})
    rotation: bool = field(default=True, metadata={"help": "random rotation by 0/90/180/270 degrees"})
    dataloader_num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes per process"})
    eval_samples: int = field(
        default=0, metadata={"help": "images of the corpus (first N) scored by the retrieval evaluation; 0 = off"})


@dataclass
class TrainArguments:
    """Optimisation, schedule, checkpointing and logging."""

    output_dir: str = field(default="runs/remoteclip", metadata={"help": "checkpoints, logs and final/ go here"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation, data order and augmentation"})
    batch_size: int = field(
        default=256, metadata={"help": "global batch: per-device batch x processes x accumulation steps"})
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "micro-batches per optimiser step; the contrastive loss still spans the whole batch (cached features)"})
    max_steps: int = field(default=108_215, metadata={"help": "optimiser steps (the paper: 108,215)"})
    learning_rate: float = field(default=4e-5, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.2, metadata={"help": "AdamW decay on weight matrices only"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (CLIP: 0.98)"})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon (CLIP: 1e-6)"})
    warmup_steps: int = field(default=2000, metadata={"help": "linear warm-up steps before the cosine decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm; 0 = off"})
    mixed_precision: str | None = field(default=None, metadata={
        "help": "float32, bfloat16 or float16 (AMP; accelerate's no, bf16, fp16 also work); unset: `accelerate "
                "launch --mixed_precision` or its config file decides"})
    local_loss: bool = field(default=True, metadata={"help": "each process scores its rows against all columns"})
    checkpointing_steps: int = field(default=1000, metadata={"help": "save_state every N steps; 0 = off"})
    checkpoints_total_limit: int | None = field(default=3, metadata={"help": "keep the newest N checkpoints"})
    resume: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "replace a previous run in --output_dir (refused without this or --resume)"})
    logging_steps: int = field(default=10, metadata={"help": "log loss and learning rate every N steps"})
    eval_steps: int = field(default=0, metadata={"help": "run the retrieval evaluation every N steps; 0 = off"})
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"], metadata={"help": "trackers: tensorboard, wandb, ... or none"})
    project_name: str = field(default="rclip-hf", metadata={"help": "tracker project / run group name"})


@dataclass
class HubArguments(HubOptions):
    """Publishing the final model: `--push_to_hub --hub_model_id OWNER/NAME` and the Hub options of `rclip-hf push`
    (kept apart from `TrainArguments`, which are logged and saved: the token never is)."""

    push_to_hub: bool = field(default=False, metadata={"help": "upload final/ (and its card) when training ends"})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub model repo of --push_to_hub, OWNER/NAME"})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, TrainArguments, HubArguments)


def parse_command_line(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainArguments,
                                                               HubArguments]:
    """Parses `--config FILE` then the dataclass flags; command-line values override the YAML."""
    return parse_with_yaml_defaults(ARGUMENT_CLASSES, argv, prog="training_scripts/train.py",
                                    description="Continual pre-training of RemoteCLIP with accelerate.")


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainArguments]:
    """The training options of `parse_command_line` (without the Hub options)."""
    return parse_command_line(argv)[:3]
