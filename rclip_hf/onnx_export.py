"""Export a RemoteCLIP/CLIP folder to ONNX: `rclip-hf export MODEL_DIR --to onnx --output OUT [--fp16]`.

OUT gets two graphs, `image_encoder.onnx` (pixel_values -> image_embeds) and `text_encoder.onnx` (input_ids,
attention_mask -> text_embeds), both with a dynamic batch (and a dynamic sequence length for text) and L2-normalised
outputs, so `image_embeds @ text_embeds.T * logit_scale` are the model's logits. Beside them: the processor files,
`onnx_config.json` (opset, dtype, image size, mean/std, logit scale) and a `README.md` whose snippet runs with
onnxruntime, numpy, Pillow and tokenizers only.

Both towers of every folder (ViT and ResNet) go through `torch.onnx.export(dynamo=True)`: optimum's CLIP exporter
(optimum 1.27's `exporters` extra, optimum-onnx 0.1.0) requires transformers < 4.58, and rclip-hf pins transformers 5.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._compat import projected_features
from .convert import ConversionError
from .processing_remoteclip import RemoteCLIPProcessor

logger = logging.getLogger(__name__)

#: ONNX opset of the exported graphs: the torch.onnx dynamo exporter's own (onnxruntime >= 1.14, onnxruntime-web).
OPSET = 18
IMAGE_FILE, TEXT_FILE, CONFIG_FILE = "image_encoder.onnx", "text_encoder.onnx", "onnx_config.json"
#: Processor files copied from the model folder when present (tokenizer.json is what the snippet tokenizes with).
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.json", "merges.txt")
#: Protobuf's 2 GiB limit: larger graphs keep their weights in `<file>.data` beside them.
SINGLE_FILE_LIMIT = 1.8 * 2**30


class ImageEncoder(nn.Module):
    """pixel_values (batch, 3, size, size) -> image_embeds (batch, projection_dim), L2-normalised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tensor:
        return F.normalize(projected_features(self.model.get_image_features(pixel_values=pixel_values)), dim=-1)


class TextEncoder(nn.Module):
    """input_ids, attention_mask (batch, length <= 77) -> text_embeds (batch, projection_dim), L2-normalised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        features = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(projected_features(features), dim=-1)


def _export(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str], output_name: str,
            dynamic_shapes: tuple[dict[int, Any], ...], path: Path) -> list[Path]:
    """Export `module` on `inputs` to `path` (dynamo, `OPSET`); returns the files written."""
    size = sum(parameter.numel() * parameter.element_size() for parameter in module.parameters())
    external = size > SINGLE_FILE_LIMIT
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        program = torch.onnx.export(module, inputs, dynamo=True, opset_version=OPSET, input_names=names,
                                    output_names=[output_name], dynamic_shapes=dynamic_shapes, optimize=True,
                                    verbose=False)
    program.save(str(path), external_data=external)
    return [path] + ([Path(f"{path}.data")] if external else [])


def export_onnx(model_dir: str | Path, output: str | Path, fp16: bool = False) -> list[Path]:
    """Write the image and text encoders of the model in `model_dir`, its processor files, `onnx_config.json` and a
    README with an onnxruntime snippet to `output`; returns the files written."""
    from .loading import NotACLIPModelError, load_model

    model_dir, output = Path(model_dir), Path(output)
    if output.resolve() == model_dir.resolve():
        raise ConversionError(f"--output {output} is the model folder; give a new folder (the export writes its own "
                              "README.md)")
    try:
        model, processor = load_model(model_dir, dtype=torch.float32, device="cpu")
    except (NotACLIPModelError, FileNotFoundError) as error:
        raise ConversionError(str(error)) from None
    dtype = torch.float16 if fp16 else torch.float32
    model = model.to(dtype).eval()
    image_size = model.config.vision_config.image_size
    output.mkdir(parents=True, exist_ok=True)

    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=2, max=77)
    pixels = torch.zeros(2, 3, image_size, image_size, dtype=dtype)
    text = processor.tokenizer(["a satellite photo.", "an airport with many planes."], padding=True,
                               return_tensors="pt")
    files = _export(ImageEncoder(model).eval(), (pixels,), ["pixel_values"], "image_embeds", ({0: batch},),
                    output / IMAGE_FILE)
    files += _export(TextEncoder(model).eval(), (text.input_ids, text.attention_mask), ["input_ids", "attention_mask"],
                     "text_embeds", ({0: batch, 1: length}, {0: batch, 1: length}), output / TEXT_FILE)
    files += _copy_processor_files(model_dir, output, processor)
    image_processor = processor.image_processor
    config = {"opset": OPSET, "dtype": "float16" if fp16 else "float32", "image_size": image_size,
              "image_mean": list(image_processor.image_mean), "image_std": list(image_processor.image_std),
              "context_length": processor.tokenizer.model_max_length,
              "logit_scale": model.logit_scale.exp().item(), "projection_dim": model.config.projection_dim,
              "source": model_dir.name}
    (output / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (output / "README.md").write_text(onnx_card(config), encoding="utf-8")
    return files + [output / CONFIG_FILE, output / "README.md"]


def _copy_processor_files(model_dir: Path, output: Path, processor: RemoteCLIPProcessor) -> list[Path]:
    """The folder's processor files in `output` (saved from `processor` when the folder has no tokenizer.json)."""
    if not (model_dir / "tokenizer.json").is_file():
        processor.save_pretrained(output)
        return sorted(path for path in output.iterdir() if path.name in PROCESSOR_FILES)
    copied = []
    for name in PROCESSOR_FILES:
        if (model_dir / name).is_file():
            copied.append(Path(shutil.copyfile(model_dir / name, output / name)))
    return copied


