"""Conversion of open_clip checkpoints: exact equivalence with open_clip for the three paper backbones,
checkpoint wrappers, Hub file references, and clear failures on bad checkpoints."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from PIL import Image

import rclip_hf
from rclip_hf.convert import ConversionError, load_open_clip_state_dict, main, resolve_checkpoint

open_clip = pytest.importorskip("open_clip")

CAPTIONS = [
    "A busy airport with many airplanes.",
    "Satellite view of Hohai University.",
    "Many white storage tanks are next to the harbor.",
    "There are 3 tennis courts in the picture.",
    "a cute cat",
]


def _open_clip_reference(arch: str, seed: int = 0) -> torch.nn.Module:
    """open_clip's `arch` with every tensor of its state dict random: its init zeroes biases and each ResNet block's
    last BatchNorm scale and leaves running statistics at 0 and 1, which would hide a tensor converted wrongly."""
    torch.manual_seed(seed)
    model = open_clip.create_model(f"{arch}-quickgelu", pretrained=None).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                tensor.normal_(0, 0.1)
            elif tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.02)
    return model


@pytest.fixture(scope="module")
def real_images(shared_data: Path) -> list[Image.Image]:
    paths = [shared_data / "remoteclip" / "airport.jpg", shared_data / "dior" / "JPEGImages" / "00001.jpg",
             min((shared_data / "rsscn7" / "gParking").glob("*.jpg"))]
    return [Image.open(path).convert("RGB") for path in paths]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["RN50", "ViT-B-32", "ViT-L-14"])
def test_conversion_matches_open_clip(arch, tmp_path, real_images):
    reference = _open_clip_reference(arch)
    checkpoint = tmp_path / f"RemoteCLIP-{arch}.pt"
    torch.save(reference.state_dict(), checkpoint)  # how the official files are saved: a plain state dict
    output = tmp_path / "converted"
    assert main(["--checkpoint", str(checkpoint), "--arch", arch, "--output", str(output)]) == 0
    assert (output / "model.safetensors").is_file() and (output / "config.json").is_file()

    model = rclip_hf.RemoteCLIPModel.from_pretrained(output, dtype=torch.float32).eval()
    processor = rclip_hf.RemoteCLIPProcessor.from_pretrained(output)
    inputs = processor(text=CAPTIONS, images=real_images, return_tensors="pt", padding=True)
    with torch.inference_mode():
        image_embeds = model.get_image_features(pixel_values=inputs.pixel_values).pooler_output
        text_embeds = model.get_text_features(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask)
        logits_per_image = model(**inputs).logits_per_image
        expected_image = reference.encode_image(inputs.pixel_values)
        expected_text = reference.encode_text(open_clip.tokenize(CAPTIONS))
        expected_logits = reference.logit_scale.exp() * (
            torch.nn.functional.normalize(expected_image, dim=-1)
            @ torch.nn.functional.normalize(expected_text, dim=-1).T)
    assert image_embeds.shape == (len(real_images), model.config.projection_dim)
    torch.testing.assert_close(image_embeds, expected_image, atol=1e-4, rtol=0)
    torch.testing.assert_close(text_embeds.pooler_output, expected_text, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits_per_image, expected_logits, atol=1e-4, rtol=0)
    assert model.logit_scale.item() == pytest.approx(reference.logit_scale.item())

    if arch != "RN50":  # ViT checkpoints also load in plain transformers, no rclip_hf code involved
        from transformers import CLIPModel

        plain = CLIPModel.from_pretrained(output, dtype=torch.float32).eval()
        with torch.inference_mode():
            torch.testing.assert_close(plain(**inputs).logits_per_image, logits_per_image, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def rn50_state_dict() -> dict[str, torch.Tensor]:
    return _open_clip_reference("RN50").state_dict()


def test_wrapped_and_prefixed_checkpoints_load(tmp_path, rn50_state_dict):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in rn50_state_dict.items()}, "epoch": 3}, path)
    loaded = load_open_clip_state_dict(path)
    assert loaded.keys() == rn50_state_dict.keys()
    assert torch.equal(loaded["visual.attnpool.c_proj.weight"], rn50_state_dict["visual.attnpool.c_proj.weight"])


def test_wrong_arch_names_missing_unexpected_and_mis_shaped_keys(tmp_path, rn50_state_dict, capsys):
    path = tmp_path / "rn50.pt"
    torch.save(rn50_state_dict, path)
    assert main(["--checkpoint", str(path), "--arch", "ViT-B-32", "--output", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "does not match architecture 'ViT-B-32'" in message
    assert "missing keys" in message and "vision_model.embeddings.class_embedding" in message
    assert "unexpected keys" in message and "visual.attnpool.c_proj.weight" in message
    assert "mis-shaped tensors" in message and "text_projection.weight" in message
    assert not (tmp_path / "out").exists()


def test_missing_key_is_named(tmp_path, rn50_state_dict):
    broken = dict(rn50_state_dict)
    del broken["visual.layer3.2.bn2.running_var"]
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(ConversionError, match=r"missing keys \(1\):\s+vision_model\.stages\.2\.2\.bn2\.running_var"):
        rclip_hf.convert.convert_checkpoint(path, "RN50", tmp_path / "out")


def test_truncated_checkpoint_fails_clearly(tmp_path, rn50_state_dict):
    path = tmp_path / "truncated.pt"
    torch.save(rn50_state_dict, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ConversionError, match="truncated or not a PyTorch checkpoint"):
        load_open_clip_state_dict(path)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_needing_arbitrary_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Exploit(marker)}, path, pickle_module=pickle)
    with pytest.raises(ConversionError, match="arbitrary code"):
        load_open_clip_state_dict(path)
    assert not marker.exists()


def test_unknown_arch_and_missing_file(tmp_path):
    with pytest.raises(ConversionError, match="unknown --arch 'ViT-H-99'"):
        rclip_hf.convert.normalize_arch("ViT-H-99")
    with pytest.raises(ConversionError, match="neither a local file or folder, a Hub file"):
        resolve_checkpoint(str(tmp_path / "nope.pt"))


def test_hub_file_reference_resolves_from_local_cache(tmp_path, rn50_state_dict):
    """`owner/repo/file.pt` goes through hf_hub_download; offline, a file placed in an HF cache is used."""
    from huggingface_hub import hf_hub_download

    cache = tmp_path / "hub"
    repo = cache / "models--chendelong--RemoteCLIP"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    torch.save(rn50_state_dict, snapshot / "RemoteCLIP-RN50.pt")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    download = partial(hf_hub_download, cache_dir=cache, local_files_only=True)

    path = resolve_checkpoint("chendelong/RemoteCLIP/RemoteCLIP-RN50.pt", download=download)
    assert path == snapshot / "RemoteCLIP-RN50.pt"
    assert load_open_clip_state_dict(path).keys() == rn50_state_dict.keys()
    with pytest.raises(ConversionError, match="could not fetch 'chendelong/RemoteCLIP/RemoteCLIP-ViT-L-14.pt'"):
        resolve_checkpoint("chendelong/RemoteCLIP/RemoteCLIP-ViT-L-14.pt", download=download)


def test_cli_module_entry_point(tmp_path, rn50_state_dict):
    path = tmp_path / "rn50.pt"
    torch.save(rn50_state_dict, path)
    result = subprocess.run([sys.executable, "-m", "rclip_hf.convert", "--checkpoint", str(path), "--arch",
                             "RN50-quickgelu", "--output", str(tmp_path / "hf"), "--no_verify"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    from transformers import AutoModel, AutoProcessor

    assert type(AutoModel.from_pretrained(tmp_path / "hf")).__name__ == "RemoteCLIPModel"
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "hf"), rclip_hf.RemoteCLIPProcessor)


def test_safetensors_and_open_clip_hub_folders_convert(tmp_path, rn50_state_dict, capsys):
    """`.safetensors` files and open_clip's Hub layout (`open_clip_model.safetensors`, else
    `open_clip_pytorch_model.bin`) read as the `.pt` files do; conversion is verified against open_clip."""
    from safetensors.torch import save_file

    tensors = {key: value.contiguous() for key, value in rn50_state_dict.items()}
    save_file(tensors, tmp_path / "weights.safetensors")
    loaded = load_open_clip_state_dict(tmp_path / "weights.safetensors")
    assert loaded.keys() == rn50_state_dict.keys()
    assert torch.equal(loaded["visual.attnpool.c_proj.weight"], rn50_state_dict["visual.attnpool.c_proj.weight"])
    hub_folder = tmp_path / "resnet50_clip.openai"
    hub_folder.mkdir()
    torch.save(rn50_state_dict, hub_folder / "open_clip_pytorch_model.bin")
    assert load_open_clip_state_dict(hub_folder).keys() == rn50_state_dict.keys()
    save_file(tensors, hub_folder / "open_clip_model.safetensors")
    assert main(["--checkpoint", str(hub_folder), "--arch", "RN50", "--output", str(tmp_path / "hf")]) == 0
    out = capsys.readouterr().out
    assert "equal to open_clip within" in out and "logits" in out
    with pytest.raises(ConversionError, match="folder without open_clip weights"):
        load_open_clip_state_dict(tmp_path / "hf")


def test_open_clip_hub_repo_id_resolves_from_local_cache(tmp_path, rn50_state_dict):
    """`owner/repo` is an open_clip Hub folder: its safetensors first, then its pickle."""
    from huggingface_hub import hf_hub_download

    snapshot = tmp_path / "hub" / "models--timm--resnet50_clip.openai" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    torch.save(rn50_state_dict, snapshot / "open_clip_pytorch_model.bin")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    download = partial(hf_hub_download, cache_dir=tmp_path / "hub", local_files_only=True)
    assert resolve_checkpoint("timm/resnet50_clip.openai", download=download) == snapshot / "open_clip_pytorch_model.bin"
    with pytest.raises(ConversionError, match="open_clip_model.safetensors: .*open_clip_pytorch_model.bin: "):
        resolve_checkpoint("timm/nothing-here", download=download)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_archive_is_refused_naming_the_safetensors_route(tmp_path):
    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    path = tmp_path / "RN50.pt"
    torch.jit.save(torch.jit.script(Tiny()), path)
    with pytest.raises(ConversionError, match=r"TorchScript archive .* use open_clip's safetensors .* "
                                              r"timm/resnet50_clip\.openai"):
        load_open_clip_state_dict(path)


def test_verification_catches_a_wrong_conversion_and_saves_nothing(tmp_path, rn50_state_dict, monkeypatch, capsys):
    path = tmp_path / "rn50.pt"
    torch.save(rn50_state_dict, path)
    build = rclip_hf.convert.build_model

    def wrong_model(state_dict, arch):
        model = build(state_dict, arch)
        with torch.no_grad():
            model.vision_model.attention_pool.out_proj.bias.add_(0.01)  # what a wrong key map would do
        return model

    monkeypatch.setattr(rclip_hf.convert, "build_model", wrong_model)
    assert main(["--checkpoint", str(path), "--arch", "RN50", "--output", str(tmp_path / "out")]) == 2
    assert "differs from open_clip on the same weights: max-abs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["--checkpoint", str(path), "--arch", "RN50", "--output", str(tmp_path / "out"), "--no-verify"]) == 0
    assert "not compared with open_clip" in capsys.readouterr().out


def test_convert_push_to_hub_writes_a_card_and_uploads_the_remote_code(tmp_path, rn50_state_dict, monkeypatch):
    """`convert --push-to-hub` publishes as `rclip-hf push` does: card written, allow-list (remote code included)."""
    from fake_hub import FakeHub

    from rclip_hf import hub

    api = FakeHub()
    monkeypatch.setattr(hub, "HfApi", lambda: api)
    monkeypatch.setattr(hub, "get_token", lambda: "hf_fake")
    path = tmp_path / "rn50.pt"
    torch.save(rn50_state_dict, path)
    assert main(["--checkpoint", str(path), "--arch", "RN50", "--output", str(tmp_path / "out"), "--no-verify",
                 "--push-to-hub", "me/rn50"]) == 0
    assert api.uploaded() == ["README.md", "config.json", "configuration_remoteclip.py", "model.safetensors",
                          "modeling_remoteclip.py", "processing_remoteclip.py", "processor_config.json",
                          "tokenizer.json", "tokenizer_config.json"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert 'AutoModel.from_pretrained("me/rn50", trust_remote_code=True)' in card
    assert "RemoteCLIP RN50" in card


def test_reference_models_have_no_constant_tensor():
    """Every tensor of the equivalence tests' reference is random: no zero bias, BatchNorm scale or statistic."""
    model = _open_clip_reference("RN50")
    constant = [name for name, tensor in model.state_dict().items()
                if tensor.is_floating_point() and tensor.numel() > 1 and bool((tensor == tensor.flatten()[0]).all())]
    assert constant == []
