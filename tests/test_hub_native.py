"""Hub-native folders: ViT folders load with transformers alone (plain CLIP), ResNet folders with
`trust_remote_code=True`, both in a process where `rclip_hf` cannot be imported, with the package's outputs."""

from __future__ import annotations

import ast
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from package_less import run_python
from PIL import Image

import rclip_hf
from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, RemoteCLIPProcessor
from rclip_hf.configuration_remoteclip import REMOTE_CODE_FILES

TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
TOWERS = {
    "vit": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
            "num_hidden_layers": 2, "image_size": 64, "patch_size": 16},
    "resnet": {"model_type": "remoteclip_resnet_vision", "layers": [1, 1, 1, 1], "width": 8, "num_attention_heads": 4,
               "projection_dim": 16, "image_size": 64},
}
CAPTIONS = ["a satellite photo of an airport.", "many storage tanks next to a harbor.", "a dense forest."]
#: Max-abs logits difference of plain CLIPProcessor vs RemoteCLIPProcessor on these tiny models (RGB images).
PLAIN_PROCESSOR_LOGITS_BOUND = 0.02
#: A real image with real transparent pixels: a DOTA crop with a nodata collar (tests/data/make_transparent_sample.py).
TRANSPARENT_SAMPLE = Path(__file__).parent / "data" / "transparent" / "P1888_rotated.png"
#: Captions that open_clip's cleaning changes: HTML entities (escaped once and twice) and mojibake (UTF-8 read as
#: cp1252), which plain `CLIPTokenizer` tokenises as written.
UNCLEAN_CAPTIONS = ["Cars &amp; trucks parked near the terminal.", "Storage tanks &amp;amp; a pier.",
                    "Boats at the caf\u00c3\u00a9 by the harbour.", "A \u00e2\u20ac\u0153green\u00e2\u20ac\u009d roof."]


def perturbed_model(tower: str, seed: int = 0) -> RemoteCLIPModel:
    """A tiny model whose every weight and BatchNorm statistic is random (no zero-initialised tensor hides a bug)."""
    torch.manual_seed(seed)
    model = RemoteCLIPModel(RemoteCLIPConfig(text_config=TEXT, vision_config=TOWERS[tower], projection_dim=16))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
            elif buffer.is_floating_point():
                buffer.normal_(0, 0.1)
    return model.eval()