CARD_SNIPPET = '''\
import json

import numpy as np
import onnxruntime as ort
from PIL import Image
from tokenizers import Tokenizer

config = json.load(open("onnx_config.json"))
size, dtype = config["image_size"], np.dtype(config["dtype"])


def preprocess(image: Image.Image) -> np.ndarray:
    """Bicubic resize of the shorter side to `size`, centre crop, RGB, scale to [0, 1], normalise."""
    width, height = image.size
    scale = size / min(width, height)
    new = (size, int(height * scale)) if width <= height else (int(width * scale), size)
    image = image.resize(new, Image.BICUBIC) if new != image.size else image
    left, top = round((image.width - size) / 2), round((image.height - size) / 2)
    pixels = np.asarray(image.crop((left, top, left + size, top + size)).convert("RGB"), dtype=np.float32) / 255
    pixels = (pixels - np.array(config["image_mean"], np.float32)) / np.array(config["image_std"], np.float32)
    return pixels.transpose(2, 0, 1)


tokenizer = Tokenizer.from_file("tokenizer.json")
tokenizer.enable_truncation(config["context_length"])
tokenizer.enable_padding(pad_id=tokenizer.token_to_id("<|endoftext|>"))
images = ort.InferenceSession("image_encoder.onnx", providers=["CPUExecutionProvider"])
texts = ort.InferenceSession("text_encoder.onnx", providers=["CPUExecutionProvider"])

pixel_values = np.stack([preprocess(Image.open(path)) for path in IMAGES]).astype(dtype)
image_embeds = images.run(None, {"pixel_values": pixel_values})[0]
encodings = tokenizer.encode_batch(CAPTIONS)
text_embeds = texts.run(None, {"input_ids": np.array([e.ids for e in encodings], np.int64),
                               "attention_mask": np.array([e.attention_mask for e in encodings], np.int64)})[0]
logits = config["logit_scale"] * image_embeds.astype(np.float32) @ text_embeds.astype(np.float32).T
print(logits.argmax(axis=1))
'''


def onnx_card(config: dict[str, Any]) -> str:
    """README.md of an ONNX export folder: its files, inputs and outputs, and the onnxruntime snippet."""
    snippet = CARD_SNIPPET.replace("IMAGES", '["scene.jpg"]', 1).replace(
        "CAPTIONS", '["a satellite photo of an airport.", "a satellite photo of a forest."]', 1)
    return f"""---
library_name: onnx
tags: [remote-sensing, clip, remoteclip, onnx]
---
# {config["source"]} (ONNX)

RemoteCLIP exported with `rclip-hf export --to onnx` (`torch.onnx.export`, dynamo, opset {config["opset"]},
{config["dtype"]} weights).

| file | inputs | output |
|---|---|---|
| `{IMAGE_FILE}` | `pixel_values` (batch, 3, {config["image_size"]}, {config["image_size"]}) {config["dtype"]} | \
`image_embeds` (batch, {config["projection_dim"]}), L2-normalised |
| `{TEXT_FILE}` | `input_ids`, `attention_mask` (batch, length <= {config["context_length"]}) int64 | \
`text_embeds` (batch, {config["projection_dim"]}), L2-normalised |

The batch (and the text length) is dynamic. `{CONFIG_FILE}` holds the preprocessing (image size, mean, std), the
context length and the logit scale; `tokenizer.json` is the CLIP tokenizer. Logits are
`logit_scale * image_embeds @ text_embeds.T`.

Why not optimum: its CLIP exporter (optimum 1.27 `exporters`, optimum-onnx 0.1.0) requires transformers < 4.58,
and rclip-hf runs on transformers 5, so both towers are exported by `torch.onnx.export` directly.

## Use with onnxruntime (no torch)

`pip install onnxruntime numpy pillow tokenizers`, then in this folder:

```python
{snippet}```
"""


__all__ = ["OPSET", "ImageEncoder", "TextEncoder", "export_onnx", "onnx_card"]
