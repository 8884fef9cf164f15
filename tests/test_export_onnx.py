"""`rclip-hf export MODEL_DIR --to onnx --output OUT`: onnxruntime on OUT gives the folder's embeddings (ViT and
ResNet towers, tiny and full-size, fp32 and fp16), and the card's snippet runs in a Python without torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_hub_native import save_folder

import rclip_hf
from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, RemoteCLIPProcessor, cli
from rclip_hf.onnx_export import OPSET

ort = pytest.importorskip("onnxruntime")

CAPTIONS = ["a satellite photo of an airport.", "many storage tanks next to a harbor, seen from above.", "forest"]
BLOCKED = ("torch", "torchvision", "transformers", "rclip_hf")


@pytest.fixture(scope="module")
def image_paths(shared_data: Path) -> list[Path]:
    """Real images: two RGB JPEGs (different sizes) and an RGBA PNG patch (DOTA split)."""
    rgba = min(p for p in (shared_data / "dota_split").rglob("*.png"))
    return [shared_data / "remoteclip" / "airport.jpg", shared_data / "dior" / "JPEGImages" / "00001.jpg", rgba]


def pytorch_embeddings(model_dir: Path, image_paths: list[Path]) -> tuple[dict, np.ndarray, np.ndarray]:
    """(processed inputs, image_embeds, text_embeds) of the folder's model in float32 PyTorch."""
    model = RemoteCLIPModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = RemoteCLIPProcessor.from_pretrained(model_dir)
    inputs = processor(text=CAPTIONS, images=[Image.open(path) for path in image_paths], return_tensors="pt",
                       padding=True)
    with torch.inference_mode():
        output = model(**inputs)
    arrays = {key: value.numpy() for key, value in inputs.items()}
    return arrays, output.image_embeds.numpy(), output.text_embeds.numpy()


