"""How to use a saved model folder: which loaders apply to it, their install lines and runnable snippets, and a
one-line description of its architecture.

The model cards (`model_cards`) and the card `rclip-hf push` writes for a folder without one both take their "How to
use" section from here, so a card never shows a snippet that this folder's files cannot run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .configuration_remoteclip import RemoteCLIPConfig

#: The code repository of rclip-hf (setup.cfg's `url`): the package's install line and the cards' link to the code.
CODE_URL = "https://github.com/rclip-hf/rclip-hf"
#: Install line of the package itself (it is not on PyPI).
PACKAGE_INSTALL = f'pip install "rclip-hf @ git+{CODE_URL}"'

_CAPTIONS = 'captions = ["a satellite photo of an airport.", "a satellite photo of a forest."]'
_INPUTS = ('inputs = processor(text=captions, images=[Image.open("scene.jpg")], return_tensors="pt", padding=True, '
           "truncation=True)")
#: "How to use" snippets: kind -> (when it applies, install line, code). `{repo_id}` is the card's repo id.
USAGE_SNIPPETS: dict[str, tuple[str, str, str]] = {
    "transformers": ("transformers only (no remote code: this folder is a plain CLIP model)",
                     "pip install torch transformers pillow", f"""import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

model = CLIPModel.from_pretrained("{{repo_id}}").eval()
processor = CLIPProcessor.from_pretrained("{{repo_id}}")
{_CAPTIONS}
{_INPUTS}
with torch.inference_mode():
    probs = model(**inputs).logits_per_image.softmax(dim=-1)  # (1, len(captions))
print(dict(zip(captions, probs[0].tolist())))"""),
    "remote_code": (("transformers 5 with `trust_remote_code=True` (the modified-ResNet tower is code shipped in this "
                     "repo: `modeling_remoteclip.py` and its siblings, which import only torch and transformers>=5)"),
                    'pip install torch "transformers>=5" pillow', f"""import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor, pipeline

model = AutoModel.from_pretrained("{{repo_id}}", trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained("{{repo_id}}", trust_remote_code=True)
{_CAPTIONS}
{_INPUTS}
with torch.inference_mode():
    probs = model(**inputs).logits_per_image.softmax(dim=-1)  # (1, len(captions))
classifier = pipeline("zero-shot-image-classification", model="{{repo_id}}", trust_remote_code=True)
print(classifier("scene.jpg", candidate_labels=["airport", "forest"]))"""),
    "open_clip": ("open_clip (`open_clip_config.json` + `open_clip_model.safetensors` in this repo)",
                  "pip install torch open_clip_torch pillow", f"""import open_clip
import torch
from PIL import Image

model, _, preprocess = open_clip.create_model_and_transforms("hf-hub:{{repo_id}}")
tokenizer = open_clip.get_tokenizer("hf-hub:{{repo_id}}")
{_CAPTIONS}
with torch.inference_mode():
    image_features = model.encode_image(preprocess(Image.open("scene.jpg")).unsqueeze(0), normalize=True)
    text_features = model.encode_text(tokenizer(captions), normalize=True)
    probs = (model.logit_scale.exp() * image_features @ text_features.T).softmax(dim=-1)
print(dict(zip(captions, probs[0].tolist())))"""),
    "package": (f"the rclip-hf package ({CODE_URL}: open_clip's exact preprocessing, the CLI, evaluation)",
                PACKAGE_INSTALL, f"""import torch
from PIL import Image

from rclip_hf import RemoteCLIPModel, RemoteCLIPProcessor

model = RemoteCLIPModel.from_pretrained("{{repo_id}}").eval()
processor = RemoteCLIPProcessor.from_pretrained("{{repo_id}}")
{_CAPTIONS}
{_INPUTS}
with torch.inference_mode():
    probs = model(**inputs).logits_per_image.softmax(dim=-1)
print(dict(zip(captions, probs[0].tolist())))"""),
}
#: Measured difference of plain transformers CLIP preprocessing to open_clip's (converted ViT-B/32, see docs/models.md).
PLAIN_PREPROCESSING_NOTE = (
    "Plain `CLIPProcessor` preprocessing differs slightly from open_clip's, with which RemoteCLIP was trained: "
    "transformers' resize and centre crop round differently, and it composites transparent images on white where "
    "open_clip drops the alpha channel. Measured on real images with a converted ViT-B/32: up to 0.015 in normalised "
    "pixel values and 4e-4 in logits on RGB images; 3.8 and 0.93 on a real image with transparent pixels. Its "
    "tokenizer neither unescapes HTML entities nor repairs mojibake as open_clip's does: 0.32 and 0.51 in logits on "
    "such captions. `RemoteCLIPProcessor` (rclip-hf) and open_clip give identical pixels and token ids.")


def usage_kinds(model_dir: str | Path | None, arch: str | None) -> list[str]:
    """The snippets that apply to a folder: its config's `auto_map` means remote code (ResNet), else plain CLIP;
    open_clip when the folder holds `open_clip_config.json`; the package always. Without a folder, by `arch`."""
    if model_dir is not None and not (Path(model_dir) / "config.json").is_file() and (
            Path(model_dir) / "open_clip_config.json").is_file():
        return ["open_clip"]
    if model_dir is not None and (Path(model_dir) / "config.json").is_file():
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        kinds = ["remote_code" if "auto_map" in config else "transformers"]
        kinds += ["open_clip"] if (Path(model_dir) / "open_clip_config.json").is_file() else []
    else:
        kinds = ["remote_code" if (arch or "").startswith("RN") else "transformers"]
    return kinds + ["package"]


def usage_section(repo_id: str, kinds: Sequence[str]) -> str:
    """A card's "How to use": which ways apply to this folder, the install line and a runnable snippet each."""
    lines = ["This folder loads " + "; ".join(f"with {USAGE_SNIPPETS[kind][0]}" for kind in kinds) + ". "
             + ("A plain `CLIPModel.from_pretrained` of it fails: transformers has no ResNet CLIP tower."
                if "remote_code" in kinds else "")]
    for kind in kinds:
        title, install, code = USAGE_SNIPPETS[kind]
        lines.append(f"**{title[0].upper()}{title[1:]}**\n\n```bash\n{install}\n```\n\n"
                     f"```python\n{code.format(repo_id=repo_id)}\n```")
    if "transformers" in kinds:
        lines.append(PLAIN_PREPROCESSING_NOTE)
    return "\n\n".join(lines)


def arch_of_model_dir(model_dir: str | Path) -> str | None:
    """The rclip_hf preset whose architecture a saved RemoteCLIP folder has, or None (e.g. a small custom model)."""
    return RemoteCLIPConfig.from_pretrained(model_dir).matching_preset()


def architecture_summary(model_dir: str | Path) -> str:
    """One line describing a saved RemoteCLIP folder's towers (sizes, layers, input size, embedding size)."""
    config = RemoteCLIPConfig.from_pretrained(model_dir)
    vision, text = config.vision_config, config.text_config
    if config.uses_resnet_tower:
        tower = f"modified ResNet (stages {list(vision.layers)}, width {vision.width})"
    else:
        tower = f"ViT (width {vision.hidden_size}, {vision.num_hidden_layers} layers, patch {vision.patch_size})"
    return (f"image tower: {tower}, {vision.image_size} px; text tower: width {text.hidden_size}, "
            f"{text.num_hidden_layers} layers; embedding size {config.projection_dim}")
