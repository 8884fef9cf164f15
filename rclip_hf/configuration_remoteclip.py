"""RemoteCLIP configuration: a `CLIPConfig` whose vision tower is a ViT or OpenAI's modified ResNet.

This file is also shipped, unchanged, beside the weights of ResNet folders (`trust_remote_code=True`): it imports
only transformers and huggingface_hub (a dependency of transformers).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig

RESNET_VISION_MODEL_TYPE = "remoteclip_resnet_vision"
#: `auto_map` of a ResNet folder: the Auto classes resolve to the `.py` files saved beside its weights.
REMOTE_AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_remoteclip.RemoteCLIPConfig",
    "AutoModel": "modeling_remoteclip.RemoteCLIPModel",
    "AutoModelForZeroShotImageClassification": "modeling_remoteclip.RemoteCLIPModel",
}
#: The modules copied beside the weights of a ResNet folder: this package's own files, byte for byte.
REMOTE_CODE_FILES = ("configuration_remoteclip.py", "modeling_remoteclip.py", "processing_remoteclip.py")


def save_remote_code(save_directory: str | os.PathLike) -> list[Path]:
    """Copy the remote-code modules (this file and its siblings) into `save_directory`; returns the copies."""
    source, target = Path(__file__).resolve().parent, Path(save_directory)
    copies = []
    for name in REMOTE_CODE_FILES:
        if (source / name).is_file() and (source / name).resolve() != (target / name).resolve():
            copies.append(Path(shutil.copyfile(source / name, target / name)))
    return copies


@strict
class RemoteCLIPResNetVisionConfig(PreTrainedConfig):
    r"""
    Hyper-parameters of OpenAI CLIP's modified ResNet image tower (3-conv stem, anti-aliased strided
    convolutions, attention pooling), as used by the RemoteCLIP RN50 checkpoint.

    layers (`list[int]`, defaults to `[3, 4, 6, 3]`):
        Number of bottleneck blocks in each of the four stages.
    width (`int`, defaults to 64):
        Channels after the stem; stage `i` has `width * 2**i` bottleneck channels and `4x` that as output.
    num_attention_heads (`int`, defaults to 32):
        Heads of the attention-pooling layer (open_clip: `width * 32 // 64`).
    projection_dim (`int`, defaults to 1024):
        Output size of the attention pool's output projection, i.e. the image embedding size.
    image_size (`int`, defaults to 224):
        Input resolution; the attention pool's positional embedding has `(image_size // 32) ** 2 + 1` rows.
    num_channels (`int`, defaults to 3):
        Input channels.
    batch_norm_eps (`float`, defaults to 1e-5):
        Epsilon of every BatchNorm layer.
    initializer_factor (`float`, defaults to 1.0):
        Multiplier of every initialisation scale (as in CLIP).
    patch_size (`None`):
        Always None: the tower has no patches. Saved so that a plain `CLIPModel.from_pretrained` of a ResNet folder
        fails while building its ViT embeddings instead of loading a randomly initialised ViT tower.
    """

    model_type = RESNET_VISION_MODEL_TYPE
    base_config_key = "vision_config"

    layers: list[int] | tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    num_attention_heads: int = 32
    projection_dim: int = 1024
    image_size: int = 224
    num_channels: int = 3
    batch_norm_eps: float = 1e-5
    initializer_factor: float = 1.0
    patch_size: None = None

    @property
    def hidden_size(self) -> int:
        """Channels of the last stage, the attention pool's embedding size (`width * 32`)."""
        return self.width * 32

    def validate_architecture(self):
        """Checks the shapes the attention pool relies on."""
        if len(self.layers) != 4:
            raise ValueError(f"`layers` must list 4 stages, got {list(self.layers)}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"The attention pool width ({self.hidden_size} = width * 32) is not a multiple of "
                f"`num_attention_heads` ({self.num_attention_heads})."
            )
        if self.image_size % 32 != 0:
            raise ValueError(f"`image_size` must be a multiple of 32 (the tower's stride), got {self.image_size}")


def _vit_preset(width: int, layers: int, patch: int, text_width: int, embed_dim: int) -> dict[str, Any]:
    text_config = {"hidden_size": text_width, "intermediate_size": 4 * text_width,
                   "num_attention_heads": text_width // 64, "num_hidden_layers": 12,
                   "projection_dim": embed_dim}
    vision_config = {"model_type": "clip_vision_model", "hidden_size": width, "intermediate_size": 4 * width,
                     "num_attention_heads": width // 64, "num_hidden_layers": layers, "patch_size": patch,
                     "image_size": 224, "projection_dim": embed_dim}
    return {"text_config": text_config, "vision_config": vision_config, "projection_dim": embed_dim}


def _resnet_preset(layers: list[int], embed_dim: int) -> dict[str, Any]:
    text_config = {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                   "num_hidden_layers": 12, "projection_dim": embed_dim}
    vision_config = {"model_type": RESNET_VISION_MODEL_TYPE, "layers": layers, "width": 64,
                     "num_attention_heads": 32, "projection_dim": embed_dim, "image_size": 224}
    return {"text_config": text_config, "vision_config": vision_config, "projection_dim": embed_dim}


#: The official open_clip QuickGELU architectures, keyed by open_clip's model name (without "-quickgelu").
#: RemoteCLIP ships RN50, ViT-B-32 and ViT-L-14; the others share the OpenAI layout and convert the same way.
PRESETS: dict[str, dict[str, Any]] = {
    "RN50": _resnet_preset(layers=[3, 4, 6, 3], embed_dim=1024),
    "RN101": _resnet_preset(layers=[3, 4, 23, 3], embed_dim=512),
    "ViT-B-32": _vit_preset(width=768, layers=12, patch=32, text_width=512, embed_dim=512),
    "ViT-B-16": _vit_preset(width=768, layers=12, patch=16, text_width=512, embed_dim=512),
    "ViT-L-14": _vit_preset(width=1024, layers=24, patch=14, text_width=768, embed_dim=768),
}


