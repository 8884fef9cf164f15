"""RemoteCLIP model: transformers' `CLIPModel` plus OpenAI CLIP's modified-ResNet image tower."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel

from .configuration_remoteclip import RemoteCLIPConfig, RemoteCLIPResNetVisionConfig


class RemoteCLIPBottleneck(GradientCheckpointingLayer):
    """ResNet bottleneck whose stride is an average pool after the 3x3 conv (anti-aliased), not a strided conv.

    Under gradient checkpointing each block is recomputed in the backward pass: gradients are unchanged, but a
    training-mode BatchNorm updates its running statistics twice per step (forward and recomputation).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, eps: float):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=eps)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=eps)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=eps)
        self.bn3.zero_init = True  # the block starts as the identity (open_clip's init)
        self.downsample = None
        if stride > 1 or in_channels != out_channels:
            self.downsample = nn.Sequential()
            self.downsample.add_module("pool", nn.AvgPool2d(stride) if stride > 1 else nn.Identity())
            self.downsample.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False))
            self.downsample.add_module("bn", nn.BatchNorm2d(out_channels, eps=eps))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        identity = hidden_states if self.downsample is None else self.downsample(hidden_states)
        # In place on fresh BatchNorm outputs (their backward needs only their inputs): no new feature maps.
        hidden_states = F.relu(self.bn1(self.conv1(hidden_states)), inplace=True)
        hidden_states = F.relu(self.bn2(self.conv2(hidden_states)), inplace=True)
        hidden_states = self.bn3(self.conv3(self.pool(hidden_states)))
        return F.relu(hidden_states.add_(identity), inplace=True)


