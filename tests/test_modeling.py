"""RemoteCLIPConfig presets and RemoteCLIPModel behaviour (both towers): CLIPModel API, Auto classes,
save/load round trip, bf16, eager vs SDPA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
    CLIPConfig,
    CLIPModel,
    CLIPProcessor,
)

import rclip_hf
from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, RemoteCLIPResNetVisionConfig

TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
TINY_TOWERS = {
    "vit": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
            "num_attention_heads": 2, "num_hidden_layers": 2, "image_size": 64, "patch_size": 16},
    "resnet": {"model_type": "remoteclip_resnet_vision", "layers": [1, 1, 1, 1], "width": 8,
               "num_attention_heads": 4, "projection_dim": 16, "image_size": 64},
}


def tiny_config(tower: str) -> RemoteCLIPConfig:
    return RemoteCLIPConfig(text_config=TINY_TEXT, vision_config=TINY_TOWERS[tower], projection_dim=16)


@pytest.fixture(params=["vit", "resnet"])
def tiny_model(request) -> RemoteCLIPModel:
    torch.manual_seed(0)
    return RemoteCLIPModel(tiny_config(request.param)).eval()


def _inputs(batch: int = 3, image_size: int = 64, seq: int = 7) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 49000, (batch + 1, seq), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 49406, 49407
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": torch.randn(batch, 3, image_size, image_size, generator=generator)}


open_clip_configs = pytest.importorskip("open_clip").factory._MODEL_CONFIGS


@pytest.mark.parametrize("arch", ["RN50", "ViT-B-32", "ViT-L-14"])
def test_presets_match_open_clip_architectures(arch):
    reference = open_clip_configs[f"{arch}-quickgelu"]
    config = RemoteCLIPConfig.from_preset(arch)
    text, vision = config.text_config, config.vision_config
    assert reference["quick_gelu"] and text.hidden_act == "quick_gelu"
    assert config.projection_dim == reference["embed_dim"]
    assert (text.vocab_size, text.max_position_embeddings) == (49408, 77) == (
        reference["text_cfg"]["vocab_size"], reference["text_cfg"]["context_length"])
    assert (text.hidden_size, text.num_attention_heads, text.num_hidden_layers) == (
        reference["text_cfg"]["width"], reference["text_cfg"]["heads"], reference["text_cfg"]["layers"])
    assert (text.eos_token_id, text.bos_token_id) == (49407, 49406)
    assert config.image_size == reference["vision_cfg"]["image_size"] == 224
    if arch == "RN50":
        assert isinstance(vision, RemoteCLIPResNetVisionConfig) and config.uses_resnet_tower
        assert (list(vision.layers), vision.width, vision.num_attention_heads) == (
            reference["vision_cfg"]["layers"], reference["vision_cfg"]["width"], 32)
    else:
        assert not config.uses_resnet_tower and vision.hidden_act == "quick_gelu"
        assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size) == (
            reference["vision_cfg"]["width"], reference["vision_cfg"]["layers"], reference["vision_cfg"]["patch_size"])
        assert vision.num_attention_heads == vision.hidden_size // 64


def test_unknown_preset_and_bad_resnet_config():
    with pytest.raises(ValueError, match="Unknown RemoteCLIP preset 'ViT-X'"):
        RemoteCLIPConfig.from_preset("ViT-X")
    with pytest.raises(StrictDataclassClassValidationError, match="`layers` must list 4 stages"):
        RemoteCLIPResNetVisionConfig(layers=[1, 1, 1])
    with pytest.raises(ValueError, match="must equal projection_dim"):
        RemoteCLIPModel(RemoteCLIPConfig(text_config=TINY_TEXT, vision_config=TINY_TOWERS["resnet"], projection_dim=8))


def test_clip_model_api_shapes_and_loss(tiny_model):
    inputs = _inputs()
    with torch.no_grad():
        image_embeds = tiny_model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        text_embeds = tiny_model.get_text_features(input_ids=inputs["input_ids"]).pooler_output
        output = tiny_model(**inputs)
    assert image_embeds.shape == (3, 16) and text_embeds.shape == (4, 16)
    assert output.logits_per_image.shape == (3, 4) and output.logits_per_text.shape == (4, 3)
    expected = tiny_model.logit_scale.exp() * torch.nn.functional.normalize(image_embeds, dim=-1) @ \
        torch.nn.functional.normalize(text_embeds, dim=-1).T
    torch.testing.assert_close(output.logits_per_image, expected)
    square = tiny_model(**{**inputs, "input_ids": inputs["input_ids"][:3], "attention_mask": inputs["attention_mask"][:3]},
                        return_loss=True)
    labels = torch.arange(3)
    manual = (torch.nn.functional.cross_entropy(square.logits_per_text, labels)
              + torch.nn.functional.cross_entropy(square.logits_per_image, labels)) / 2
    torch.testing.assert_close(square.loss, manual)


def test_resnet_tower_outputs_feature_map_and_hidden_states():
    model = RemoteCLIPModel(tiny_config("resnet")).eval()
    with torch.no_grad():
        output = model.vision_model(pixel_values=torch.randn(2, 3, 64, 64), output_hidden_states=True)
    assert output.last_hidden_state.shape == (2, 8 * 32, 2, 2)
    assert output.pooler_output.shape == (2, 16)
    assert [tuple(h.shape[1:]) for h in output.hidden_states] == [(8, 16, 16), (32, 16, 16), (64, 8, 8),
                                                                  (128, 4, 4), (256, 2, 2)]
    with pytest.raises(ValueError, match="interpolate_pos_encoding is not supported"):
        model.get_image_features(pixel_values=torch.randn(1, 3, 64, 64), interpolate_pos_encoding=True)
    with pytest.raises(ValueError, match=r"Feature map 3x3 does not match"):
        model.get_image_features(pixel_values=torch.randn(1, 3, 96, 96))


def test_random_init_is_finite_and_follows_open_clip(tiny_model):
    outputs = tiny_model(**_inputs())
    assert torch.isfinite(outputs.logits_per_image).all()
    if tiny_model.config.uses_resnet_tower:
        first_block = tiny_model.vision_model.stages[0][0]
        assert torch.count_nonzero(first_block.bn3.weight) == 0  # residual branches start at zero
        assert torch.all(first_block.bn2.weight == 1)


def test_save_and_auto_reload_round_trip(tiny_model, tmp_path):
    """ViT folders are written as plain CLIP (Auto classes give CLIPModel / CLIPProcessor, RemoteCLIP* still load
    them); ResNet folders as RemoteCLIP with `auto_map` (the package's registration is used without remote code)."""
    tiny_model.save_pretrained(tmp_path)
    rclip_hf.build_processor(image_size=64).save_pretrained(tmp_path)
    resnet = tiny_model.config.uses_resnet_tower
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["model_type"], saved["architectures"]) == (
        ("remoteclip", ["RemoteCLIPModel"]) if resnet else ("clip", ["CLIPModel"]))
    assert ("auto_map" in saved) is resnet
    auto_model, auto_processor = (RemoteCLIPModel, rclip_hf.RemoteCLIPProcessor) if resnet else (CLIPModel, CLIPProcessor)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), RemoteCLIPConfig if resnet else CLIPConfig)
    assert type(AutoModel.from_pretrained(tmp_path)) is auto_model
    assert type(AutoModelForZeroShotImageClassification.from_pretrained(tmp_path)) is auto_model
    assert type(AutoProcessor.from_pretrained(tmp_path)) is auto_processor
    reloaded = RemoteCLIPModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(reloaded) is RemoteCLIPModel and reloaded.config.model_type == "remoteclip"
    assert isinstance(rclip_hf.RemoteCLIPProcessor.from_pretrained(tmp_path).image_processor,
                      rclip_hf.RemoteCLIPImageProcessor)
    inputs = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits_per_image, tiny_model(**inputs).logits_per_image,
                                   atol=0, rtol=0)