def assert_onnx_equals_folder(model_dir: Path, output: Path, image_paths: list[Path], atol: float = 1e-4,
                              fp16: bool = False) -> None:
    """onnxruntime on OUT's two graphs vs the folder in PyTorch: same embeddings for 3 inputs and for 1 (dynamic
    batch), within `atol`."""
    inputs, image_embeds, text_embeds = pytorch_embeddings(model_dir, image_paths)
    images = ort.InferenceSession(str(output / "image_encoder.onnx"), providers=["CPUExecutionProvider"])
    texts = ort.InferenceSession(str(output / "text_encoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in images.get_inputs()] == ["pixel_values"]
    assert [i.name for i in texts.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in images.get_outputs()] == ["image_embeds"]
    assert [o.name for o in texts.get_outputs()] == ["text_embeds"]
    pixels = inputs["pixel_values"].astype(np.float16 if fp16 else np.float32)
    for rows in (slice(None), slice(1, 2)):
        got_images = images.run(None, {"pixel_values": pixels[rows]})[0]
        got_texts = texts.run(None, {"input_ids": inputs["input_ids"][rows],
                                     "attention_mask": inputs["attention_mask"][rows]})[0]
        assert got_images.dtype == (np.float16 if fp16 else np.float32)
        np.testing.assert_allclose(got_images.astype(np.float32), image_embeds[rows], atol=atol, rtol=0)
        np.testing.assert_allclose(got_texts.astype(np.float32), text_embeds[rows], atol=atol, rtol=0)


def run_card_snippet(output: Path, image_paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Run the python block of OUT/README.md in a fresh interpreter in which importing torch, transformers or
    rclip_hf fails; returns its (image_embeds, text_embeds)."""
    snippet = re.search(r"```python\n(.*?)```", (output / "README.md").read_text(), re.DOTALL).group(1)
    snippet = snippet.replace('["scene.jpg"]', repr([str(path) for path in image_paths]))
    snippet = re.sub(r'\["a satellite photo of an airport\.", "a satellite photo of a forest\."\]', repr(CAPTIONS),
                     snippet)
    blocker = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in BLOCKED)
    saver = "\nnp.save('image_embeds.npy', image_embeds)\nnp.save('text_embeds.npy', text_embeds)\n"
    result = subprocess.run([sys.executable, "-c", blocker + snippet + saver], cwd=output, capture_output=True,
                            text=True, timeout=120, check=False, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.fullmatch(r"\[\d( \d)*\]\n", result.stdout), result.stdout
    return np.load(output / "image_embeds.npy"), np.load(output / "text_embeds.npy")


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_export_tiny_folders_to_onnx(tower, tmp_path, image_paths, capsys):
    folder = save_folder(tower, tmp_path / "model")
    assert cli.main(["export", str(folder), "--to", "onnx", "--output", str(tmp_path / "onnx")]) == 0
    assert "see " in capsys.readouterr().out
    assert {path.name for path in (tmp_path / "onnx").iterdir()} == {
        "README.md", "image_encoder.onnx", "text_encoder.onnx", "onnx_config.json", "processor_config.json",
        "tokenizer.json", "tokenizer_config.json"}
    config = json.loads((tmp_path / "onnx" / "onnx_config.json").read_text())
    assert (config["opset"], config["dtype"], config["image_size"], config["projection_dim"]) == (
        OPSET, "float32", 64, 16)
    assert config["logit_scale"] == pytest.approx(RemoteCLIPModel.from_pretrained(folder).logit_scale.exp().item())
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(tmp_path / "onnx" / "image_encoder.onnx"), load_external_data=False)
    assert next(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")) == OPSET
    assert f"opset {OPSET}" in (tmp_path / "onnx" / "README.md").read_text()
    assert_onnx_equals_folder(folder, tmp_path / "onnx", image_paths)

    _, image_embeds, text_embeds = pytorch_embeddings(folder, image_paths)
    snippet_images, snippet_texts = run_card_snippet(tmp_path / "onnx", image_paths)
    np.testing.assert_allclose(snippet_images, image_embeds, atol=1e-4, rtol=0)
    np.testing.assert_allclose(snippet_texts, text_embeds, atol=1e-4, rtol=0)


def test_export_onnx_fp16(tmp_path, image_paths):
    """--fp16: float16 graphs (pixel_values and embeddings) within float16 precision of the float32 model."""
    folder = save_folder("resnet", tmp_path / "model")
    assert cli.main(["export", str(folder), "--to", "onnx", "--fp16", "--output", str(tmp_path / "onnx")]) == 0
    assert json.loads((tmp_path / "onnx" / "onnx_config.json").read_text())["dtype"] == "float16"
    assert_onnx_equals_folder(folder, tmp_path / "onnx", image_paths, atol=3e-3, fp16=True)
    run_card_snippet(tmp_path / "onnx", image_paths)


def test_export_onnx_bad_input(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path / "nope"), "--to", "onnx", "--output", str(tmp_path / "onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"error: model folder not found: {tmp_path / 'nope'}"
    folder = save_folder("vit", tmp_path / "model")
    assert cli.main(["export", str(folder), "--to", "onnx", "--output", str(folder)]) == 2
    assert "is the model folder; give a new folder" in capsys.readouterr().err
    for extra in (["--to", "onnx", "--push-to-hub", "me/x"], ["--to", "open_clip", "--fp16"]):
        assert cli.main(["export", str(folder), "--output", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert "--push-to-hub uploads open_clip exports only" in err and "--fp16 applies to --to onnx only" in err


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["RN50", "ViT-B-32"])
def test_export_full_size_paper_backbones_to_onnx(arch, tmp_path, image_paths):
    """Full-size RN50 (remote-code ResNet tower) and ViT-B/32 with random, perturbed weights: ~20 s export each."""
    torch.manual_seed(0)
    model = RemoteCLIPModel(RemoteCLIPConfig.from_preset(arch)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "model")
    rclip_hf.build_processor(image_size=model.config.vision_config.image_size).save_pretrained(tmp_path / "model")
    del model
    assert cli.main(["export", str(tmp_path / "model"), "--to", "onnx", "--output", str(tmp_path / "onnx")]) == 0
    assert_onnx_equals_folder(tmp_path / "model", tmp_path / "onnx", image_paths)
