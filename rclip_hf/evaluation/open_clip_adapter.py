"""An open_clip model behind the encode interface of a transformers CLIPModel, for baseline comparisons."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


class OpenCLIPAdapter(torch.nn.Module):
    """Wraps an open_clip ``CLIP`` so that ``get_image_features`` / ``get_text_features`` return embeddings."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def get_image_features(self, pixel_values: Tensor) -> Tensor:
        """Image embeddings (batch, embed_dim), not normalised."""
        return self.model.encode_image(pixel_values)

    def get_text_features(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Text embeddings (batch, embed_dim), not normalised; open_clip pools at the EOT token itself."""
        return self.model.encode_text(input_ids)


class OpenCLIPProcessor:
    """``processor(text=..., images=..., return_tensors="pt")`` built from open_clip's transform and tokenizer."""

    def __init__(self, transform, tokenizer):
        self.transform = transform
        self.tokenizer = tokenizer

    def __call__(self, text=None, images=None, return_tensors: str = "pt", **_) -> dict[str, Tensor]:
        """``input_ids`` (batch, 77) for ``text`` and/or ``pixel_values`` (batch, 3, H, W) for ``images``."""
        if return_tensors != "pt":
            raise ValueError(f"OpenCLIPProcessor: return_tensors={return_tensors!r}, only 'pt' is supported")
        outputs = {}
        if text is not None:
            outputs["input_ids"] = self.tokenizer([text] if isinstance(text, str) else list(text))
        if images is not None:
            outputs["pixel_values"] = torch.stack([self.transform(image) for image in images])
        return outputs


def load_open_clip(spec: str) -> tuple[OpenCLIPAdapter, OpenCLIPProcessor, str]:
    """Build ``open_clip:ARCH[:/path/weights.pt]`` offline; returns (model, processor, arch).

    Without a weights file the model has random weights (useful for tests); weights are a state dict or a
    checkpoint with a ``state_dict`` key, loaded with ``strict=True``.
    """
    import open_clip

    parts = spec.split(":", 2)
    if len(parts) < 2 or parts[0] != "open_clip" or not parts[1]:
        raise ValueError(
            f"model spec {spec!r}: expected 'open_clip:ARCH' or 'open_clip:ARCH:/path/weights.pt'"
        )
    arch = parts[1]
    model, _, transform = open_clip.create_model_and_transforms(arch, pretrained=None)
    if len(parts) == 3:
        checkpoint = torch.load(parts[2], map_location="cpu", weights_only=True)
        state_dict = checkpoint.get("state_dict", checkpoint)
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
        model.load_state_dict(state_dict, strict=True)
        logger.info("loaded open_clip %s weights from %s", arch, parts[2])
    else:
        logger.warning("open_clip %s has random weights (no weights file in %r)", arch, spec)
    model.eval()
    return OpenCLIPAdapter(model), OpenCLIPProcessor(transform, open_clip.get_tokenizer(arch)), arch
