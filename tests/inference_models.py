"""Tiny random-weight RemoteCLIP folders and real-image copies for the inference, CLI and docs tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, build_processor

TINY_IMAGE_SIZE = 64
TINY_EMBED_DIM = 32


def make_tiny_model_dir(directory: Path, seed: int = 0) -> Path:
    """Save a 2-layer ViT (width 64, 64x64 input, 32-d embeddings) RemoteCLIP with its processor to `directory`."""
    torch.manual_seed(seed)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2,
             "projection_dim": TINY_EMBED_DIM}
    config = RemoteCLIPConfig(
        text_config=dict(tower),
        vision_config={**tower, "model_type": "clip_vision_model", "patch_size": 16, "image_size": TINY_IMAGE_SIZE},
        projection_dim=TINY_EMBED_DIM,
    )
    RemoteCLIPModel(config).eval().save_pretrained(directory)
    build_processor(image_size=TINY_IMAGE_SIZE).save_pretrained(directory)
    return directory


def copy_images(shared_data: Path, destination: Path, per_class: int = 3,
                classes: tuple[str, ...] = ("aGrass", "gParking")) -> list[Path]:
    """Copy the first `per_class` RSSCN7 images of each class to `destination/<class>/`; returns the copies."""
    copies = []
    for name in classes:
        (destination / name).mkdir(parents=True, exist_ok=True)
        for source in sorted((shared_data / "rsscn7" / name).glob("*.jpg"))[:per_class]:
            copies.append(Path(shutil.copy(source, destination / name / source.name)))
    return copies
