"""Convert an open_clip (OpenAI-layout) CLIP state dict, such as the official RemoteCLIP `.pt` files, to a
Hub-native transformers folder (`model.safetensors`, config, processor files; ResNet folders with remote code).

    python -m rclip_hf.convert --checkpoint RemoteCLIP-ViT-B-32.pt --arch ViT-B-32 --output remoteclip-vit-b-32
    python -m rclip_hf.convert --checkpoint chendelong/RemoteCLIP/RemoteCLIP-RN50.pt --arch RN50 --output rn50
    python -m rclip_hf.convert --checkpoint timm/resnet50_clip.openai --arch RN50 --output openai-rn50

`--checkpoint` reads `.pt`/`.pth`/`.bin` state dicts (`weights_only=True`), `.safetensors`, and open_clip's Hub
folders (`open_clip_model.safetensors`, else `open_clip_pytorch_model.bin`), local or as a Hub repo id. Before
saving, the converted model is compared with open_clip on the same weights (when open_clip is installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import pickle
import re
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .arguments import ArgumentParser
from .configuration_remoteclip import PRESETS, RemoteCLIPConfig
from .errors import UserError, entry_point
from .hub import HubOptions, add_hub_arguments, check_write_access, hub_options, publish
from .modeling_remoteclip import RemoteCLIPModel
from .processing_remoteclip import RemoteCLIPProcessor, build_processor
from .staging import check_output_free, staged_folder, state_dict_bytes

logger = logging.getLogger(__name__)

#: open_clip's architecture names accepted by `--arch` (a "-quickgelu" suffix is accepted and ignored).
ARCHS = tuple(PRESETS)
#: Hub file reference: "owner/repo/path/in/repo.pt" (or .pth, .bin, .safetensors).
HUB_FILE_PATTERN = re.compile(r"^(?P<repo_id>[\w.-]+/[\w.-]+)/(?P<filename>.+\.(?:pt|pth|bin|safetensors))$")
#: Hub repo id: "owner/repo" (an open_clip Hub folder).
HUB_REPO_PATTERN = re.compile(r"^[\w.-]+/[\w.-]+$")
#: open_clip's weight files in a Hub folder, in the order open_clip prefers them.
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: Largest max-abs difference to open_clip (embeddings and logits, float32) that the verification accepts.
VERIFY_TOLERANCE = 1e-4
VERIFY_CAPTION = "a satellite photo of an airport with two runways."

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


class ConversionError(UserError, ValueError):
    """The checkpoint cannot be converted to the requested architecture; the message says why (and may list keys)."""

    listing = True


def load_open_clip_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """Read an open_clip checkpoint safely: a `.safetensors` file, a pickled state dict (`weights_only=True`;
    `{"state_dict": ...}` wrappers and `module.` prefixes accepted) or a folder holding open_clip's Hub files."""
    path = Path(checkpoint)
    if path.is_dir():
        found = [path / name for name in OPEN_CLIP_WEIGHT_FILES if (path / name).is_file()]
        if not found:
            raise ConversionError(f"{path} is a folder without open_clip weights ({' or '.join(OPEN_CLIP_WEIGHT_FILES)})")
        path = found[0]
    if not path.is_file():
        raise ConversionError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            loaded = load_file(path)
        except (SafetensorError, OSError) as error:
            raise ConversionError(f"{path} is truncated or not a safetensors file ({error})") from None
    else:
        _refuse_torchscript(path)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ConversionError(
                f"{path} is not a plain tensor state dict: unpickling it would need arbitrary code, which is refused "
                f"({str(error).splitlines()[0]})"
            ) from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, ValueError, TypeError,
                IndexError, AttributeError) as error:  # what a damaged or non-pickle file makes the unpickler raise
            raise ConversionError(f"{path} is truncated or not a PyTorch checkpoint "
                                  f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
                                  ) from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ConversionError(f"{path} does not hold a state dict of tensors (found {type(loaded).__name__})")
    return {key.removeprefix("module."): tensor for key, tensor in loaded.items()}