class RemoteCLIPAttentionPool(nn.Module):
    """Multi-head attention of the mean feature (query) over all positions of the last feature map."""

    def __init__(self, config: RemoteCLIPResNetVisionConfig):
        super().__init__()
        self.config = config
        embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = embed_dim // self.num_heads
        num_positions = (config.image_size // 32) ** 2 + 1
        self.position_embedding = nn.Parameter(torch.zeros(num_positions, embed_dim))
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, config.projection_dim)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(batch, channels, height, width) -> (batch, projection_dim)."""
        batch_size, channels, height, width = feature_map.shape
        if height * width + 1 != self.position_embedding.shape[0]:
            raise ValueError(
                f"Feature map {height}x{width} does not match the attention pool's "
                f"{self.position_embedding.shape[0] - 1} positions (image_size={self.config.image_size})"
            )
        tokens = feature_map.flatten(2).transpose(1, 2)  # (batch, height*width, channels)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # (batch, 1 + h*w, channels)
        tokens = tokens + self.position_embedding.to(tokens.dtype)

        def split_heads(states: torch.Tensor) -> torch.Tensor:  # (batch, seq, channels) -> (batch, heads, seq, head_dim)
            return states.view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        query = split_heads(self.q_proj(tokens[:, :1]))
        key = split_heads(self.k_proj(tokens))
        value = split_heads(self.v_proj(tokens))
        if self.config._attn_implementation == "eager":
            weights = torch.softmax((query @ key.transpose(-1, -2)) * self.head_dim**-0.5, dim=-1)
            attended = weights @ value
        else:
            attended = F.scaled_dot_product_attention(query, key, value)
        attended = attended.transpose(1, 2).reshape(batch_size, channels)  # (batch, channels)
        return self.out_proj(attended)


class RemoteCLIPResNetVisionModel(CLIPPreTrainedModel):
    """
    OpenAI CLIP's modified ResNet. Three departures from torchvision's ResNet:
    - a stem of three 3x3 convolutions followed by an average pool instead of one 7x7 conv and a max pool;
    - anti-aliased strided convolutions: an average pool is placed before each convolution with stride > 1;
    - the head is a QKV attention pool (the mean feature attends over all positions) instead of an average pool.
    """

    config_class = RemoteCLIPResNetVisionConfig
    config: RemoteCLIPResNetVisionConfig
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    input_modalities = ("image",)
    _no_split_modules: ClassVar[list[str]] = ["RemoteCLIPBottleneck"]
    _can_record_outputs: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: RemoteCLIPResNetVisionConfig):
        super().__init__(config)
        stem_width, eps = config.width // 2, config.batch_norm_eps
        self.stem = nn.Sequential()
        for index, (in_channels, out_channels, stride) in enumerate(
            [(config.num_channels, stem_width, 2), (stem_width, stem_width, 1), (stem_width, config.width, 1)], 1
        ):
            self.stem.add_module(f"conv{index}", nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False))
            self.stem.add_module(f"bn{index}", nn.BatchNorm2d(out_channels, eps=eps))
            self.stem.add_module(f"act{index}", nn.ReLU(inplace=True))
        self.stem.add_module("pool", nn.AvgPool2d(2))

        self.stages = nn.ModuleList()
        in_channels = config.width
        for stage_index, num_blocks in enumerate(config.layers):
            channels = config.width * 2**stage_index
            blocks = []
            for block_index in range(num_blocks):
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                blocks.append(RemoteCLIPBottleneck(in_channels, channels, stride, eps))
                in_channels = channels * RemoteCLIPBottleneck.expansion
            self.stages.append(nn.Sequential(*blocks))
        self.attention_pool = RemoteCLIPAttentionPool(config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """open_clip's initialisation: He-normal convolutions, unit BatchNorms with the last one of each
        block zeroed, attention pool weights normal with std `width ** -0.5`."""
        factor = self.config.initializer_factor
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            init.constant_(module.weight, 0.0 if getattr(module, "zero_init", False) else 1.0)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
        elif isinstance(module, RemoteCLIPAttentionPool):
            std = module.q_proj.in_features**-0.5 * factor
            init.normal_(module.position_embedding, std=std)
            for projection in (module.q_proj, module.k_proj, module.v_proj, module.out_proj):
                init.normal_(projection.weight, std=std)
                init.zeros_(projection.bias)

    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """
        pixel_values: (batch, channels, image_size, image_size). Returns `last_hidden_state` of shape
        (batch, width * 32, image_size / 32, image_size / 32) and `pooler_output` of shape (batch, projection_dim).
        """
        if interpolate_pos_encoding:
            raise ValueError("The ResNet tower's attention pool has a fixed grid: interpolate_pos_encoding is not supported")
        pixel_values = pixel_values.to(self.stem.conv1.weight.dtype)
        if pixel_values.device.type == "cpu" and not torch.is_grad_enabled():
            # oneDNN convolutions keep the input's layout and run ~1.3x faster channels-last (RN50 CPU inference,
            # outputs equal to 1e-7). Training stays NCHW: channels-last changes the BatchNorm gradients there.
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        hidden_states = self.stem(pixel_values)
        all_hidden_states = (hidden_states.contiguous(),) if output_hidden_states else None
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states.contiguous(),)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states.contiguous(),
            pooler_output=self.attention_pool(hidden_states),
            hidden_states=all_hidden_states,
        )


class RemoteCLIPModel(CLIPModel):
    """
    [`CLIPModel`] with a choice of image tower: ViT (identical to CLIP's, so converted ViT checkpoints also load
    in plain `CLIPModel`) or the modified ResNet (RN50), whose attention pool already projects to
    `projection_dim`, so `visual_projection` is the identity there.
    """

    config_class = RemoteCLIPConfig
    config: RemoteCLIPConfig
    _no_split_modules = CLIPModel._no_split_modules + ["RemoteCLIPBottleneck"]

    def __init__(self, config: RemoteCLIPConfig):
        CLIPPreTrainedModel.__init__(self, config)
        text_config, vision_config = config.text_config, config.vision_config
        self.projection_dim = config.projection_dim
        self.text_embed_dim = text_config.hidden_size
        self.vision_embed_dim = vision_config.hidden_size

        self.text_model = CLIPTextModel._from_config(text_config)
        self.text_projection = nn.Linear(self.text_embed_dim, self.projection_dim, bias=False)
        if config.uses_resnet_tower:
            if vision_config.projection_dim != config.projection_dim:
                raise ValueError(
                    f"vision_config.projection_dim ({vision_config.projection_dim}) must equal "
                    f"projection_dim ({config.projection_dim}) for the ResNet tower"
                )
            self.vision_model = RemoteCLIPResNetVisionModel._from_config(vision_config)
            self.visual_projection = nn.Identity()
        else:
            self.vision_model = CLIPVisionModel._from_config(vision_config)
            self.visual_projection = nn.Linear(self.vision_embed_dim, self.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(self.config.logit_scale_init_value))
        self.post_init()


__all__ = ["RemoteCLIPModel", "RemoteCLIPResNetVisionModel"]