def save_folder(tower: str, folder: Path) -> Path:
    perturbed_model(tower).save_pretrained(folder)
    rclip_hf.build_processor(image_size=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub_native")
    return {tower: save_folder(tower, root / tower) for tower in TOWERS}


@pytest.fixture(scope="module")
def image_paths(shared_data: Path) -> list[Path]:
    """Real images: two RGB JPEGs and an RGBA PNG with transparent pixels."""
    return [shared_data / "remoteclip" / "airport.jpg", shared_data / "dior" / "JPEGImages" / "00001.jpg",
            TRANSPARENT_SAMPLE]


def test_folder_files_say_what_they_are(folders):
    vit = json.loads((folders["vit"] / "config.json").read_text())
    assert (vit["model_type"], vit["architectures"], "auto_map" in vit) == ("clip", ["CLIPModel"], False)
    assert not any((folders["vit"] / name).exists() for name in REMOTE_CODE_FILES)
    processor = json.loads((folders["vit"] / "processor_config.json").read_text())
    assert (processor["processor_class"], processor["image_processor"]["image_processor_type"]) == (
        "CLIPProcessor", "CLIPImageProcessor")
    resnet = json.loads((folders["resnet"] / "config.json").read_text())
    assert (resnet["model_type"], resnet["architectures"]) == ("remoteclip", ["RemoteCLIPModel"])
    assert resnet["auto_map"] == {"AutoConfig": "configuration_remoteclip.RemoteCLIPConfig",
                                  "AutoModel": "modeling_remoteclip.RemoteCLIPModel",
                                  "AutoModelForZeroShotImageClassification": "modeling_remoteclip.RemoteCLIPModel"}
    assert resnet["vision_config"]["patch_size"] is None
    processor = json.loads((folders["resnet"] / "processor_config.json").read_text())
    assert processor["auto_map"] == {"AutoProcessor": "processing_remoteclip.RemoteCLIPProcessor"}
    assert processor["image_processor"]["auto_map"] == {
        "AutoImageProcessor": "processing_remoteclip.RemoteCLIPImageProcessor"}
    tokenizer = json.loads((folders["resnet"] / "tokenizer_config.json").read_text())
    assert tokenizer["auto_map"] == {"AutoTokenizer": [None, "processing_remoteclip.RemoteCLIPTokenizer"]}


def test_shipped_remote_code_is_the_package_source(folders):
    """One source: the `.py` files beside ResNet weights are the package's modules, byte for byte."""
    package = Path(rclip_hf.__file__).parent
    for name in REMOTE_CODE_FILES:
        assert (folders["resnet"] / name).read_bytes() == (package / name).read_bytes(), name


@pytest.mark.parametrize("name", REMOTE_CODE_FILES)
def test_remote_code_imports_only_torch_and_transformers(name):
    """Top-level imports: the standard library, torch, transformers (and huggingface_hub, which it requires), the
    sibling files, and ftfy only inside `try`."""
    tree = ast.parse((Path(rclip_hf.__file__).parent / name).read_text())
    allowed = {"torch", "transformers", "huggingface_hub", *sys.stdlib_module_names}
    optional = {alias.name for node in tree.body if isinstance(node, ast.Try) for stmt in node.body
                if isinstance(stmt, ast.Import) for alias in stmt.names}
    assert optional <= {"ftfy"}
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert {alias.name.split(".")[0] for alias in node.names} <= allowed, ast.dump(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module.split(".")[0] in allowed | {"__future__"}, node.module


PACKAGE_LESS_LOGITS = """
import json
import torch
from PIL import Image
from transformers import (AutoConfig, AutoModel, AutoModelForZeroShotImageClassification, AutoProcessor, CLIPModel,
                          pipeline)
try:
    import rclip_hf
    raise SystemExit("rclip_hf must not be importable here")
except ImportError:
    pass
folder, remote, images = ARGS
kwargs = {"trust_remote_code": True} if remote else {}
config = AutoConfig.from_pretrained(folder, **kwargs)
model = AutoModel.from_pretrained(folder, **kwargs).eval()
zero_shot = AutoModelForZeroShotImageClassification.from_pretrained(folder, **kwargs)
processor = AutoProcessor.from_pretrained(folder, **kwargs)
captions = CAPTIONS
inputs = processor(text=captions, images=[Image.open(path) for path in images], return_tensors="pt", padding=True)
pixels = torch.load(folder + "/../pixels.pt")
with torch.inference_mode():
    logits = model(**inputs).logits_per_image
    logits_from_pixels = model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                               pixel_values=pixels).logits_per_image
classifier = pipeline("zero-shot-image-classification", model=folder, **kwargs)
scores = classifier(images[0], candidate_labels=["airport", "harbor", "forest"])
print(json.dumps({"classes": [type(x).__name__ for x in (config, model, zero_shot, processor,
                                                          processor.image_processor, processor.tokenizer)],
                  "modules": sorted({type(model).__module__.split(".")[0], type(processor).__module__.split(".")[0]}),
                  "logits": logits.tolist(), "logits_from_pixels": logits_from_pixels.tolist(),
                  "pipeline": {item["label"]: item["score"] for item in scores}}))
""".replace("CAPTIONS", repr(CAPTIONS))


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_loads_without_the_package_with_the_package_outputs(tower, folders, image_paths, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(folders[tower], folder)
    model = RemoteCLIPModel.from_pretrained(folder).eval()
    processor = RemoteCLIPProcessor.from_pretrained(folder)
    images = [Image.open(path) for path in image_paths]
    inputs = processor(text=CAPTIONS, images=images, return_tensors="pt", padding=True)
    torch.save(inputs.pixel_values, tmp_path / "pixels.pt")
    with torch.inference_mode():
        expected = model(**inputs).logits_per_image
        prompts = processor(text=[f"This is a photo of {label}." for label in ("airport", "harbor", "forest")],
                            images=images[:1], return_tensors="pt", padding=True)
        expected_scores = model(**prompts).logits_per_image.softmax(dim=-1)[0]

    arguments = repr((str(folder), tower == "resnet", [str(path) for path in image_paths]))
    output = json.loads(run_python(PACKAGE_LESS_LOGITS.replace("ARGS", arguments), tmp_path).splitlines()[-1])
    if tower == "vit":
        assert output["classes"] == ["CLIPConfig", "CLIPModel", "CLIPModel", "CLIPProcessor", "CLIPImageProcessor",
                                     "CLIPTokenizer"]
        assert output["modules"] == ["transformers"]
    else:
        assert output["classes"] == ["RemoteCLIPConfig", "RemoteCLIPModel", "RemoteCLIPModel", "RemoteCLIPProcessor",
                                     "RemoteCLIPImageProcessor", "RemoteCLIPTokenizer"]
        assert output["modules"] == ["transformers_modules"]  # the folder's own files, not rclip_hf
    # Same pixels in, same logits out: the model is the package's, whatever the processor.
    torch.testing.assert_close(torch.tensor(output["logits_from_pixels"]), expected, atol=1e-4, rtol=0)
    logits, scores = torch.tensor(output["logits"]), torch.tensor(list(output["pipeline"].values()))
    order = [("airport", "harbor", "forest").index(label) for label in output["pipeline"]]
    if tower == "resnet":  # the remote processor is the package's: equal end to end, RGBA included
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(scores, expected_scores[order], atol=1e-4, rtol=0)
    else:  # plain CLIPProcessor: RGB images within the stated bound; the RGBA patch is composited on white there
        assert (logits[:2] - expected[:2]).abs().max() <= PLAIN_PROCESSOR_LOGITS_BOUND
        torch.testing.assert_close(scores, expected_scores[order], atol=PLAIN_PROCESSOR_LOGITS_BOUND, rtol=0)


CLIP_MODEL_ON_RESNET = """
from transformers import CLIPModel
from transformers.utils import logging
logging.set_verbosity_warning()
try:
    CLIPModel.from_pretrained(FOLDER)
except TypeError as error:
    print("refused:", error)
"""


def test_plain_clip_model_refuses_a_resnet_folder(folders, tmp_path, caplog):
    """Point 8: no random ViT tower behind a warning: plain CLIPModel warns that the folder is `remoteclip`, then
    fails building ViT patch embeddings from a config whose `patch_size` is null."""
    code = CLIP_MODEL_ON_RESNET.replace("FOLDER", repr(str(folders["resnet"])))
    assert "refused:" in run_python(code, tmp_path)
    from transformers import CLIPModel

    with pytest.raises(TypeError):
        CLIPModel.from_pretrained(folders["resnet"])
    assert "model of type `remoteclip` to instantiate a model of type `clip`" in caplog.text


def test_resnet_folder_reloads_and_resaves_without_the_package(folders, tmp_path):
    """A remote-code model saved again in the package-less process keeps its files (and its outputs)."""
    code = f"""
from transformers import AutoModel
model = AutoModel.from_pretrained({str(folders["resnet"])!r}, trust_remote_code=True)
model.save_pretrained({str(tmp_path / "again")!r})
"""
    run_python(code, tmp_path)
    for name in ("configuration_remoteclip.py", "modeling_remoteclip.py"):
        assert (tmp_path / "again" / name).read_bytes() == (folders["resnet"] / name).read_bytes()
    again = RemoteCLIPModel.from_pretrained(tmp_path / "again").eval()
    original = RemoteCLIPModel.from_pretrained(folders["resnet"]).eval()
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(again.get_image_features(pixel_values=pixels).pooler_output,
                                   original.get_image_features(pixel_values=pixels).pooler_output, atol=0, rtol=0)


def test_train_starts_from_a_plain_transformers_clip_folder(shared_data, tmp_path):
    """`train.py --model_name_or_path` takes what `CLIPModel.save_pretrained` writes (offline stand-in for
    `openai/clip-vit-base-patch32`): same logits as plain CLIPModel, open_clip-exact processor, and it trains."""
    import os
    import subprocess

    from training_corpus import build_scene_corpus
    from transformers import CLIPConfig, CLIPModel

    from training_scripts.training.arguments import ModelArguments
    from training_scripts.training.model import build_model_and_processor

    torch.manual_seed(0)
    plain = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=TOWERS["vit"], projection_dim=16)).eval()
    plain.save_pretrained(tmp_path / "openai-like")
    rclip_hf.build_processor(image_size=64).save_pretrained(tmp_path / "openai-like")
    model, processor = build_model_and_processor(ModelArguments(model_name_or_path=str(tmp_path / "openai-like")))
    assert type(model) is RemoteCLIPModel and type(processor) is RemoteCLIPProcessor
    inputs = processor(text=CAPTIONS, images=[Image.new("RGB", (80, 64), "green")], return_tensors="pt", padding=True)
    with torch.inference_mode():
        torch.testing.assert_close(model.eval()(**inputs).logits_per_image, plain(**inputs).logits_per_image,
                                   atol=1e-6, rtol=0)

    build_scene_corpus(shared_data, tmp_path / "corpus", per_class=4, size=64)
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(root / "training_scripts" / "train.py"), "--model_name_or_path",
               str(tmp_path / "openai-like"), "--dataset", str(tmp_path / "corpus"), "--output_dir", str(tmp_path / "run"),
               "--max_steps", "2", "--batch_size", "8", "--checkpointing_steps", "100", "--report_to", "none",
               "--eval_samples", "8", "--mixed_precision", "no", "--dataloader_num_workers", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "2", "ACCELERATE_USE_CPU": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["architectures"] == ["CLIPModel"]


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_card_snippets_run_without_the_package(tower, folders, shared_data, tmp_path):
    """Each "How to use" snippet of the card runs as written against the repo (an offline Hub cache): the
    transformers / remote-code / open_clip ones where rclip_hf cannot be imported, the package one with it."""
    from package_less import make_hub_cache

    from model_cards.card import CardInputs, build_model_card
    from rclip_hf.export import export_open_clip
    from rclip_hf.usage import _CAPTIONS as _USAGE_CAPTIONS

    folder = tmp_path / "folder"
    shutil.copytree(folders[tower], folder)
    export_open_clip(folder, folder)
    repo_id = f"remote-sensing/tiny-{tower}"
    card = build_model_card({"benchmarks": {}}, CardInputs(repo_id=repo_id, model_dir=str(folder), arch=None))
    usage = card.text.split("## How to use")[1].split("\n## ")[0]
    snippets = re.findall(r"```python\n(.*?)```", usage, flags=re.DOTALL)
    assert all("truncation=True" in call for code in snippets for call in re.findall(r"processor\(text=[^\n]*\n.*", code))
    # a caption over the text tower's 77 tokens is truncated, as open_clip's tokenizer does, not refused
    long_caption = "a satellite photo of " + "many white storage tanks next to a harbor, " * 12
    snippets = [code.replace(_USAGE_CAPTIONS, f"{_USAGE_CAPTIONS}\ncaptions.append({long_caption!r})")
                for code in snippets]
    expected = ["CLIPModel.from_pretrained" if tower == "vit" else "trust_remote_code=True",
                "open_clip.create_model_and_transforms", "from rclip_hf import"]
    assert [next(marker for marker in reversed(expected) if marker in code) for code in snippets] == expected
    assert ("A plain `CLIPModel.from_pretrained` of it fails" in usage) is (tower == "resnet")
    make_hub_cache(tmp_path / "hub", repo_id, folder)
    shutil.copy(shared_data / "remoteclip" / "airport.jpg", tmp_path / "scene.jpg")
    for block_package in (True, False):  # one process each: every snippet runs as its own script (own namespace)
        chosen = [code for code in snippets if ("from rclip_hf import" in code) is not block_package]
        runner = "".join(f"exec(compile({code!r}, 'snippet {index}', 'exec'), {{}})\nprint('--- end of snippet')\n"
                         for index, code in enumerate(chosen))
        output = run_python(runner, tmp_path, block_package=block_package, env={"HF_HUB_CACHE": str(tmp_path / "hub")})
        results = output.split("--- end of snippet")[:-1]
        assert len(results) == len(chosen) and all("airport" in result for result in results), output


@pytest.mark.slow
def test_plain_clip_preprocessing_difference_on_a_full_size_vit(shared_data, tmp_path, capsys):
    """The numbers the README and the card quote: plain CLIPProcessor vs open_clip's transform and tokenizer
    (RemoteCLIPProcessor) with a converted ViT-B/32 (random weights): on real RGB images, pixels <= 0.03 and logits
    <= 1e-3; on the real transparent sample (composited on white there, alpha dropped after the resize here) and on
    captions with HTML entities or mojibake (tokenised as written there, cleaned here), much more."""
    from transformers import CLIPModel, CLIPProcessor

    from rclip_hf.convert import build_model

    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    build_model(reference.state_dict(), "ViT-B-32").save_pretrained(tmp_path)
    rclip_hf.build_processor().save_pretrained(tmp_path)
    images = [Image.open(path) for path in [shared_data / "remoteclip" / "airport.jpg",
                                            shared_data / "dior" / "JPEGImages" / "00001.jpg",
                                            min((shared_data / "neon_trees").glob("*.png")),
                                            *sorted((shared_data / "rsscn7" / "gParking").glob("*.jpg"))[:3]]]
    plain, exact = CLIPProcessor.from_pretrained(tmp_path), RemoteCLIPProcessor.from_pretrained(tmp_path)
    model = CLIPModel.from_pretrained(tmp_path).eval()

    def difference(images: list[Image.Image], captions: list[str]) -> tuple[float, float]:
        """Max-abs (pixel values, logits) difference of the plain processor to the exact one."""
        inputs = [processor(text=captions, images=images, return_tensors="pt", padding=True)
                  for processor in (plain, exact)]
        with torch.inference_mode():
            logits = [model(**batch).logits_per_image for batch in inputs]
        return (float((inputs[0].pixel_values - inputs[1].pixel_values).abs().max()),
                float((logits[0] - logits[1]).abs().max()))

    rgb_pixels, rgb_logits = difference(images, CAPTIONS)
    rgba_pixels, rgba_logits = difference([Image.open(TRANSPARENT_SAMPLE)], CAPTIONS)
    plain_ids = plain.tokenizer(UNCLEAN_CAPTIONS).input_ids
    assert plain_ids != exact.tokenizer(UNCLEAN_CAPTIONS).input_ids  # not cleaned: other tokens
    _, entity_logits = difference(images[:1], UNCLEAN_CAPTIONS[:2])
    _, mojibake_logits = difference(images[:1], UNCLEAN_CAPTIONS[2:])
    with capsys.disabled():
        print(f"\nplain CLIPProcessor vs open_clip (ViT-B/32): RGB images: pixels {rgb_pixels:.3f}, logits "
              f"{rgb_logits:.1e}; transparent sample: pixels {rgba_pixels:.2f}, logits {rgba_logits:.3f}; captions "
              f"with HTML entities: logits {entity_logits:.2f}; with mojibake: logits {mojibake_logits:.2f}")
    assert rgb_pixels <= 0.03 and rgb_logits <= 1e-3
    assert rgba_pixels > 1.0 and rgba_logits > 10 * rgb_logits
    assert min(entity_logits, mojibake_logits) > 10 * rgb_logits
