"""Convert an open_clip (OpenAI-layout) CLIP state dict, such as the official RemoteCLIP `.pt` files, to a
transformers folder (`model.safetensors`, config, processor files).

    python -m rclip_hf.convert --checkpoint RemoteCLIP-ViT-B-32.pt --arch ViT-B-32 --output remoteclip-vit-b-32
    python -m rclip_hf.convert --checkpoint chendelong/RemoteCLIP/RemoteCLIP-RN50.pt --arch RN50 --output rn50
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from .configuration_remoteclip import PRESETS, RemoteCLIPConfig
from .modeling_remoteclip import RemoteCLIPModel
from .processing_remoteclip import build_processor

logger = logging.getLogger(__name__)

#: open_clip's architecture names accepted by `--arch` (a "-quickgelu" suffix is accepted and ignored).
ARCHS = tuple(PRESETS)
#: Hub file reference: "owner/repo/path/in/repo.pt".
HUB_FILE_PATTERN = re.compile(r"^(?P<repo_id>[\w.-]+/[\w.-]+)/(?P<filename>.+\.(?:pt|pth|bin))$")

# One regex per open_clip key family -> transformers key (named groups carry over). Tensors are copied as
# they are, except the fused attention projections (split) and the output projections (transposed).
_P = r"(?P<p>weight|bias)"
_BN = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"
_BLOCK_RULES = [
    (rf"ln_1\.{_P}", r"layer_norm1.\g<p>"),
    (rf"ln_2\.{_P}", r"layer_norm2.\g<p>"),
    (rf"attn\.out_proj\.{_P}", r"self_attn.out_proj.\g<p>"),
    (rf"mlp\.c_fc\.{_P}", r"mlp.fc1.\g<p>"),
    (rf"mlp\.c_proj\.{_P}", r"mlp.fc2.\g<p>"),
]
_TEXT_RULES = [
    (r"token_embedding\.weight", "text_model.embeddings.token_embedding.weight"),
    (r"positional_embedding", "text_model.embeddings.position_embedding.weight"),
    (rf"ln_final\.{_P}", r"text_model.final_layer_norm.\g<p>"),
    (r"text_projection", "text_projection.weight"),
    (r"logit_scale", "logit_scale"),
] + [(rf"transformer\.resblocks\.(?P<layer>\d+)\.{src}", rf"text_model.encoder.layers.\g<layer>.{dst}")
     for src, dst in _BLOCK_RULES]
_VIT_RULES = [
    (r"visual\.class_embedding", "vision_model.embeddings.class_embedding"),
    (r"visual\.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    (r"visual\.conv1\.weight", "vision_model.embeddings.patch_embedding.weight"),
    (rf"visual\.ln_pre\.{_P}", r"vision_model.pre_layrnorm.\g<p>"),
    (rf"visual\.ln_post\.{_P}", r"vision_model.post_layernorm.\g<p>"),
    (r"visual\.proj", "visual_projection.weight"),
] + [(rf"visual\.transformer\.resblocks\.(?P<layer>\d+)\.{src}", rf"vision_model.encoder.layers.\g<layer>.{dst}")
     for src, dst in _BLOCK_RULES]
# open_clip's `layer1`..`layer4` become `stages.0`..`stages.3` (the `stage` group is shifted by one).
_BLOCK = r"visual\.layer(?P<stage>\d)\.(?P<block>\d+)"
_STAGE = r"vision_model.stages.{stage}.\g<block>"
_RESNET_RULES = [
    (r"visual\.(?P<n>conv[123])\.weight", r"vision_model.stem.\g<n>.weight"),
    (rf"visual\.(?P<n>bn[123])\.{_BN}", r"vision_model.stem.\g<n>.\g<p>"),
    (rf"{_BLOCK}\.(?P<n>conv[123])\.weight", rf"{_STAGE}.\g<n>.weight"),
    (rf"{_BLOCK}\.(?P<n>bn[123])\.{_BN}", rf"{_STAGE}.\g<n>.\g<p>"),
    (rf"{_BLOCK}\.downsample\.0\.weight", rf"{_STAGE}.downsample.conv.weight"),
    (rf"{_BLOCK}\.downsample\.1\.{_BN}", rf"{_STAGE}.downsample.bn.\g<p>"),
    (r"visual\.attnpool\.positional_embedding", "vision_model.attention_pool.position_embedding"),
    (rf"visual\.attnpool\.(?P<n>[qkv])_proj\.{_P}", r"vision_model.attention_pool.\g<n>_proj.\g<p>"),
    (rf"visual\.attnpool\.c_proj\.{_P}", r"vision_model.attention_pool.out_proj.\g<p>"),
]
# Keys that some open_clip versions save although they are not weights (the causal mask buffer).
_IGNORED_KEYS = re.compile(r"^(attn_mask|visual\.attn_mask)$")
# Fused attention input projections: (3 * width, width) -> q, k, v.
_IN_PROJ = re.compile(r"^(?P<prefix>(?:visual\.)?transformer\.resblocks\.\d+)\.attn\.in_proj_(?P<kind>weight|bias)$")


class ConversionError(ValueError):
    """The checkpoint cannot be converted to the requested architecture; the message says why."""


def load_open_clip_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """Read an open_clip checkpoint safely (`weights_only=True`): a state dict, `{"state_dict": ...}`, `module.` prefixes."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ConversionError(f"checkpoint file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConversionError(
            f"{path} is not a plain tensor state dict: unpickling it would need arbitrary code, which is refused "
            f"({str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise ConversionError(f"{path} is truncated or not a PyTorch checkpoint ({error})") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ConversionError(f"{path} does not hold a state dict of tensors (found {type(loaded).__name__})")
    return {key.removeprefix("module."): tensor for key, tensor in loaded.items()}


def _rename(key: str, rules: Sequence[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            if "{stage}" in replacement:
                replacement = replacement.replace("{stage}", str(int(match["stage"]) - 1))
            return match.expand(replacement)
    return None


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], config: RemoteCLIPConfig) -> tuple[dict, list[str]]:
    """Map open_clip keys to `RemoteCLIPModel` keys; returns the new state dict and the keys no rule knows."""
    rules = _TEXT_RULES + (_RESNET_RULES if config.uses_resnet_tower else _VIT_RULES)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        if _IGNORED_KEYS.match(key):
            continue
        fused = _IN_PROJ.match(key)
        if fused:
            tower = "vision_model" if fused["prefix"].startswith("visual.") else "text_model"
            layer = fused["prefix"].rsplit(".", 1)[1]
            for name, part in zip("qkv", tensor.chunk(3, dim=0)):
                converted[f"{tower}.encoder.layers.{layer}.self_attn.{name}_proj.{fused['kind']}"] = part.clone()
            continue
        new_key = _rename(key, rules)
        if new_key is None:
            unknown.append(key)
        elif new_key in ("text_projection.weight", "visual_projection.weight"):
            converted[new_key] = tensor.t().contiguous()  # open_clip: x @ proj; nn.Linear: x @ weight.T
        else:
            converted[new_key] = tensor
    return converted, unknown


def build_model(state_dict: Mapping[str, torch.Tensor], arch: str) -> RemoteCLIPModel:
    """A `RemoteCLIPModel` of preset `arch` holding the open_clip weights; raises `ConversionError` on any mismatch."""
    arch = normalize_arch(arch)
    config = RemoteCLIPConfig.from_preset(arch)
    converted, unknown = convert_state_dict(state_dict, config)
    model = RemoteCLIPModel(config).eval()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    mis_shaped = [f"{key}: checkpoint {tuple(converted[key].shape)} vs {arch} {tuple(expected[key].shape)}"
                  for key in sorted(set(expected) & set(converted)) if converted[key].shape != expected[key].shape]
    unexpected = sorted(set(unknown) | (set(converted) - set(expected)))
    if missing or unexpected or mis_shaped:
        raise ConversionError(_mismatch_message(arch, missing, unexpected, mis_shaped))
    model.load_state_dict(converted, strict=True)
    with torch.no_grad():
        model.logit_scale.copy_(converted["logit_scale"])
    model.config.logit_scale_init_value = float(converted["logit_scale"])
    return model


def _mismatch_message(arch: str, missing: list[str], unexpected: list[str], mis_shaped: list[str]) -> str:
    def listing(title: str, keys: list[str]) -> str:
        shown = "\n    ".join(keys[:12]) + (f"\n    ... and {len(keys) - 12} more" if len(keys) > 12 else "")
        return f"\n  {title} ({len(keys)}):\n    {shown}" if keys else ""

    return (f"checkpoint does not match architecture {arch!r}:"
            + listing("missing keys", missing) + listing("unexpected keys", unexpected)
            + listing("mis-shaped tensors", mis_shaped)
            + f"\n  (is --arch right? choices: {', '.join(ARCHS)})")


def normalize_arch(arch: str) -> str:
    """`ViT-B-32-quickgelu` -> `ViT-B-32`; raises for unknown names."""
    name = arch.removesuffix("-quickgelu")
    if name not in PRESETS:
        raise ConversionError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS)}")
    return name


