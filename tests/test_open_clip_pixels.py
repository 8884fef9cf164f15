"""Every entry point feeds the model open_clip's pixels for a file: `preprocess(Image.open(file))`, for transparent,
grey+alpha, palette+transparency, 1-bit, CMYK and 16-bit files made from a real transparent sample (a DOTA crop with
a nodata collar, tests/data/make_transparent_sample.py; a 16-bit file by the stretch rule: `preprocess` of its 8-bit
stretch, since open_clip's `convert("RGB")` would clip it at 255)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rclip_hf import cli
from rclip_hf.images import to_rgb
from rclip_hf.inference.heatmap import window_grid
from rclip_hf.modeling_remoteclip import RemoteCLIPModel

pytest_plugins = ("inference_fixtures",)
open_clip = pytest.importorskip("open_clip")

MODES = ("RGBA", "LA", "P", "1", "CMYK", "I;16")
TRANSPARENT_SAMPLE = Path(__file__).parent / "data" / "transparent" / "P1888_rotated.png"


@pytest.fixture(scope="module")
def mode_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per mode, all from the same real transparent sample (200 x 200)."""
    folder = tmp_path_factory.mktemp("modes")
    rgba = Image.open(TRANSPARENT_SAMPLE)
    alpha = np.asarray(rgba)[..., 3]
    assert rgba.mode == "RGBA" and (alpha == 0).mean() > 0.3 and ((alpha > 0) & (alpha < 255)).any()
    rgba = rgba.crop((0, 0, 200, 170))  # not square: several windows along the longer side
    palette = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = palette.getpixel((0, 0))  # the corners' colour, as a nodata index
    grey = np.asarray(rgba.convert("L"), dtype=np.uint16)
    images = {"RGBA": rgba, "LA": rgba.convert("LA"), "P": palette, "1": rgba.convert("1"),
              "CMYK": rgba.convert("RGB").convert("CMYK"), "I;16": Image.fromarray(grey * 200 + 300)}
    files = {}
    for mode, image in images.items():
        path = folder / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        image.save(path, **({"transparency": image.info["transparency"]} if mode == "P" else {}))
        files[mode] = path
    for mode, path in files.items():  # the files hold what they say
        with Image.open(path) as image:
            assert image.mode == mode and (mode != "P" or "transparency" in image.info), mode
    return files


@pytest.fixture(scope="module")
def preprocess():
    """open_clip's eval transform at the tiny model's input size."""
    return open_clip.image_transform(64, is_train=False)


def open_clip_pixels(preprocess, image: Image.Image) -> torch.Tensor:
    """open_clip's pixels of an opened file; a 16-bit file is given its 8-bit stretch (the package's one rule)."""
    if image.mode == "I;16":
        image = to_rgb(np.asarray(image)[None])
    return preprocess(image)


@pytest.fixture
def fed(monkeypatch) -> list[torch.Tensor]:
    """The pixel values every image forward pass of the model receives, in order."""
    seen: list[torch.Tensor] = []
    original = RemoteCLIPModel.get_image_features

    def recording(self, pixel_values, *args, **kwargs):
        seen.append(pixel_values.detach().clone())
        return original(self, pixel_values, *args, **kwargs)

    monkeypatch.setattr(RemoteCLIPModel, "get_image_features", recording)
    return seen


def run(argv: list[str]) -> None:
    assert cli.main(argv) == 0


def assert_pixels(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    assert actual.shape == expected.shape, what
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0, msg=lambda message: f"{what}: {message}")


def test_classify_count_search_and_index_feed_open_clips_pixels(mode_files, tiny_model_dir, preprocess, fed,
                                                                tmp_path):
    paths = [str(mode_files[mode]) for mode in MODES]
    expected = torch.stack([open_clip_pixels(preprocess, Image.open(path)) for path in paths])
    model = ["--model", str(tiny_model_dir)]
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(paths):  # indexed in sorted order
        (folder / Path(path).name).write_bytes(Path(path).read_bytes())
    calls = {"classify": ["classify", "--images", *paths, "--labels", "harbor", "forest", *model],
             "count": ["count", "--image", *paths, "--object", "plane", *model],
             "index": ["index", "--source", str(folder), "--output", str(tmp_path / "index"), *model],
             "search --image": ["search", "--index", str(tmp_path / "index"), "--image", *paths, *model]}
    for name, argv in calls.items():
        fed.clear()
        run(argv)
        order = sorted(range(len(paths)), key=lambda i: Path(paths[i]).name) if name == "index" else range(len(paths))
        assert_pixels(torch.cat(fed), expected[list(order)], name)


def test_heatmap_windows_are_open_clips_crops(mode_files, tiny_model_dir, preprocess, fed, tmp_path):
    """Each window is fed as open_clip's `preprocess(Image.open(file).crop(box))` (16-bit: of its stretch)."""
    for mode in MODES:
        fed.clear()
        path = mode_files[mode]
        run(["heatmap", "--image", str(path), "--queries", "a plane", "--grid", "2", "--overlay_size", "64", "--output_dir",
             str(tmp_path / mode.replace(";", "")), "--model", str(tiny_model_dir)])
        opened = Image.open(path)
        opened = to_rgb(np.asarray(opened)[None]) if mode == "I;16" else opened
        boxes = window_grid(*opened.size, grid=2).boxes()
        assert len(boxes) > 2
        assert_pixels(torch.cat(fed), torch.stack([preprocess(opened.crop(box)) for box in boxes]), mode)


@pytest.mark.parametrize("processor_kind", ["remoteclip", "open_clip"])
def test_evaluation_runner_feeds_open_clips_pixels(processor_kind, mode_files, tiny_model, preprocess, fed):
    """The runner's images come from a dataset's Image column (decoded by `datasets` in their own mode), through
    the model's processor or open_clip's own transform (`open_clip:` models)."""
    import datasets

    from rclip_hf.evaluation.open_clip_adapter import OpenCLIPProcessor
    from rclip_hf.evaluation.runner import BenchmarkRunner, EvalArguments

    model, processor = tiny_model
    if processor_kind == "open_clip":
        processor = OpenCLIPProcessor(preprocess, tokenizer=None)
    paths = [str(mode_files[mode]) for mode in MODES]
    dataset = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    args = EvalArguments(model="tiny", benchmarks="", data_dir="", batch_size=4, show_progress=False)
    BenchmarkRunner(model, processor, args, "cpu").images(dataset)
    expected = torch.stack([open_clip_pixels(preprocess, Image.open(path)) for path in paths])
    assert_pixels(torch.cat(fed), expected)


def test_open_image_keeps_eight_bit_modes_and_load_image_is_their_rgb(mode_files):
    from rclip_hf.images import load_image, open_image

    for mode, path in mode_files.items():
        opened, rgb = open_image(path), load_image(path)
        assert opened.mode == ("RGB" if mode == "I;16" else mode), mode  # 16-bit: stretched to RGB
        assert rgb.mode == "RGB" and np.array_equal(np.asarray(rgb), np.asarray(opened.convert("RGB"))), mode