def _refuse_torchscript(path: Path) -> None:
    """OpenAI's own `.pt` files are TorchScript archives (code + weights): refused, never run."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.split("/", 2)[1:2] in (["code"], ["constants.pkl"]) for name in names):
        raise ConversionError(
            f"{path} is a TorchScript archive (OpenAI's original CLIP format), which holds code and is not read; "
            "use open_clip's safetensors of the same weights instead, e.g. --checkpoint timm/resnet50_clip.openai "
            "(open_clip_model.safetensors) for the OpenAI RN50"
        )


def _rename(key: str, rules: Sequence[tuple[str, str]], stage_shift: int = -1) -> str | None:
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            if "{stage}" in replacement:
                replacement = replacement.replace("{stage}", str(int(match["stage"]) + stage_shift))
            return match.expand(replacement)
    return None


_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^()]*)\)")


def _inverse_rule(pattern: str, replacement: str) -> tuple[str, str]:
    """(transformers-key regex, open_clip-key template) of one open_clip -> transformers rule."""
    bodies = {match["name"]: match["body"] for match in _GROUP.finditer(pattern)}
    regex = ""
    for part in re.split(r"(\\g<\w+>|\{stage\})", replacement):
        name = "stage" if part == "{stage}" else part[3:-1] if part.startswith("\\g<") else None
        regex += f"(?P<{name}>{bodies[name]})" if name else re.escape(part)
    template = _GROUP.sub(lambda match: "{stage}" if match["name"] == "stage" else rf"\g<{match['name']}>", pattern)
    return regex, template.replace("\\.", ".")


def _inverse_rules(rules: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [_inverse_rule(pattern, replacement) for pattern, replacement in rules]


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


def to_open_clip_state_dict(model: RemoteCLIPModel) -> dict[str, torch.Tensor]:
    """The open_clip state dict of a `RemoteCLIPModel` (the inverse of [`convert_state_dict`])."""
    config = model.config
    rules = _inverse_rules(_TEXT_RULES + (_RESNET_RULES if config.uses_resnet_tower else _VIT_RULES))
    state_dict = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}
    converted: dict[str, torch.Tensor] = {}
    fused = re.compile(r"^(?P<tower>text|vision)_model\.encoder\.layers\.(?P<layer>\d+)\.self_attn\."
                       r"q_proj\.(?P<kind>weight|bias)$")
    for key, tensor in state_dict.items():
        match = fused.match(key)
        if match:
            prefix = ("visual." if match["tower"] == "vision" else "") + f"transformer.resblocks.{match['layer']}"
            parts = [state_dict[key.replace(".q_proj.", f".{name}_proj.")] for name in "qkv"]
            converted[f"{prefix}.attn.in_proj_{match['kind']}"] = torch.cat(parts, dim=0)
            continue
        if re.search(r"self_attn\.[kv]_proj\.", key):
            continue  # fused with q_proj above
        new_key = _rename(key, rules, stage_shift=1)
        if new_key is None:
            raise ConversionError(f"no open_clip name for weight {key!r} of {type(model).__name__}")
        transpose = key in ("text_projection.weight", "visual_projection.weight")
        converted[new_key] = tensor.t().contiguous() if transpose else tensor
    return converted


def open_clip_model_config(config: RemoteCLIPConfig) -> dict[str, Any]:
    """open_clip's `model_cfg` (embed_dim, quick_gelu, vision_cfg, text_cfg) of a RemoteCLIP architecture."""
    vision, text = config.vision_config, config.text_config
    activations = {text.hidden_act} | ({vision.hidden_act} if not config.uses_resnet_tower else set())
    norm_eps = {text.layer_norm_eps} | ({vision.layer_norm_eps} if not config.uses_resnet_tower
                                         else {vision.batch_norm_eps})
    if len(activations) != 1 or not activations <= {"quick_gelu", "gelu"} or norm_eps != {1e-5}:
        raise ConversionError(f"open_clip has no architecture with activations {sorted(activations)} and "
                              f"normalisation eps {sorted(norm_eps)} (it needs one of quick_gelu/gelu and 1e-5)")
    if config.uses_resnet_tower:
        vision_cfg = {"image_size": vision.image_size, "layers": list(vision.layers), "width": vision.width,
                      "head_width": vision.hidden_size // vision.num_attention_heads, "patch_size": None}
    else:
        vision_cfg = {"image_size": vision.image_size, "layers": vision.num_hidden_layers, "width": vision.hidden_size,
                      "head_width": vision.hidden_size // vision.num_attention_heads, "patch_size": vision.patch_size,
                      "mlp_ratio": vision.intermediate_size / vision.hidden_size}
    text_cfg = {"context_length": text.max_position_embeddings, "vocab_size": text.vocab_size,
                "width": text.hidden_size, "heads": text.num_attention_heads, "layers": text.num_hidden_layers,
                "mlp_ratio": text.intermediate_size / text.hidden_size}
    return {"embed_dim": config.projection_dim, "quick_gelu": activations == {"quick_gelu"},
            "vision_cfg": vision_cfg, "text_cfg": text_cfg}


@dataclass(frozen=True)
class Verification:
    """Largest absolute differences to open_clip on one fixed image and caption (float32)."""

    image_embeds: float
    text_embeds: float
    logits: float

    @property
    def max_abs(self) -> float:
        """The largest of the three differences."""
        return max(self.image_embeds, self.text_embeds, self.logits)


def verify_against_open_clip(model: RemoteCLIPModel, state_dict: Mapping[str, torch.Tensor],
                             processor: RemoteCLIPProcessor) -> Verification:
    """Load `state_dict` into open_clip (same architecture) and compare embeddings and logits with `model` on a
    fixed image and caption; raises `ConversionError` beyond `VERIFY_TOLERANCE`."""
    import open_clip
    from PIL import Image

    reference = open_clip.model.CLIP(**open_clip_model_config(model.config)).eval()
    reference.load_state_dict({key: value for key, value in state_dict.items() if not _IGNORED_KEYS.match(key)},
                              strict=True)
    size = model.config.image_size
    image = Image.merge("RGB", [Image.linear_gradient("L").resize((size + 37, size)),
                                Image.radial_gradient("L").resize((size + 37, size)),
                                Image.linear_gradient("L").rotate(90).resize((size + 37, size))])
    inputs = processor(text=[VERIFY_CAPTION], images=[image], return_tensors="pt", padding=True)
    model = model.float().eval()
    with torch.inference_mode():
        output = model(**inputs)
        image_embeds = reference.encode_image(inputs["pixel_values"])
        text_embeds = reference.encode_text(open_clip.tokenize([VERIFY_CAPTION]))
        logits = reference.logit_scale.exp() * (torch.nn.functional.normalize(image_embeds, dim=-1)
                                                @ torch.nn.functional.normalize(text_embeds, dim=-1).T)
    verification = Verification(
        image_embeds=(output.image_embeds - torch.nn.functional.normalize(image_embeds, dim=-1)).abs().max().item(),
        text_embeds=(output.text_embeds - torch.nn.functional.normalize(text_embeds, dim=-1)).abs().max().item(),
        logits=(output.logits_per_image - logits).abs().max().item(),
    )
    if not verification.max_abs <= VERIFY_TOLERANCE:
        raise ConversionError(f"the converted model differs from open_clip on the same weights: max-abs "
                              f"{verification.max_abs:.3g} > {VERIFY_TOLERANCE:g} ({verification}); nothing saved")
    return verification


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
    """A local path as is; `owner/repo/file.pt` (when no such local file exists) through `hf_hub_download`, and
    `owner/repo` as open_clip's Hub folder (`open_clip_model.safetensors`, else `open_clip_pytorch_model.bin`)."""
    path = Path(checkpoint)
    if path.exists():
        return path
    match = HUB_FILE_PATTERN.match(checkpoint)
    if match is None and not HUB_REPO_PATTERN.match(checkpoint):
        raise ConversionError(f"checkpoint {checkpoint!r} is neither a local file or folder, a Hub file "
                              "'owner/repo/file.pt' nor an open_clip Hub repo 'owner/repo'")
    if download is None:
        from huggingface_hub import hf_hub_download as download
    candidates = ([(match["repo_id"], match["filename"])] if match
                  else [(checkpoint, name) for name in OPEN_CLIP_WEIGHT_FILES])
    errors = []
    for repo_id, filename in candidates:
        try:
            return Path(download(repo_id=repo_id, filename=filename))
        except Exception as error:  # noqa: BLE001 -- huggingface_hub raises many types (offline, 404, auth): report them all alike
            errors.append(f"{filename}: {error}")
    raise ConversionError(f"could not fetch {checkpoint!r} from the Hub: {'; '.join(errors)}")


def convert_checkpoint(checkpoint: str | Path, arch: str, output: str | Path, push_to_hub: str | None = None,
                       verify: bool = True, overwrite: bool = False,
                       hub: HubOptions | None = None) -> tuple[RemoteCLIPModel, Verification | None]:
    """Convert `checkpoint` (local path or Hub reference), compare it with open_clip (when `verify` and open_clip is
    installed), save model + processor to `output` (written whole; an existing non-empty `output` is replaced only
    with `overwrite`) and, with `push_to_hub`, publish it as `rclip-hf push` does (the token's write access checked
    before converting; `hub`: its token, branch, commit message, pull request)."""
    hub = hub or HubOptions()
    check_output_free(Path(output), "--output", overwrite)
    api = check_write_access(push_to_hub, "--push-to-hub", token=hub.token) if push_to_hub else None
    path = resolve_checkpoint(str(checkpoint))
    logger.info("converting %s as %s", path, arch)
    state_dict = load_open_clip_state_dict(path)
    model = build_model(state_dict, arch)
    processor = build_processor(image_size=model.config.image_size)
    verification = None
    if verify and importlib.util.find_spec("open_clip") is not None:
        verification = verify_against_open_clip(model, state_dict, processor)
    elif verify:
        logger.warning("open_clip is not installed: the conversion is saved without comparing it to open_clip")
    output = Path(output)
    with staged_folder(output, state_dict_bytes(model.state_dict())) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    if push_to_hub:
        publish(output, push_to_hub, hub, api=api, flag="--push-to-hub")
    return model, verification


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of `rclip-hf convert` (also `python -m rclip_hf.convert`)."""
    parser = ArgumentParser(prog="rclip-hf convert", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="open_clip .pt/.bin/.safetensors file or folder, Hub file 'owner/repo/file.pt', or "
                             "open_clip Hub repo 'owner/repo'")
    parser.add_argument("--arch", required=True, help=f"architecture: {', '.join(ARCHS)}")
    parser.add_argument("--output", required=True, help="folder to write the transformers model to")
    parser.add_argument("--push-to-hub", "--push_to_hub", dest="push_to_hub", metavar="REPO_ID", default=None,
                        help="also upload to this Hub repo (the `rclip-hf push` allow-list; a card is written)")
    add_hub_arguments(parser)
    parser.add_argument("--no-verify", "--no_verify", dest="verify", action="store_false",
                        help="skip the comparison with open_clip before saving")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing non-empty --output folder (refused otherwise)")
    return parser.parse_args(argv)


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 on success; a bad checkpoint is one `error:` line and 2)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    _, verification = convert_checkpoint(args.checkpoint, args.arch, args.output, push_to_hub=args.push_to_hub,
                                         verify=args.verify, overwrite=args.overwrite, hub=hub_options(args))
    checked = ("not compared with open_clip" if verification is None else
               f"equal to open_clip within {verification.max_abs:.2g} max-abs (image embeddings "
               f"{verification.image_embeds:.2g}, text embeddings {verification.text_embeds:.2g}, logits "
               f"{verification.logits:.2g})")
    print(f"saved {args.arch} RemoteCLIP to {args.output}: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
