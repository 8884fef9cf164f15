"""training_scripts/accelerate_configs: each file loads with accelerate's config loader and launcher checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType

CONFIG_DIR = Path(__file__).resolve().parents[1] / "training_scripts" / "accelerate_configs"
EXPECTED = {
    "single_gpu.yaml": (DistributedType.NO, 1),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, 4),
    "fsdp.yaml": (DistributedType.FSDP, 4),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 4),
}


def test_every_config_file_is_expected():
    assert sorted(path.name for path in CONFIG_DIR.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_and_passes_the_launcher_checks(name):
    config = load_config_from_file(str(CONFIG_DIR / name))
    assert (config.distributed_type, config.num_processes, config.mixed_precision) == (*EXPECTED[name], "bf16")
    args = launch_command_parser().parse_args(["--config_file", str(CONFIG_DIR / name), "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert (args.use_fsdp, args.use_deepspeed) == (name == "fsdp.yaml", name == "deepspeed_zero2.yaml")
    assert args.num_processes == EXPECTED[name][1] and args.mixed_precision == "bf16"
    if name == "fsdp.yaml":
        assert (args.fsdp_version, args.fsdp_auto_wrap_policy) == (2, "TRANSFORMER_BASED_WRAP")
    if name == "deepspeed_zero2.yaml":
        assert args.zero_stage == 2


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_fsdp_auto_wrap_finds_the_blocks_of_either_tower(tower):
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin

    from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel
    from training_scripts.training.loop import keep_present_no_split_modules, shardable_logit_scale
    from training_scripts.training.model import ContrastiveModule

    text = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1}
    vision = ({"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
               "num_hidden_layers": 1, "patch_size": 16, "image_size": 32} if tower == "vit" else
              {"model_type": "remoteclip_resnet_vision", "layers": [1, 1, 1, 1], "width": 8, "image_size": 32,
               "num_attention_heads": 2, "projection_dim": 16})
    module = ContrastiveModule(RemoteCLIPModel(RemoteCLIPConfig(text_config=text, vision_config=vision,
                                                                projection_dim=16)))
    keep_present_no_split_modules(module)
    blocks = {"vit": {"CLIPEncoderLayer", "CLIPTextEmbeddings", "CLIPVisionEmbeddings"},
              "resnet": {"CLIPEncoderLayer", "CLIPTextEmbeddings", "RemoteCLIPBottleneck"}}[tower]
    assert set(module._no_split_modules) == blocks
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(module)  # accelerate raises on a listed class the model lacks
    before = module.model.logit_scale.detach().clone()
    shardable_logit_scale(module)  # FSDP2 shards only parameters with a dimension
    assert module.model.logit_scale.shape == (1,) and module.model.logit_scale.requires_grad
    torch.testing.assert_close(module.model.logit_scale.detach()[0], before)
