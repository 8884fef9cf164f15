"""`rclip-hf export MODEL_DIR --to open_clip --output OUT`: open_clip loads OUT with `local-dir:` and gives the
folder's logits (tiny towers, a folder trained with train.py, and the full-size paper backbones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_hub_native import perturbed_model, save_folder

import rclip_hf
from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, RemoteCLIPProcessor, cli, hub
from rclip_hf.convert import ConversionError
from rclip_hf.export import export_open_clip

open_clip = pytest.importorskip("open_clip")

REPO_ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["a satellite photo of an airport.", "many storage tanks next to a harbor.", "a dense forest."]


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[Image.Image]:
    """Two RGB JPEGs and an RGBA PNG patch."""
    rgba = min(p for p in (shared_data / "dota_split").rglob("*.png"))
    return [Image.open(path) for path in (shared_data / "remoteclip" / "airport.jpg",
                                          shared_data / "dior" / "JPEGImages" / "00001.jpg", rgba)]


def assert_open_clip_equals_folder(model_dir: Path, output: Path, images: list[Image.Image], atol: float = 1e-4):
    """open_clip on OUT (its own transform and tokenizer) vs the folder with rclip_hf: equal pixels and logits."""
    reference, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{output}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{output}")
    model = RemoteCLIPModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = RemoteCLIPProcessor.from_pretrained(model_dir)
    inputs = processor(text=CAPTIONS, images=images, return_tensors="pt", padding=True)
    pixels = torch.stack([preprocess(image) for image in images])
    torch.testing.assert_close(inputs.pixel_values, pixels, atol=1e-6, rtol=0)
    with torch.inference_mode():
        image_features = reference.eval().encode_image(pixels, normalize=True)
        text_features = reference.encode_text(tokenizer(CAPTIONS), normalize=True)
        expected = reference.logit_scale.exp() * image_features @ text_features.T
        logits = model(**inputs).logits_per_image
    torch.testing.assert_close(logits, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_export_tiny_folders_to_open_clip(tower, tmp_path, images):
    folder = save_folder(tower, tmp_path / "model")
    assert cli.main(["export", str(folder), "--to", "open_clip", "--output", str(tmp_path / "oc")]) == 0
    config = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())
    assert config["model_cfg"]["quick_gelu"] is True and config["model_cfg"]["embed_dim"] == 16
    assert config["preprocess_cfg"] == {"size": 64, "mode": "RGB", "mean": [0.48145466, 0.4578275, 0.40821073],
                                        "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic",
                                        "resize_mode": "shortest", "fill_color": 0}
    assert_open_clip_equals_folder(folder, tmp_path / "oc", images)


def test_export_round_trips_through_convert(tmp_path):
    """export then convert gives back every tensor exactly (the key map and its inverse agree)."""
    from rclip_hf.convert import convert_state_dict, to_open_clip_state_dict

    model = perturbed_model("resnet")
    converted, unknown = convert_state_dict(to_open_clip_state_dict(model), model.config)
    assert unknown == []
    assert converted.keys() == model.state_dict().keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(converted[key], tensor), key


def test_export_refuses_what_open_clip_cannot_build(tmp_path, capsys):
    config = RemoteCLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                                           "num_hidden_layers": 1, "hidden_act": "relu"},
                              vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                                             "num_hidden_layers": 1, "image_size": 32, "patch_size": 16},
                              projection_dim=8)
    RemoteCLIPModel(config).save_pretrained(tmp_path / "model")
    with pytest.raises(ConversionError, match=r"open_clip has no architecture with activations \['quick_gelu', 'relu'\]"):
        export_open_clip(tmp_path / "model", tmp_path / "oc")
    assert cli.main(["export", str(tmp_path / "nope"), "--to", "open_clip", "--output", str(tmp_path / "oc")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    assert cli.main(["export", str(tmp_path / "bert"), "--to", "open_clip", "--output", str(tmp_path / "oc")]) == 2
    assert "holds a model of type 'bert', not a RemoteCLIP/CLIP model" in capsys.readouterr().err


def test_export_push_to_hub_publishes_with_the_push_rules(tmp_path, monkeypatch):
    """`export --push-to-hub` goes through the same plan as `rclip-hf push`: a card is written, the allow-list holds."""
    from fake_hub import FakeHub

    api = FakeHub()
    monkeypatch.setattr(hub, "HfApi", lambda: api)
    monkeypatch.setattr(hub, "get_token", lambda: "hf_fake")
    folder = save_folder("vit", tmp_path / "model")
    assert cli.main(["export", str(folder), "--to", "open_clip", "--output", str(folder), "--push-to-hub",
                     "me/tiny"]) == 0
    assert api.uploaded() == ["README.md", "config.json", "model.safetensors", "open_clip_config.json",
                        "open_clip_model.safetensors", "processor_config.json", "tokenizer.json",
                        "tokenizer_config.json"]
    card = (folder / "README.md").read_text()
    assert 'open_clip.create_model_and_transforms("hf-hub:me/tiny")' in card
    assert 'CLIPModel.from_pretrained("me/tiny")' in card and "trust_remote_code" not in card


def test_train_py_folder_exports(shared_data, tmp_path, images):
    """A `final/` folder written by train.py (tiny.yaml, 2 steps) is Hub-native and exports to open_clip and ONNX."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_export_onnx import assert_onnx_equals_folder
    from training_corpus import build_scene_corpus

    build_scene_corpus(shared_data, tmp_path / "corpus", per_class=4)
    command = [sys.executable, str(REPO_ROOT / "training_scripts" / "train.py"), "--config",
               str(REPO_ROOT / "training_scripts" / "configs" / "tiny.yaml"), "--dataset", str(tmp_path / "corpus"),
               "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--checkpointing_steps", "100",
               "--report_to", "none", "--eval_samples", "8", "--batch_size", "8"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "2", "ACCELERATE_USE_CPU": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    final = tmp_path / "run" / "final"
    assert json.loads((final / "config.json").read_text())["model_type"] == "clip"
    assert export_open_clip(final, tmp_path / "oc")
    assert_open_clip_equals_folder(final, tmp_path / "oc", images)
    assert cli.main(["export", str(final), "--to", "onnx", "--output", str(tmp_path / "onnx")]) == 0
    assert_onnx_equals_folder(final, tmp_path / "onnx", [Path(image.filename) for image in images])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["RN50", "ViT-B-32", "ViT-L-14"])
def test_export_full_size_paper_backbones(arch, tmp_path, images):
    """Full-size: an open_clip model with random (perturbed) weights, converted, exported, reloaded by open_clip."""
    torch.manual_seed(0)
    reference = open_clip.create_model(f"{arch}-quickgelu", pretrained=None)
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if tensor.is_floating_point() and name != "attn_mask":
                tensor.add_(torch.randn_like(tensor) * 0.01 + (0.5 if name.endswith("running_var") else 0))
    torch.save(reference.state_dict(), tmp_path / "checkpoint.pt")
    assert rclip_hf.convert.main(["--checkpoint", str(tmp_path / "checkpoint.pt"), "--arch", arch, "--output",
                                  str(tmp_path / "model"), "--no-verify"]) == 0
    export_open_clip(tmp_path / "model", tmp_path / "oc")
    assert_open_clip_equals_folder(tmp_path / "model", tmp_path / "oc", images)
