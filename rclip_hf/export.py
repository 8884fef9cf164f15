"""Export a RemoteCLIP/CLIP folder back to open_clip: `rclip-hf export MODEL_DIR --to open_clip --output OUT`
(or to ONNX with `--to onnx`, see `rclip_hf.onnx_export`).

OUT gets `open_clip_config.json` (`model_cfg` with `quick_gelu`, and `preprocess_cfg`) and
`open_clip_model.safetensors`, which `open_clip.create_model_and_transforms("local-dir:OUT")` (or `hf-hub:` once
uploaded) loads. OUT may be MODEL_DIR itself: one Hub repo then serves transformers and open_clip users.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from .arguments import ArgumentParser
from .convert import ConversionError, open_clip_model_config, to_open_clip_state_dict
from .errors import entry_point
from .hub import add_hub_arguments, check_write_access, hub_options, publish
from .loading import load_weights
from .processing_remoteclip import RemoteCLIPImageProcessor
from .staging import staged_folder, state_dict_bytes

logger = logging.getLogger(__name__)

OPEN_CLIP_CONFIG_FILE = "open_clip_config.json"
OPEN_CLIP_WEIGHTS_FILE = "open_clip_model.safetensors"
#: Export targets accepted by `--to`.
TARGETS = ("open_clip", "onnx")


def open_clip_preprocess_config(image_processor: RemoteCLIPImageProcessor, image_size: int) -> dict[str, Any]:
    """open_clip's `preprocess_cfg` of an image processor: size, mean/std, bicubic shortest-side resize."""
    return {"size": image_size, "mode": "RGB", "mean": list(image_processor.image_mean),
            "std": list(image_processor.image_std), "interpolation": "bicubic", "resize_mode": "shortest",
            "fill_color": 0}


def export_open_clip(model_dir: str | Path, output: str | Path) -> list[Path]:
    """Write `open_clip_config.json` and `open_clip_model.safetensors` of the model in `model_dir` to `output`."""
    model_dir, output = Path(model_dir), Path(output)
    if not model_dir.is_dir():
        raise ConversionError(f"model folder not found: {model_dir}")
    model = load_weights(model_dir)
    try:
        image_processor = RemoteCLIPImageProcessor.from_pretrained(model_dir)
    except OSError:
        logger.warning("%s has no image processor files: exporting open_clip's default preprocessing", model_dir)
        image_processor = RemoteCLIPImageProcessor()
    config = {"model_cfg": open_clip_model_config(model.config),
              "preprocess_cfg": open_clip_preprocess_config(image_processor, model.config.image_size)}
    state_dict = to_open_clip_state_dict(model)
    with staged_folder(output, state_dict_bytes(state_dict), merge=True) as staging:  # OUT may be MODEL_DIR itself
        save_file(state_dict, staging / OPEN_CLIP_WEIGHTS_FILE, metadata={"format": "pt"})
        (staging / OPEN_CLIP_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [output / OPEN_CLIP_CONFIG_FILE, output / OPEN_CLIP_WEIGHTS_FILE]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of `rclip-hf export`."""
    parser = ArgumentParser(prog="rclip-hf export", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="RemoteCLIP/CLIP folder (converted, trained or downloaded)")
    parser.add_argument("--to", required=True, choices=TARGETS, help="export format")
    parser.add_argument("--output", required=True, help="folder for open_clip_config.json + open_clip_model.safetensors"
                        " (--to onnx: image_encoder.onnx, text_encoder.onnx, processor files, README.md)")
    parser.add_argument("--fp16", action="store_true", help="--to onnx: float16 weights and pixel_values")
    parser.add_argument("--push-to-hub", "--push_to_hub", dest="push_to_hub", metavar="REPO_ID", default=None,
                        help="also upload OUT to this Hub repo (the `rclip-hf push` allow-list; a card is written)")
    add_hub_arguments(parser)
    args = parser.parse_args(argv)
    if args.to != "onnx" and args.fp16:
        parser.error("--fp16 applies to --to onnx only")
    if args.to == "onnx" and args.push_to_hub:
        parser.error("--push-to-hub uploads open_clip exports only (.onnx files are not on the upload allow-list)")
    return args


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; 0 on success; a folder that cannot be exported is one `error:` line and 2."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    options = hub_options(args)
    api = check_write_access(args.push_to_hub, "--push-to-hub", token=options.token) if args.push_to_hub else None
    if args.to == "onnx":
        from .onnx_export import export_onnx

        files = export_onnx(args.model_dir, args.output, fp16=args.fp16)
    else:
        files = export_open_clip(args.model_dir, args.output)
    if args.push_to_hub:
        publish(args.output, args.push_to_hub, options, api=api, flag="--push-to-hub")
    usage = (f"see {args.output}/README.md" if args.to == "onnx"
             else f"open_clip.create_model_and_transforms(\"local-dir:{args.output}\")")
    print(f"wrote {', '.join(str(path) for path in files)}: {usage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