def resolve_checkpoint(checkpoint: str, download: Callable[..., str] | None = None) -> Path:
    """A local path as is; `owner/repo/file.pt` (when no such local file exists) through `hf_hub_download`."""
    path = Path(checkpoint)
    if path.exists():
        return path
    match = HUB_FILE_PATTERN.match(checkpoint)
    if match is None:
        raise ConversionError(f"checkpoint {checkpoint!r} is neither a local file nor a Hub file 'owner/repo/file.pt'")
    if download is None:
        from huggingface_hub import hf_hub_download as download
    try:
        return Path(download(repo_id=match["repo_id"], filename=match["filename"]))
    except Exception as error:  # noqa: BLE001 -- huggingface_hub raises many types (offline, 404, auth): report them all alike
        raise ConversionError(f"could not fetch {checkpoint!r} from the Hub: {error}") from None


def convert_checkpoint(checkpoint: str | Path, arch: str, output: str | Path,
                       push_to_hub: str | None = None) -> RemoteCLIPModel:
    """Convert `checkpoint` (local path or Hub file reference) and save model + processor to `output`."""
    path = resolve_checkpoint(str(checkpoint))
    logger.info("converting %s as %s", path, arch)
    model = build_model(load_open_clip_state_dict(path), arch)
    processor = build_processor(image_size=model.config.image_size)
    output = Path(output)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    if push_to_hub:
        model.push_to_hub(push_to_hub)
        processor.push_to_hub(push_to_hub)
    return model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of `python -m rclip_hf.convert`."""
    parser = argparse.ArgumentParser(prog="python -m rclip_hf.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="open_clip .pt file, or Hub file 'owner/repo/file.pt'")
    parser.add_argument("--arch", required=True, help=f"architecture: {', '.join(ARCHS)}")
    parser.add_argument("--output", required=True, help="folder to write the transformers model to")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="also upload to this Hub repo")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 on success, 2 with a message on a bad checkpoint)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        convert_checkpoint(args.checkpoint, args.arch, args.output, push_to_hub=args.push_to_hub)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"saved {args.arch} RemoteCLIP to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