def test_legacy_remoteclip_vit_folder_still_loads(tmp_path):
    """Folders written before the Hub-native format (`model_type: "remoteclip"`, ViT) keep loading with the package."""
    torch.manual_seed(0)
    model = RemoteCLIPModel(tiny_config("vit")).eval()
    model.save_pretrained(tmp_path)
    legacy = model.config.to_diff_dict() | {"architectures": ["RemoteCLIPModel"]}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    assert legacy["model_type"] == "remoteclip"
    for loader in (AutoModel, RemoteCLIPModel):
        reloaded = loader.from_pretrained(tmp_path).eval()
        assert type(reloaded) is RemoteCLIPModel
        with torch.no_grad():
            torch.testing.assert_close(reloaded(**_inputs()).logits_per_image, model(**_inputs()).logits_per_image,
                                       atol=0, rtol=0)


def test_bfloat16_load_runs_close_to_float32(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    model_bf16 = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert next(model_bf16.parameters()).dtype == torch.bfloat16
    inputs = _inputs()
    with torch.no_grad():
        image_bf16 = model_bf16.get_image_features(pixel_values=inputs["pixel_values"].bfloat16()).pooler_output
        image_fp32 = tiny_model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    cosine = torch.nn.functional.cosine_similarity(image_bf16.float(), image_fp32, dim=-1)
    assert image_bf16.dtype == torch.bfloat16 and (cosine > 0.99).all()


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_eager_and_sdpa_attention_agree(tower, tmp_path):
    torch.manual_seed(0)
    RemoteCLIPModel(tiny_config(tower)).save_pretrained(tmp_path)
    inputs = _inputs()
    logits = {}
    for implementation in ("eager", "sdpa"):
        model = RemoteCLIPModel.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        assert model.config._attn_implementation == implementation
        with torch.no_grad():
            logits[implementation] = model(**inputs).logits_per_image
    torch.testing.assert_close(logits["eager"], logits["sdpa"], atol=1e-5, rtol=1e-5)


def test_vit_checkpoint_loads_in_plain_clip_model(tmp_path):
    torch.manual_seed(0)
    model = RemoteCLIPModel(tiny_config("vit")).eval()
    model.save_pretrained(tmp_path)
    plain = CLIPModel.from_pretrained(tmp_path).eval()
    assert type(plain) is CLIPModel
    inputs = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(plain(**inputs).logits_per_image, model(**inputs).logits_per_image, atol=0, rtol=0)


@pytest.mark.parametrize("arch, millions", [("RN50", 102.0), ("ViT-B-32", 151.3)])
def test_full_size_parameter_counts_equal_open_clip(arch, millions):
    open_clip = pytest.importorskip("open_clip")
    ours = sum(p.numel() for p in RemoteCLIPModel(RemoteCLIPConfig.from_preset(arch)).parameters())
    reference = sum(p.numel() for p in open_clip.create_model(f"{arch}-quickgelu", pretrained=None).parameters())
    assert ours == reference
    assert ours / 1e6 == pytest.approx(millions, abs=0.1)


def test_image_size_property_and_config_json(tmp_path: Path):
    config = RemoteCLIPConfig.from_preset("RN50")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["vision_config"]["model_type"] == "remoteclip_resnet_vision"
    assert AutoConfig.from_pretrained(tmp_path).vision_config.layers == [3, 4, 6, 3]
    assert config.image_size == 224


@pytest.mark.parametrize("arch", ["RN50", "ViT-B-32", "ViT-L-14"])
def test_matching_preset_recognises_official_architectures(arch, tmp_path):
    RemoteCLIPConfig.from_preset(arch).save_pretrained(tmp_path)
    assert RemoteCLIPConfig.from_pretrained(tmp_path).matching_preset() == arch
    assert tiny_config("vit").matching_preset() is None


def test_resnet_gradient_checkpointing_recomputes_blocks_with_equal_gradients():
    torch.manual_seed(0)
    model = RemoteCLIPModel(tiny_config("resnet")).train()
    for module in model.vision_model.modules():  # no zero-initialised BatchNorm: every block gets a gradient
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    inputs = _inputs()
    first_conv_calls = []
    model.vision_model.stages[0][0].conv1.register_forward_hook(lambda *_: first_conv_calls.append(1))

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output.square().sum().backward()
        return {name: parameter.grad.clone() for name, parameter in model.vision_model.named_parameters()}

    plain = gradients()
    assert len(first_conv_calls) == 1
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = gradients()
    assert len(first_conv_calls) == 3  # forward, then the recomputation in backward
    assert plain.keys() == checkpointed.keys() and all(grad.abs().sum() > 0 for grad in plain.values())
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=0, msg=name)