@strict
class RemoteCLIPConfig(CLIPConfig):
    r"""
    Configuration of a [`RemoteCLIPModel`]: a [`CLIPConfig`] whose `vision_config` is either a
    [`CLIPVisionConfig`] (ViT tower, `model_type="clip_vision_model"`) or a [`RemoteCLIPResNetVisionConfig`]
    (modified-ResNet tower, `model_type="remoteclip_resnet_vision"`). The vision sub-config's `model_type`
    selects the tower. Text tower, projections and `logit_scale` are CLIP's.

    Build the official architectures with [`RemoteCLIPConfig.from_preset`].
    """

    model_type = "remoteclip"
    sub_configs_defaults: ClassVar[dict[str, Any]] = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}
    #: Vision sub-config class of each vision `model_type` (resolved here, not through `AutoConfig`, so that the
    #: ResNet tower's type needs no registration when this file runs as remote code).
    vision_config_classes: ClassVar[dict[str, type[PreTrainedConfig]]] = {
        CLIPVisionConfig.model_type: CLIPVisionConfig,
        RESNET_VISION_MODEL_TYPE: RemoteCLIPResNetVisionConfig,
    }

    vision_config: dict | CLIPVisionConfig | RemoteCLIPResNetVisionConfig | None = None

    def __post_init__(self, **kwargs: Any):
        if isinstance(self.vision_config, dict):
            model_type = self.vision_config.get("model_type", CLIPVisionConfig.model_type)
            if model_type not in self.vision_config_classes:
                raise ValueError(f"vision_config.model_type is {model_type!r}; RemoteCLIP knows "
                                 f"{', '.join(self.vision_config_classes)}")
            self.vision_config = self.vision_config_classes[model_type](**self.vision_config)
        super().__post_init__(**kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> RemoteCLIPConfig:
        """Load a RemoteCLIP folder, including ViT folders saved as plain CLIP (`model_type: "clip"`)."""
        config_dict, kwargs = cls.get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == CLIPConfig.model_type:
            config_dict = {key: value for key, value in config_dict.items() if key != "model_type"}
        return cls.from_dict(config_dict, **kwargs)

    def to_hub_dict(self) -> dict[str, Any]:
        """The `config.json` contents of a Hub-native folder: a ViT model as plain transformers CLIP (`model_type:
        "clip"`, `architectures: ["CLIPModel"]`), a ResNet one with `auto_map` to the `.py` files beside it."""
        config = self.to_diff_dict()
        if self.uses_resnet_tower:  # patch_size None: a plain CLIPModel cannot build a ViT from it (see the field)
            config["vision_config"] = {**config["vision_config"], "patch_size": None}
            return {**config, "auto_map": dict(REMOTE_AUTO_MAP)}
        config.pop("auto_map", None)
        return {**config, "model_type": CLIPConfig.model_type, "architectures": ["CLIPModel"]}

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> None:
        """Save `config.json` (see [`to_hub_dict`]); a ResNet config also gets the remote-code `.py` files."""
        if self.uses_resnet_tower:
            Path(save_directory).mkdir(parents=True, exist_ok=True)
            save_remote_code(save_directory)
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        """Write `config.json` in the Hub-native form of [`to_hub_dict`] (`use_diff=False`: every field as is)."""
        if not use_diff:
            return super().to_json_file(json_file_path, use_diff=False)
        with open(json_file_path, "w", encoding="utf-8") as writer:
            writer.write(json.dumps(self.to_hub_dict(), indent=2, sort_keys=True) + "\n")

    @property
    def uses_resnet_tower(self) -> bool:
        """True when the vision tower is the modified ResNet (RN50-style checkpoints)."""
        return self.vision_config.model_type == RESNET_VISION_MODEL_TYPE

    @property
    def image_size(self) -> int:
        """Square input resolution of the vision tower, in pixels."""
        return int(self.vision_config.image_size)

    def matching_preset(self) -> str | None:
        """Name of the preset with this architecture (towers' sizes, input size, embedding size), or None."""
        signature = self._architecture_signature()
        return next((name for name in PRESETS if RemoteCLIPConfig.from_preset(name)._architecture_signature()
                     == signature), None)

    def _architecture_signature(self) -> tuple:
        vision, text = self.vision_config.to_dict(), self.text_config.to_dict()
        keys = ("model_type", "hidden_size", "num_hidden_layers", "patch_size", "layers", "width", "image_size")
        values = [vision.get(key) for key in keys]
        values += [text["hidden_size"], text["num_hidden_layers"], self.projection_dim]
        return tuple(tuple(value) if isinstance(value, (list, tuple)) else value for value in values)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RemoteCLIPConfig:
        """Config of an official architecture (`RN50`, `ViT-B-32`, `ViT-L-14`, ...); `overrides` replace top-level keys."""
        if name not in PRESETS:
            raise ValueError(f"Unknown RemoteCLIP preset {name!r}; choose one of {sorted(PRESETS)}")
        kwargs = {key: dict(value) if isinstance(value, dict) else value for key, value in PRESETS[name].items()}
        kwargs.update(overrides)
        return cls(**kwargs)


__all__ = ["PRESETS", "REMOTE_AUTO_MAP", "RESNET_VISION_MODEL_TYPE", "RemoteCLIPConfig", "RemoteCLIPResNetVisionConfig"]
