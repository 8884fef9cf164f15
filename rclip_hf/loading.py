"""Loading a RemoteCLIP/CLIP model folder (inference, evaluation, CLI), and the fingerprint of its weights."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from transformers import AutoConfig, CLIPConfig, CLIPModel, ProcessorMixin

from .configuration_remoteclip import RemoteCLIPConfig
from .errors import UserError
from .modeling_remoteclip import RemoteCLIPModel
from .processing_remoteclip import RemoteCLIPProcessor

#: `model_type`s accepted by the inference API: RemoteCLIP and plain transformers CLIP.
SUPPORTED_MODEL_TYPES = (RemoteCLIPConfig.model_type, CLIPConfig.model_type)
#: A Hub repo id, owner/name.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Weight files transformers reads from a folder, in the order it prefers them.
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# Config keys that change with the saving environment, not with the model.
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures")
# Values hashed from the start of every weight tensor: any training step changes them.
_FINGERPRINT_VALUES = 4096


class NotACLIPModelError(UserError, ValueError):
    """The folder or Hub id does not hold a RemoteCLIP/CLIP model; the message says what was found."""


def resolve_device(device: str | None) -> str:
    """`--device` checked against this machine: None -> cuda when available, else cpu."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}", "not a device name", "use cpu, cuda, cuda:N or mps") from None
    available = {"cuda": torch.cuda.device_count(), "mps": int(torch.backends.mps.is_available())}
    if parsed.type in available and (parsed.index or 0) >= available[parsed.type]:
        found = f"{available[parsed.type]} {parsed.type.upper()} device(s)"
        raise UserError(f"--device {device}", f"this machine has {found}", "use --device cpu")
    return device


def load_model(
    name_or_path: str | Path, dtype: torch.dtype | str | None = None, device: str | torch.device | None = None
) -> tuple[CLIPModel, ProcessorMixin]:
    """(model in eval mode, processor) of a RemoteCLIP/CLIP folder or Hub id; clear errors for anything else.

    Every such folder (ViT saved as plain CLIP, ResNet with remote code, legacy `remoteclip`, OpenAI CLIP) loads as
    `RemoteCLIPModel` with a `RemoteCLIPProcessor`, whose image transform is open_clip's exactly.
    """
    name = checked_model_source(name_or_path)
    with _loading(name):
        model = RemoteCLIPModel.from_pretrained(name, dtype=dtype if dtype is not None else "auto")
        processor = RemoteCLIPProcessor.from_pretrained(name)
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def load_weights(name_or_path: str | Path) -> RemoteCLIPModel:
    """The model of a RemoteCLIP/CLIP folder or Hub id (no processor), with `load_model`'s errors."""
    name = checked_model_source(name_or_path)
    with _loading(name):
        return RemoteCLIPModel.from_pretrained(name)


def checked_model_source(name_or_path: str | Path) -> str:
    """The name to load a model from, once the folder (or Hub id) is known to hold a RemoteCLIP/CLIP config:
    `NotACLIPModelError` naming the folder or file otherwise."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotACLIPModelError(f"{path} is a file, not a model folder (expected a folder with config.json)")
        if not (path / "config.json").is_file():
            raise NotACLIPModelError(f"{path} has no config.json: not a transformers model folder")
        name = str(path)
        try:
            config_model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except (ValueError, AttributeError) as error:
            raise NotACLIPModelError(f"{path / 'config.json'}", f"not a JSON object ({error})",
                                     "re-save or re-convert the model") from None
        _check_model_type(config_model_type, name)
    elif not HUB_ID.match(name):
        raise FileNotFoundError(f"model folder not found: {name}")
    try:
        config = AutoConfig.from_pretrained(name)
    except (ValueError, TypeError, KeyError, StrictDataclassError) as error:  # fields of the wrong type or value
        raise NotACLIPModelError(f"{Path(name) / 'config.json'}", f"not a valid model config "
                                 f"({type(error).__name__}: {_first_line(error)})",
                                 "re-save or re-convert the model") from None
    _check_model_type(getattr(config, "model_type", None), name)
    return name


@contextmanager
def _loading(name: str) -> Iterator[None]:
    """Weights that do not load (truncated, other shapes, a pickle that would run code) -> `NotACLIPModelError`."""
    try:
        yield
    except (SafetensorError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError,
            StrictDataclassError) as error:
        raise NotACLIPModelError(_weights_file(name), f"the weights do not load ({type(error).__name__}: "
                                 f"{_first_line(error)})",
                                 "re-convert or re-download the model; its config and weights must match") from None


def _weights_file(name: str) -> str:
    """The weights file of a local model folder (for messages), else the folder or Hub id itself."""
    found = [Path(name) / file for file in _WEIGHT_FILES if (Path(name) / file).is_file()]
    return str(found[0]) if found else name


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]


def _check_model_type(model_type: str | None, name: str) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise NotACLIPModelError(
            f"{name} holds a model of type {model_type!r}, not a RemoteCLIP/CLIP model "
            f"(model_type must be one of {', '.join(SUPPORTED_MODEL_TYPES)})"
        )


def resolve_model(
    model: CLIPModel | str | Path, processor: ProcessorMixin | None = None
) -> tuple[CLIPModel, ProcessorMixin]:
    """Accept a loaded model (with its processor) or a folder/Hub id, and return (model, processor)."""
    if isinstance(model, (str, Path)):
        loaded_model, loaded_processor = load_model(model)
        return loaded_model, processor if processor is not None else loaded_processor
    if not isinstance(model, CLIPModel):
        raise NotACLIPModelError(f"expected a CLIPModel/RemoteCLIPModel or a model folder, got {type(model).__name__}")
    if processor is None:
        source = getattr(model, "name_or_path", "")
        if not source:
            raise ValueError("processor=None needs a model loaded from a folder (model.name_or_path is empty)")
        processor = RemoteCLIPProcessor.from_pretrained(source)
    return model, processor


def model_fingerprint(model: CLIPModel) -> str:
    """SHA-256 of the model's config and of the first values of every weight (rounded to bfloat16).

    Copies of one checkpoint give the same fingerprint (a float32 and a bfloat16 copy agree); a different config, or
    different leading values of any weight, give a different one. It identifies a checkpoint, not what it computes:
    the search index uses it to refuse mixing embeddings of different models.
    """
    config = _without_volatile_keys(model.config.to_dict())
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        values = tensor.detach().flatten()[:_FINGERPRINT_VALUES].to("cpu", torch.bfloat16)
        digest.update(values.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def _without_volatile_keys(config: dict[str, Any]) -> dict[str, Any]:
    return {key: _without_volatile_keys(value) if isinstance(value, dict) else value
            for key, value in config.items() if key not in _VOLATILE_CONFIG_KEYS}


def model_name(model: CLIPModel) -> str:
    """The folder or Hub id the model was loaded from ("" for a model built in memory)."""
    return str(getattr(model, "name_or_path", "") or "")


def describe(model: CLIPModel) -> dict[str, Any]:
    """Model identity recorded next to saved embeddings: name, model_type, projection size, fingerprint."""
    return {"model": model_name(model), "model_type": model.config.model_type,
            "projection_dim": int(model.config.projection_dim), "fingerprint": model_fingerprint(model)}


__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "NotACLIPModelError",
    "checked_model_source",
    "describe",
    "load_model",
    "load_weights",
    "model_fingerprint",
    "model_name",
    "resolve_model",
]
