"""Regenerate `demo/data/` from the project's shared real samples (deterministic; run once, commit the output).

    python demo/data/make_sample.py --shared ../shared/data

Copies the sources in their own formats, halving the large detection / segmentation images (box coordinates and
masks scaled with them, masks with nearest-neighbour so colours stay exact), and writes RSSCN7 scenes downsized to
96 px with five captions per image made from the scene label (a Karpathy-style JSON, split train/test).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from PIL import Image

from rclip_hf.arguments import ArgumentParser

HERE = Path(__file__).resolve().parent
HALF = 0.5
SCENE_SIZE = 96
SCENES_PER_CLASS = {"train": 20, "test": 10}
#: RSSCN7 folder -> words used in the captions and in the zero-shot prompts.
RSSCN7_NAMES = {"aGrass": "grassland", "bField": "farmland", "cIndustry": "an industrial area",
                "dRiverLake": "a river or lake", "eForest": "a forest", "fResident": "a residential area",
                "gParking": "a parking lot"}
CAPTION_TEMPLATES = ("A satellite photo of {}.", "An aerial image of {}.", "A remote sensing image showing {}.",
                     "This picture shows {} seen from above.", "There is {} in this overhead view.")


def _scaled_png(source: Path, target: Path, resample: Image.Resampling) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        size = (round(image.width * HALF), round(image.height * HALF))
        image.resize(size, resample).save(target, optimize=True)


def _scaled_dota_labels(source: Path, target: Path) -> None:
    lines = []
    for line in source.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 9 and not line.startswith(("imagesource", "gsd")):
            parts[:8] = [f"{float(value) * HALF:.1f}" for value in parts[:8]]
        lines.append(" ".join(parts))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def copy_detection_sources(shared: Path) -> None:
    """DOTA (halved) plus a DOTA split patch, iSAID with masks (halved), DIOR (as it is)."""
    for image_id in ("P0706", "P1888"):
        _scaled_png(shared / "dota/images" / f"{image_id}.png", HERE / "dota/images" / f"{image_id}.png",
                    Image.Resampling.LANCZOS)
        _scaled_dota_labels(shared / "dota/labelTxt" / f"{image_id}.txt", HERE / "dota/labelTxt" / f"{image_id}.txt")
    for split, image_id in (("train", "P0005"), ("val", "P0003")):
        folder = Path("isaid") / split / "images"
        _scaled_png(shared / folder / f"{image_id}.png", HERE / folder / f"{image_id}.png", Image.Resampling.LANCZOS)
        for suffix in ("_instance_color_RGB", "_instance_id_RGB"):
            _scaled_png(shared / folder / f"{image_id}{suffix}.png", HERE / folder / f"{image_id}{suffix}.png",
                        Image.Resampling.NEAREST)
    shutil.copytree(shared / "dota_split", HERE / "dota", dirs_exist_ok=True)  # one more DOTA-format patch
    shutil.copytree(shared / "dior", HERE / "dior", dirs_exist_ok=True)
    shutil.copy2(shared / "remoteclip/airport.jpg", HERE / "remoteclip/airport.jpg")


def copy_scenes(shared: Path) -> None:
    """RSSCN7 at 96 px, the first images of each class; captions from the label, split train / test."""
    images = []
    for folder, name in RSSCN7_NAMES.items():
        files = sorted((shared / "rsscn7" / folder).glob("*.jpg"))
        start = 0
        for split, count in SCENES_PER_CLASS.items():
            for path in files[start:start + count]:
                target = HERE / "rsscn7" / split / folder / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as image:
                    image.convert("RGB").resize((SCENE_SIZE, SCENE_SIZE), Image.Resampling.LANCZOS).save(
                        target, quality=90)
                images.append({"filename": f"{split}/{folder}/{path.name}", "split": split,
                               "sentences": [{"raw": template.format(name)} for template in CAPTION_TEMPLATES]})
            start += count
    (HERE / "rsscn7" / "dataset_rsscn7_captions.json").write_text(json.dumps({"images": images}, indent=1) + "\n")


def main() -> None:
    """Rebuild every sample folder under demo/data."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "data")
    shared = parser.parse_args().shared
    copy_detection_sources(shared)
    copy_scenes(shared)


if __name__ == "__main__":
    main()
