"""Builds the model to train (converted folder, plain transformers CLIP folder or Hub id, random preset or inline
config) and its contrastive forward."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

import rclip_hf
from rclip_hf import PRESETS, RemoteCLIPConfig, RemoteCLIPModel, RemoteCLIPProcessor

from .arguments import ModelArguments

logger = logging.getLogger(__name__)


def inline_model_config(model_args: ModelArguments) -> dict[str, Any] | None:
    """`model_config` as a mapping (a YAML/JSON string from the command line is parsed)."""
    value = model_args.model_config
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if not isinstance(value, dict):
        raise TypeError(f"--model_config must be a mapping of RemoteCLIPConfig arguments, got {value!r}")
    return value


def check_model_arguments(model_args: ModelArguments) -> None:
    """Exactly one model source, a known preset, an existing folder: raises before anything is built."""
    sources = {"model_name_or_path": model_args.model_name_or_path, "arch": model_args.arch,
               "model_config": inline_model_config(model_args)}
    given = [name for name, value in sources.items() if value]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of --model_name_or_path, --arch, --model_config (an empty string unsets a YAML "
            f"value); got {given or 'none'}"
        )
    if model_args.arch and model_args.arch not in PRESETS:
        raise ValueError(f"--arch {model_args.arch!r} is unknown; choose one of {sorted(PRESETS)}")
    path = model_args.model_name_or_path
    if path and (path.startswith((".", "/")) or Path(path).exists()) and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(
            f"--model_name_or_path {path}: no config.json there; convert a checkpoint first "
            "(python -m rclip_hf.convert --checkpoint FILE.pt --arch ARCH --output FOLDER)"
        )


def build_model_and_processor(model_args: ModelArguments) -> tuple[RemoteCLIPModel, Any]:
    """The model (pretrained or randomly initialised with the current seed) and its processor.

    `model_name_or_path` may be a RemoteCLIP folder or any transformers CLIP ViT folder or Hub id (e.g.
    `openai/clip-vit-base-patch32`, the paper's ViT starting point); its processor is read as a
    `RemoteCLIPProcessor` (open_clip's exact image transform and text cleaning).
    """
    if model_args.model_name_or_path:
        model = RemoteCLIPModel.from_pretrained(model_args.model_name_or_path, dtype=torch.float32)
        try:
            processor = RemoteCLIPProcessor.from_pretrained(model_args.model_name_or_path)
        except (OSError, ValueError):
            logger.warning("%s has no processor files: building the default one", model_args.model_name_or_path)
            processor = rclip_hf.build_processor(model.config.image_size)
    else:
        config = (RemoteCLIPConfig.from_preset(model_args.arch) if model_args.arch
                  else RemoteCLIPConfig(**inline_model_config(model_args)))
        model = RemoteCLIPModel(config)
        processor = rclip_hf.build_processor(config.image_size)
    if model_args.gradient_checkpointing:  # every text/ViT layer and every ResNet bottleneck block
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model, processor


class ContrastiveModule(nn.Module):
    """Training forward of a CLIP model: L2-normalised image and text embeddings and `exp(logit_scale)`.

    Everything the loss needs goes through this one `forward`, so DDP/FSDP/DeepSpeed see every parameter used.
    """

    def __init__(self, model: RemoteCLIPModel):
        super().__init__()
        self.model = model
        self._no_split_modules = model._no_split_modules  # FSDP auto-wrap reads it from the wrapped module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, seq) ids and mask, (batch, 3, H, W) pixels -> (batch, dim) x2 float32 unit vectors and the scale."""
        image_embeds = self.model.get_image_features(pixel_values=pixel_values).pooler_output
        text_embeds = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return (F.normalize(image_embeds.float(), dim=-1), F.normalize(text_embeds.float(), dim=-1),
                self.model.logit_scale.float().exp())

