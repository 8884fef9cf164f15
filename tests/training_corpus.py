"""A small real caption corpus for the training tests: RSSCN7 scenes with captions made from their class names."""

from __future__ import annotations

import io
import re
from pathlib import Path

import datasets
from PIL import Image

#: Caption templates; each image gets all of them (training draws one at random per step).
TEMPLATES = ("a satellite image of {}.", "an aerial photo showing {}.", "{} seen from above.")


def scene_name(folder: str) -> str:
    """RSSCN7 folder name -> words: "dRiverLake" -> "river lake" (the leading letter is an ordering prefix)."""
    return " ".join(re.findall(r"[A-Z][a-z]*", folder[1:])).lower()


def build_scene_corpus(shared_data: Path, out_dir: Path, per_class: int = 50, size: int = 72) -> list[str]:
    """Writes `out_dir/train-00000-of-00001.parquet` (columns image, captions, source); returns the class names."""
    class_dirs = sorted(path for path in (shared_data / "rsscn7").iterdir() if path.is_dir())
    rows: dict[str, list] = {"image": [], "captions": [], "source": [], "label": []}
    for label, class_dir in enumerate(class_dirs):
        name = scene_name(class_dir.name)
        for image_path in sorted(class_dir.glob("*.jpg"))[:per_class]:
            buffer = io.BytesIO()
            Image.open(image_path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(buffer, "PNG")
            rows["image"].append({"bytes": buffer.getvalue(), "path": image_path.name})
            rows["captions"].append([template.format(name) for template in TEMPLATES])
            rows["source"].append("rsscn7")
            rows["label"].append(label)
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.List(datasets.Value("string")),
                                  "source": datasets.Value("string"), "label": datasets.Value("int64")})
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(out_dir / "train-00000-of-00001.parquet"))
    return [scene_name(class_dir.name) for class_dir in class_dirs]
