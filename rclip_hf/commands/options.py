"""The options the model-running subcommands share: `ModelOptions` (model, device, dtype, output format, pixel
limit), the `--bands` help, the object-store `--storage-option` values, and the checks every command's options go
through before anything is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import UserError

OutputFormat = Literal["table", "json", "csv"]
_Options = TypeVar("_Options")


def flag_help(text: str, **extra: Any) -> dict[str, Any]:
    """The metadata of an option's dataclass field: its help text and any other `add_argument` keyword."""
    return {"help": text, **extra}


@dataclass(kw_only=True)
class ModelOptions:
    """Options shared by the subcommands that run a model."""

    model: str = field(metadata=flag_help(
        "RemoteCLIP/CLIP model folder (from `rclip-hf convert` or save_pretrained) or Hub id"))
    device: str | None = field(default=None, metadata=flag_help(
        "Device, e.g. cpu or cuda (default: cuda when available)"))
    dtype: Literal["float32", "bfloat16", "float16"] | None = field(default=None, metadata=flag_help(
        "Precision of the model's weights, in the names training's --mixed_precision and eval's --dtype take "
        "(default: as saved)"))
    format: OutputFormat = field(default="table", metadata=flag_help("Output format"))
    max_pixels: int | None = field(default=None, metadata=flag_help(
        "Largest image read whole, in pixels (default: Pillow's limit, 89,478,485); heatmap reads larger scenes "
        "window by window"))


#: Help of every command's `--bands` (the rule: `images.colour_bands`).
BANDS_HELP = ("Bands of (Geo)TIFF rasters as R,G,B (or one grey band), e.g. 3,2,1 (default: the colour "
              "interpretation, else band descriptions such as red or B04, else 1,2,3); applied to each raster that "
              "has them, other files are read by their colours with a one-line note")

#: Options that count something and must be at least 1 (0 would loop forever or divide by zero)
POSITIVE_OPTIONS = ("batch_size", "top_k", "commit_every", "grid", "window", "stride", "overlay_size",
                    "max_pixels")


def parse_options(options_class: type[_Options], argv: list[str], *, prog: str, description: str) -> _Options:
    """`options_class` from `argv` (both spellings of every flag; a misspelt one is a one-line error), checked."""
    from ..arguments import DataclassArgumentParser

    parser = DataclassArgumentParser(options_class, prog=prog, description=description)
    (options,) = parser.parse_args_into_dataclasses(args=argv)
    return check_options(options)


def check_options(options: _Options) -> _Options:
    """Counts must be at least 1; `--max-pixels` sets the pixel limit of `rclip_hf.images` (Pillow's own knob)."""
    for option in POSITIVE_OPTIONS:
        value = getattr(options, option, None)
        if value is not None and value < 1:
            raise UserError(f"--{option} {value}", "must be at least 1")
    if getattr(options, "max_pixels", None) is not None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = options.max_pixels
    return options


def load_model_for(options: ModelOptions) -> tuple[Any, Any]:
    """The model and processor that `--model`, `--dtype` and `--device` name."""
    from ..loading import load_model, resolve_device

    return load_model(options.model, dtype=options.dtype, device=resolve_device(options.device))


def storage_options(values: list[str] | None) -> dict[str, str]:
    """`--storage-option KEY=VALUE ...` as a dict."""
    options = {}
    for value in values or []:
        key, equals, setting = value.partition("=")
        if not equals or not key:
            raise UserError(f"--storage-option {value}", "expected KEY=VALUE", "e.g. endpoint=http://127.0.0.1:9000")
        options[key] = setting
    return options


def expand_images(paths: Sequence[str]) -> list[Path]:
    """The image files `paths` name: files as given, folders scanned recursively; a missing one or a folder
    without images raises `FileNotFoundError`."""
    from ..images import IMAGE_SUFFIXES, image_files

    images: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"image file not found: {path}")
    return images
