"""Write the old-format (manifest + shards) indexes of tests/data/old_index with the code of commit 0f4023b, the last
before the index moved onto LanceDB; `rclip-hf index migrate` converts them. Run from a checkout of that commit:

    git worktree add /tmp/old-rclip 0f4023b
    PYTHONPATH=/tmp/old-rclip:/tmp/old-rclip/tests python tests/data/old_index/make_old_index.py tests/data/old_index

The images and the scene are synthetic (seeded noise); the model is `make_tiny_model_dir(seed=0)`."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from inference_models import make_tiny_model_dir
from PIL import Image
from rasterio.transform import from_origin

from rclip_hf.inference.scenes import WindowOptions, build_scene_index
from rclip_hf.inference.search import build_index


def main(destination: Path) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_model_dir(tmp / "model", seed=0)
        images = tmp / "images"
        images.mkdir()
        for name in ("a", "b", "c", "d"):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{name}.png")
        scene = tmp / "scene.tif"
        profile = {"driver": "GTiff", "width": 128, "height": 128, "count": 3, "dtype": "uint8", "crs": "EPSG:3857",
                   "transform": from_origin(1_000_000.0, 5_000_000.0, 2.0, 2.0)}
        with rasterio.open(scene, "w", **profile) as raster:
            raster.write(rng.integers(0, 256, (3, 128, 128), dtype=np.uint8))
        for name in ("images.index", "scenes.index"):
            shutil.rmtree(destination / name, ignore_errors=True)
        build_index(images, destination / "images.index", model, faiss="no")
        build_scene_index([scene], destination / "scenes.index", model, options=WindowOptions(window=64), faiss="no")
        for name in ("images.index", "scenes.index"):
            (destination / name / "index.lock").unlink(missing_ok=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
