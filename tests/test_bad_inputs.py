"""Bad input, command by command: each case ends in one clear line (`error: ...`, exit 2) or is handled as
documented (exit 0, the bad item recorded); never a traceback, never silent loss or a half-written output.

Commands run in-process through their entry points (`rclip_hf.cli.main`, the builders' and train.py's `main`), so
an uncaught exception fails the test; the one-line rule is checked on what they print to stderr.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_models import make_tiny_model_dir
from PIL import Image

from rclip_hf import cli
from rclip_hf.errors import EXIT_BAD_INPUT, UserError, entry_point

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, other_model_dir, tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).parent / "data" / "bad_images"
TINY_TRAIN = REPO_ROOT / "training_scripts" / "configs" / "tiny.yaml"


def _one_error_line(err: str) -> str:
    """The single `error: ...` line of stderr (log lines from `logging` are allowed before it)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def _run(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----- image files --------------------------------------------------------------------------------------------------
def _write_tiff(path: Path, bands: np.ndarray, **profile) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                       dtype=str(bands.dtype), **profile) as dataset:
        dataset.write(bands)
    return path


def make_bad_images(folder: Path) -> dict[str, Path]:
    """One file per kind of awkward image; names are the case ids of the tests below."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    files = {}
    files["zero_byte"] = folder / "zero.png"
    files["zero_byte"].write_bytes(b"")
    files["corrupt"] = Path(shutil.copy(BAD / "corrupt.jpg", folder / "corrupt.jpg"))
    files["truncated"] = Path(shutil.copy(BAD / "truncated.png", folder / "truncated.png"))
    files["text_renamed_png"] = folder / "notes.png"
    files["text_renamed_png"].write_text("this is not an image\n")
    files["png_renamed_jpg"] = folder / "png_named.jpg"
    rgb.save(files["png_renamed_jpg"], format="PNG")
    files["cmyk_jpeg"] = folder / "cmyk.jpg"
    rgb.convert("CMYK").save(files["cmyk_jpeg"], format="JPEG")
    files["gray16_png"] = Path(shutil.copy(BAD / "gray16.png", folder / "gray16.png"))
    files["rgba_png"] = Path(shutil.copy(BAD / "rgba.png", folder / "rgba.png"))
    files["four_band_tiff"] = Path(shutil.copy(BAD / "multiband.tif", folder / "multiband.tif"))
    unicode_dir = folder / "données"
    unicode_dir.mkdir()
    files["unicode_path"] = unicode_dir / "機場 1.png"
    rgb.save(files["unicode_path"])
    values = rng.normal(100.0, 20.0, (1, 64, 64)).astype(np.float32)
    values[:, :16] = -9999.0
    files["float_nodata_tiff"] = _write_tiff(folder / "float_nodata.tif", values, nodata=-9999.0)
    import rasterio
    from rasterio.enums import ColorInterp

    bgr = np.stack([np.full((64, 64), 10, np.uint8), np.full((64, 64), 20, np.uint8), np.full((64, 64), 200, np.uint8)])
    files["bgr_tiff"] = _write_tiff(folder / "bgr.tif", bgr)
    with rasterio.open(files["bgr_tiff"], "r+") as dataset:
        dataset.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    return files


UNREADABLE = ["zero_byte", "corrupt", "truncated", "text_renamed_png"]
READABLE = ["png_renamed_jpg", "cmyk_jpeg", "gray16_png", "rgba_png", "four_band_tiff", "unicode_path",
            "float_nodata_tiff", "bgr_tiff"]


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_images(tmp_path_factory.mktemp("bad_images"))


def test_awkward_but_valid_images_follow_the_one_rule(bad_images: dict[str, Path]) -> None:
    from rclip_hf.images import load_image

    for case in READABLE:
        image = load_image(bad_images[case])
        assert image.mode == "RGB" and image.size == (64, 64), case
    nodata = np.asarray(load_image(bad_images["float_nodata_tiff"]))
    assert (nodata[:16] == 0).all()  # nodata rows -> 0, out of the stretch
    assert len(np.unique(nodata[16:, :, 0])) > 100  # the valid part keeps its grey levels (not 2 colours)
    bgr = np.asarray(load_image(bad_images["bgr_tiff"]))
    assert tuple(bgr[0, 0]) == (200, 20, 10)  # the band named red is used as red


def _image_command(command: str, model: Path, image: Path, tmp_path: Path) -> list[str]:
    return {
        "classify": ["classify", "--model", str(model), "--images", str(image), "--labels", "a", "b"],
        "count": ["count", "--model", str(model), "--image", str(image), "--object", "plane"],
        "heatmap": ["heatmap", "--model", str(model), "--image", str(image), "--queries", "plane", "--window", "32",
                    "--output_dir", str(tmp_path / "maps")],
    }[command]


@pytest.mark.parametrize("case", UNREADABLE)
@pytest.mark.parametrize("command", ["classify", "count", "heatmap"])
def test_unreadable_image_is_one_line(tiny_model_dir: Path, bad_images: dict[str, Path], tmp_path: Path, capsys,
                                      command: str, case: str) -> None:
    code, out, err = _run(cli.main, _image_command(command, tiny_model_dir, bad_images[case], tmp_path), capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    line = _one_error_line(err)
    assert str(bad_images[case]) in line and ("cannot read image" in line or "cannot read scene" in line)
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())


@pytest.mark.parametrize("case", READABLE)
@pytest.mark.parametrize("command", ["classify", "count", "heatmap"])
def test_awkward_image_is_handled(tiny_model_dir: Path, bad_images: dict[str, Path], tmp_path: Path, capsys,
                                  command: str, case: str) -> None:
    code, out, err = _run(cli.main, _image_command(command, tiny_model_dir, bad_images[case], tmp_path), capsys)
    assert code == 0, err
    assert "error" not in err and out


def test_search_by_unreadable_image_is_one_line(tiny_model_dir: Path, bad_images: dict[str, Path], tmp_path: Path,
                                                capsys) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    shutil.copy(bad_images["png_renamed_jpg"], folder / "a.png")
    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", str(folder), "--output",
                     str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    code, _, err = _run(cli.main, ["search", "--model", str(tiny_model_dir), "--index", str(tmp_path / "idx"),
                                   "--image", str(bad_images["truncated"])], capsys)
    assert code == EXIT_BAD_INPUT and "truncated.png" in _one_error_line(err)


def test_index_records_unreadable_images_and_keeps_the_rest(tiny_model_dir: Path, bad_images: dict[str, Path],
                                                            tmp_path: Path, capsys) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(bad_images["zero_byte"].parent, folder)
    code, out, err = _run(cli.main, ["index", "--model", str(tiny_model_dir), "--source", str(folder), "--output",
                                     str(tmp_path / "idx"), "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == len(READABLE)
    assert sorted(Path(failure["path"]).name for failure in report["failures"]) == sorted(
        bad_images[case].name for case in UNREADABLE)


# ----- models -------------------------------------------------------------------------------------------------------
def _model_variant(kind: str, tiny_model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / kind
    if kind == "missing":
        return folder
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    if kind == "truncated_safetensors":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif kind == "zero_byte_safetensors":
        weights.write_bytes(b"")
    elif kind == "wrong_arch_weights":
        other = make_tiny_model_dir(tmp_path / "wider")
        config = json.loads((other / "config.json").read_text())
        config["vision_config"]["hidden_size"] = 96
        config["vision_config"]["intermediate_size"] = 192
        (other / "config.json").write_text(json.dumps(config))
        from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel

        RemoteCLIPModel(RemoteCLIPConfig.from_pretrained(other)).save_pretrained(other)
        shutil.copy(other / "model.safetensors", weights)
    elif kind == "corrupt_config":
        (folder / "config.json").write_text('{"model_type": "remoteclip",')
    elif kind == "not_clip":
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return folder


MODEL_CASES = {"missing": "model folder not found", "truncated_safetensors": "weights do not load",
               "zero_byte_safetensors": "weights do not load", "wrong_arch_weights": "weights do not load",
               "corrupt_config": "config.json: not a JSON object", "not_clip": "not a RemoteCLIP/CLIP model"}


@pytest.mark.parametrize("kind", list(MODEL_CASES))
@pytest.mark.parametrize("command", ["classify", "index", "eval"])
def test_bad_model_folder_is_one_line(tiny_model_dir: Path, bad_images: dict[str, Path], tmp_path: Path, capsys,
                                      kind: str, command: str) -> None:
    model = _model_variant(kind, tiny_model_dir, tmp_path)
    image = bad_images["png_renamed_jpg"]
    argv = {"classify": ["classify", "--model", str(model), "--images", str(image), "--labels", "a", "b"],
            "index": ["index", "--model", str(model), "--source", str(image.parent), "--output", str(tmp_path / "i")],
            "eval": ["eval", "--model", str(model), "--benchmarks", "rsitmd", "--data_dir", str(tmp_path)]}[command]
    code, _, err = _run(cli.main, argv, capsys)
    assert code == EXIT_BAD_INPUT
    assert MODEL_CASES[kind] in _one_error_line(err)
    assert not (tmp_path / "i").exists()


# ----- flags --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["classify", "--images", "{image}", "--labels", "a", "--batch_size", "0"], "--batch_size 0: must be at least 1"),
    (["classify", "--images", "{image}", "--labels", "a", "--top_k", "0"], "--top_k 0: must be at least 1"),
    (["classify", "--images", "{image}", "--labels", "a", "--device", "bogus"], "--device bogus: not a device name"),
    (["classify", "--images", "{image}", "--labels", "a", "--device", "cuda:99"], "--device cuda:99: this machine has"),
    (["heatmap", "--image", "{image}", "--queries", "a", "--grid", "0"], "--grid 0: must be at least 1"),
    (["index", "--source", "{folder}", "--output", "{tmp}/i", "--commit_every", "0"], "--commit_every 0: must be at"),
    (["eval", "--benchmarks", "rsitmd", "--data_dir", "{tmp}", "--batch_size", "0"], "--batch_size 0: must be at"),
    (["eval", "--benchmarks", "rsitmd", "--data_dir", "{tmp}", "--device", "bogus"], "--device bogus: not a device"),
])
def test_bad_flag_values_are_one_line(tiny_model_dir: Path, bad_images: dict[str, Path], tmp_path: Path, capsys,
                                      argv: list[str], message: str) -> None:
    image = bad_images["png_renamed_jpg"]
    argv = [part.format(image=image, folder=image.parent, tmp=tmp_path) for part in argv]
    argv[1:1] = ["--model", str(tiny_model_dir)]
    code, _, err = _run(cli.main, argv, capsys)
    assert code == EXIT_BAD_INPUT and message in _one_error_line(err)


def test_search_of_an_empty_index_is_one_line(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from rclip_hf.inference.index import EmbeddingIndex
    from rclip_hf.loading import load_model

    EmbeddingIndex.open_or_create(tmp_path / "empty", load_model(tiny_model_dir)[0])
    code, _, err = _run(cli.main, ["search", "--model", str(tiny_model_dir), "--index", str(tmp_path / "empty"),
                                   "--text", "a"], capsys)
    assert code == EXIT_BAD_INPUT and "the index holds no items yet" in _one_error_line(err)


def test_debug_shows_the_traceback_and_internal_errors_keep_it(capsys) -> None:
    @entry_point
    def bad_input(argv: list[str]) -> int:
        raise UserError("--x 3", "too big", "use at most 2")

    @entry_point
    def library_value_error(argv: list[str]) -> int:  # a ValueError raised outside the project: internal
        raise ValueError("math domain error")

    assert bad_input([]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: --x 3: too big (use at most 2)\n"
    with pytest.raises(UserError, match="too big"):
        bad_input(["--debug"])
    with pytest.raises(ValueError, match="math domain error"):
        library_value_error([])
    with pytest.raises(KeyError):
        entry_point(lambda argv: {}["missing"])([])
    assert cli.main(["classify", "--model", "nowhere/../x", "--images", "x", "--labels", "a"]) == EXIT_BAD_INPUT


# ----- full disk ----------------------------------------------------------------------------------------------------
def test_full_disk_while_indexing_is_one_line_and_keeps_the_index(tiny_model_dir: Path, bad_images: dict[str, Path],
                                                                  tmp_path: Path, capsys, monkeypatch) -> None:
    from rclip_hf.inference import index as index_module

    folder = tmp_path / "tiles"
    folder.mkdir()
    for number in range(3):
        shutil.copy(bad_images["png_renamed_jpg"], folder / f"{number}.png")
    output = tmp_path / "idx"
    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", str(folder), "--output", str(output)]) == 0
    capsys.readouterr()
    before = index_module.EmbeddingIndex.open(output).ids()
    for number in range(3, 6):
        shutil.copy(bad_images["png_renamed_jpg"], folder / f"{number}.png")

    def full(self, remove: set, rekey: dict | None) -> None:  # as Lance reports it from its object store
        raise OSError(f"LanceError(IO): Generic LocalFileSystem error: {os.strerror(errno.ENOSPC)} (os error 28)")

    monkeypatch.setattr(index_module.EmbeddingIndex, "_write", full)
    code, _, err = _run(cli.main, ["index", "--model", str(tiny_model_dir), "--source", str(folder), "--output",
                                   str(output)], capsys)
    assert code == EXIT_BAD_INPUT
    line = _one_error_line(err)
    assert line.startswith(f"error: {output}: no space left on device") and "free space" in line
    assert index_module.EmbeddingIndex.open(output).ids() == before


def test_full_disk_while_building_a_corpus_is_one_line_and_keeps_the_previous(tmp_path: Path, capsys,
                                                                              monkeypatch) -> None:
    from dataset_builders import corpus
    from dataset_builders.build_corpus import main

    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    shutil.copy(BAD / "good.png", root / "images" / "a.png")
    (root / "labelTxt" / "a.txt").write_text("4 4 40 4 40 40 4 40 plane 0\n")
    output = tmp_path / "out"
    assert main(["--source", f"dota={root}", "--output", str(output)]) == 0
    capsys.readouterr()
    before = sorted(path.name for path in output.rglob("*"))

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", str(output / "data"))

    monkeypatch.setattr(corpus.ShardWriter, "write", full)
    code, _, err = _run(main, ["--source", f"dota={root}", "--output", str(output), "--seed", "4"], capsys)
    assert code == EXIT_BAD_INPUT and "No space left on device" in _one_error_line(err)
    assert sorted(path.name for path in output.rglob("*")) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dota", "out"]  # no partial folder left


# ----- builders -----------------------------------------------------------------------------------------------------
def test_builder_bad_inputs_are_one_line(tmp_path: Path, capsys) -> None:
    from dataset_builders.build_benchmarks import main as build_benchmarks
    from dataset_builders.build_corpus import main as build_corpus
    from dataset_builders.build_remotecount import main as build_remotecount

    code, _, err = _run(build_corpus, ["--source", f"dota={tmp_path / 'nowhere'}", "--output", str(tmp_path / "o")],
                        capsys)
    assert code == EXIT_BAD_INPUT and "nowhere does not exist" in _one_error_line(err)
    captions = tmp_path / "captions"
    (captions / "images").mkdir(parents=True)
    (captions / "dataset_x.json").write_text('{"images": [\n  {"filename": "a.png",}\n]}')
    code, _, err = _run(build_corpus, ["--source", f"captions={captions}", "--output", str(tmp_path / "o")], capsys)
    assert code == EXIT_BAD_INPUT and f"{captions / 'dataset_x.json'}:2: not valid JSON" in _one_error_line(err)
    release = tmp_path / "release"
    release.mkdir()
    (release / "counts.jsonl").write_text('{"image": "a.png", "caption": "There are two planes."}\n{oops\n')
    code, _, err = _run(build_remotecount, ["--release", str(release), "--output", str(tmp_path / "rc")], capsys)
    assert code == EXIT_BAD_INPUT and f"{release / 'counts.jsonl'}:2: not valid JSON" in _one_error_line(err)
    (tmp_path / "bad.yaml").write_text("source: [dota=x\noutput: o\n")
    code, _, err = _run(build_corpus, ["--config", str(tmp_path / "bad.yaml")], capsys)
    assert code == EXIT_BAD_INPUT and f"{tmp_path / 'bad.yaml'}: not valid YAML (" in _one_error_line(err)
    code, _, err = _run(build_benchmarks, ["--retrieval", str(captions), "--output", str(tmp_path / "b")], capsys)
    assert code == EXIT_BAD_INPUT and "expected NAME=PATH" in _one_error_line(err)
    assert not any((tmp_path / name).exists() for name in ("o", "rc", "b"))


# ----- training -----------------------------------------------------------------------------------------------------
def test_train_bad_inputs_are_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "training_scripts"))  # only here: it holds an `evaluate.py`
    from train import main

    base = ["--config", str(TINY_TRAIN), "--report_to", "none", "--output_dir", str(tmp_path / "run")]
    code, _, err = _run(main, [*base, "--dataset", str(tmp_path / "no" / "such" / "corpus")], capsys)
    line = _one_error_line(err)
    assert code == EXIT_BAD_INPUT and "no such local folder" in line and "Couldn't reach" not in line.split("(")[0]
    code, _, err = _run(main, [*base, "--dataset", "x", "--resume", str(tmp_path / "nowhere")], capsys)
    assert code == EXIT_BAD_INPUT and "not a complete checkpoint folder" in _one_error_line(err)
    code, _, err = _run(main, ["--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == EXIT_BAD_INPUT and "missing.yaml: no such file" in _one_error_line(err)
    (tmp_path / "bad.yaml").write_text("max_steps: [3\n")
    code, _, err = _run(main, ["--config", str(tmp_path / "bad.yaml")], capsys)
    assert code == EXIT_BAD_INPUT and f"{tmp_path / 'bad.yaml'}: not valid YAML (" in _one_error_line(err)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_log.jsonl").write_text('{"step": 1}\n')
    code, _, err = _run(main, [*base, "--dataset", "x"], capsys)
    assert code == EXIT_BAD_INPUT and "--overwrite_output_dir" in _one_error_line(err)
    assert (tmp_path / "run" / "train_log.jsonl").read_text() == '{"step": 1}\n'


# ----- huge scenes --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes(bad_images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 64x64 PNG and GeoTIFF: over a pixel limit of 1,000."""
    folder = tmp_path_factory.mktemp("scenes")
    png = Path(shutil.copy(bad_images["png_renamed_jpg"], folder / "scene.png"))
    bands = np.asarray(Image.open(png)).transpose(2, 0, 1).copy()
    return {"png": png, "geotiff": _write_tiff(folder / "scene.tif", bands)}


@pytest.mark.parametrize("kind", ["png", "geotiff"])
@pytest.mark.parametrize("command", ["classify", "count", "search"])
@pytest.mark.parametrize("limit", ["flag", "pillow_default"])
def test_an_image_over_the_pixel_limit_is_refused_naming_size_limit_and_flag(
        tiny_model_dir: Path, scenes: dict[str, Path], tmp_path: Path, capsys, monkeypatch, kind: str, command: str,
        limit: str) -> None:
    scene = scenes[kind]
    if command == "search":
        from rclip_hf.inference.index import EmbeddingIndex
        from rclip_hf.loading import load_model

        index = EmbeddingIndex.open_or_create(tmp_path / "idx", load_model(tiny_model_dir)[0])
        index.add(["a"], [""], [-1], torch.eye(1, index.dim))
        index.commit()
        argv = ["search", "--model", str(tiny_model_dir), "--index", str(tmp_path / "idx"), "--image", str(scene)]
    else:
        argv = _image_command(command, tiny_model_dir, scene, tmp_path)
    if limit == "flag":
        argv += ["--max-pixels", "1000"]
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as Pillow's default does for 89.5 M pixels
    code, _, err = _run(cli.main, argv, capsys)
    assert code == EXIT_BAD_INPUT
    assert f"error: {scene}: cannot read image: 64x64 = 4,096 pixels is over the limit of 1,000 " \
           "(the decompression bomb guard) (pass --max-pixels 4096" in _one_error_line(err)


@pytest.mark.parametrize("kind", ["png", "geotiff"])
def test_heatmap_reads_a_scene_over_the_limit_window_by_window(tiny_model_dir: Path, scenes: dict[str, Path],
                                                               tmp_path: Path, capsys, kind: str) -> None:
    code, out, err = _run(cli.main, [*_image_command("heatmap", tiny_model_dir, scenes[kind], tmp_path),
                                     "--max_pixels", "1000", "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["windows"] == [3, 3]
    assert Image.MAX_IMAGE_PIXELS != 1000  # the flag holds for one command only


def test_index_records_an_oversized_image_as_a_failure_and_goes_on(tiny_model_dir: Path, scenes: dict[str, Path],
                                                                    bad_images: dict[str, Path], tmp_path: Path,
                                                                    capsys) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    shutil.copy(scenes["png"], folder / "big.png")
    Image.open(bad_images["png_renamed_jpg"]).resize((30, 30)).save(folder / "small.png")
    code, out, err = _run(cli.main, ["index", "--model", str(tiny_model_dir), "--source", str(folder), "--output",
                                     str(tmp_path / "idx"), "--max-pixels", "1000", "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == 1 and [failure["id"] for failure in report["failures"]] == ["big.png"]
    assert "over the limit of 1,000" in report["failures"][0]["reason"]


def test_a_large_geotiff_heatmap_stays_within_a_window_of_memory(tiny_model, tmp_path: Path, monkeypatch) -> None:
    import tracemalloc

    from rclip_hf.images import ImageTooLargeError, load_image
    from rclip_hf.inference import heatmap

    side = 3000  # 27 MB of RGB; the pixel limit is set below it
    bands = np.zeros((3, side, side), np.uint8)
    bands[:, ::7] = 200
    scene = _write_tiff(tmp_path / "large.tif", bands, compress="deflate", tiled=True, blockxsize=256,
                        blockysize=256)
    del bands
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000_000)
    with pytest.raises(ImageTooLargeError, match="3000x3000 = 9,000,000 pixels is over the limit of 4,000,000"):
        load_image(scene)
    tracemalloc.start()
    model, processor = tiny_model
    result = heatmap(scene, ["stripes"], model=model, processor=processor, window=750, overlay_size=256,
                     batch_size=4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.scores.shape[0] == 1 and result.scores.size >= 25
    assert peak < 15_000_000, peak  # a batch of 4 windows of 750 px (1.7 MB each), never the 27 MB scene


def test_build_remotecount_skips_an_oversized_image_and_records_it(scenes: dict[str, Path], tmp_path: Path, capsys,
                                                                   monkeypatch) -> None:
    from dataset_builders.build_remotecount import main

    release = tmp_path / "release"
    (release / "images").mkdir(parents=True)
    shutil.copy(scenes["png"], release / "images" / "big.png")
    Image.open(scenes["png"]).resize((30, 30)).save(release / "images" / "small.png")
    lines = [{"image": "big.png", "caption": "There are two planes in the image."},
             {"image": "small.png", "caption": "There is one ship in the image."}]
    (release / "counts.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    code, out, err = _run(main, ["--release", str(release), "--output", str(tmp_path / "rc")], capsys)
    assert code == 0, err
    assert json.loads(out) == {"test": 1}
    report = json.loads((tmp_path / "rc" / "build_report.json").read_text())
    assert [Path(entry["path"]).name for entry in report["skipped"]] == ["big.png"]
    assert "over the limit of 1,000" in report["skipped"][0]["reason"]


def test_float_geotiff_with_nodata_keeps_its_grey_levels_in_the_corpus(bad_images: dict[str, Path]) -> None:
    import io

    from dataset_builders.sources.images import image_cell

    stored = np.asarray(Image.open(io.BytesIO(image_cell(bad_images["float_nodata_tiff"], "f.tif")["bytes"])))
    assert (stored[:16] == 0).all() and len(np.unique(stored[16:, :, 0])) > 100  # not a 2-colour image


# ----- nothing outside its folder, nothing lost silently (issue 27) --------------------------------------------------
def _dota(root: Path, labels: dict[str, str]) -> Path:
    """A DOTA folder: one copy of good.png per label file."""
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    for stem, text in labels.items():
        shutil.copy(BAD / "good.png", root / "images" / f"{stem}.png")
        (root / "labelTxt" / f"{stem}.txt").write_text(text)
    return root


def test_a_symlink_out_of_a_source_is_refused_and_recorded(tmp_path: Path, capsys) -> None:
    from dataset_builders.build_corpus import main

    root = _dota(tmp_path / "dota", {"a": "4 4 40 4 40 40 4 40 plane 0\n"})
    secret = Path(shutil.copy(BAD / "rgba.png", tmp_path / "outside.png"))
    (root / "images" / "b.png").symlink_to(secret)
    (root / "labelTxt" / "b.txt").write_text("4 4 40 4 40 40 4 40 ship 0\n")
    (root / "images" / "c.png").symlink_to(root / "images" / "a.png")  # a link that stays inside is read
    (root / "labelTxt" / "c.txt").write_text("4 4 40 4 40 40 4 40 ship 0\n")
    code, _, err = _run(main, ["--source", f"dota={root}", "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    refused = [entry for entry in report["sources"]["dota"]["skipped"] if "leaves the source folder" in entry["reason"]]
    assert [Path(entry["path"]).name for entry in refused] == ["b.png"]
    assert str(secret) in refused[0]["reason"]
    assert report["totals"]["read"] == report["totals"]["kept"] + report["totals"]["skipped"] + \
        report["totals"]["duplicates"]


@pytest.mark.parametrize("line", ["4 4 40 nan 40 40 4 40 plane 0", "4 4 40 4 40 40 4 nan plane 0",
                                  "4 4 40 4 40 40 4 40 7 0", "4 4 40 4 40 40 4 40 1.5e3 0"])
def test_dota_rows_with_nan_or_a_number_as_class_are_skipped_and_recorded(tmp_path: Path, line: str) -> None:
    from dataset_builders.sources import read_source

    root = _dota(tmp_path / "dota", {"a": f"4 4 40 4 40 40 4 40 plane 0\n{line}\n"})
    records, skipped = read_source("dota", root)
    assert [(box.label, box.x_min) for box in records[0].boxes] == [("plane", 4.0)]
    assert [(entry.line, "dropped box" in entry.reason) for entry in skipped] == [(2, True)]


def _rn50_checkpoint(path: Path) -> Path:
    import open_clip

    torch.save(open_clip.create_model("RN50", pretrained=None).state_dict(), path)
    return path


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every safetensors write fails as Rust's writer fails on a full disk, after the file was opened."""
    import safetensors.torch
    import transformers.modeling_utils
    from safetensors import SafetensorError

    from rclip_hf import export

    def full(tensors, filename, *args, **kwargs) -> None:
        Path(filename).write_bytes(b"\0" * 64)
        raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')

    for module in (safetensors.torch, transformers.modeling_utils, export):
        for name in ("save_file", "safe_save_file"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, full)


def test_convert_refuses_a_non_empty_output_and_a_full_disk_keeps_the_previous(tmp_path: Path, capsys,
                                                                                monkeypatch) -> None:
    checkpoint = _rn50_checkpoint(tmp_path / "rn50.pt")
    output = tmp_path / "hf"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    argv = ["convert", "--checkpoint", str(checkpoint), "--arch", "RN50", "--output", str(output), "--no-verify"]
    code, _, err = _run(cli.main, argv, capsys)
    assert code == EXIT_BAD_INPUT and f"--output {output}: exists and is not empty" in _one_error_line(err)
    assert "--overwrite" in err and (output / "notes.txt").read_text() == "mine"
    assert cli.main([*argv, "--overwrite"]) == 0
    before = {path.name: path.stat().st_mtime_ns for path in output.iterdir()}
    assert "model.safetensors" in before and "notes.txt" not in before
    capsys.readouterr()
    _full_disk(monkeypatch)
    code, _, err = _run(cli.main, [*argv, "--overwrite"], capsys)
    line = _one_error_line(err)
    assert code == EXIT_BAD_INPUT and line.startswith(f"error: {output}: writing failed") and "MB free" in line
    assert f"it needs about {(output / 'model.safetensors').stat().st_size / 2**20:,.0f} MB" in line
    assert {path.name: path.stat().st_mtime_ns for path in output.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hf", "rn50.pt"]  # no partial folder left


def test_export_full_disk_keeps_the_previous_export(tiny_model_dir: Path, tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    output = tmp_path / "oc"
    argv = ["export", str(tiny_model_dir), "--to", "open_clip", "--output", str(output)]
    assert cli.main(argv) == 0
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    capsys.readouterr()
    _full_disk(monkeypatch)
    code, _, err = _run(cli.main, argv, capsys)
    assert code == EXIT_BAD_INPUT and f"error: {output}: writing failed" in _one_error_line(err)
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["oc"]


@pytest.mark.parametrize(("kind", "message"), [
    ("truncated_weights", "model.safetensors: the weights do not load (SafetensorError"),
    ("code_pickle", "pytorch_model.bin: the weights do not load (UnpicklingError"),
    ("config_not_an_object", "config.json: not a JSON object"),
    ("config_field_of_the_wrong_type", "config.json: not a valid model config"),
])
def test_export_of_a_bad_model_folder_is_one_line(tiny_model_dir: Path, tmp_path: Path, capsys, kind: str,
                                                  message: str) -> None:
    import os
    import pickle

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / kind))
    weights, config = folder / "model.safetensors", folder / "config.json"
    marker = tmp_path / "ran"
    if kind == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif kind == "code_pickle":
        class Payload:
            def __reduce__(self):
                return os.system, (f"touch {marker}",)

        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": Payload()}))
    elif kind == "config_not_an_object":
        config.write_text("[1, 2]")
    else:
        values = json.loads(config.read_text())
        values["vision_config"]["hidden_size"] = "wide"
        config.write_text(json.dumps(values))
    code, _, err = _run(cli.main, ["export", str(folder), "--to", "open_clip", "--output", str(tmp_path / "oc")],
                        capsys)
    assert code == EXIT_BAD_INPUT and message in _one_error_line(err)
    assert not marker.exists() and not (tmp_path / "oc").exists()


def test_convert_of_a_file_that_is_no_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.pt").write_text("hello, not a checkpoint\n")
    code, _, err = _run(cli.main, ["convert", "--checkpoint", str(tmp_path / "notes.pt"), "--arch", "RN50",
                                   "--output", str(tmp_path / "hf")], capsys)
    assert code == EXIT_BAD_INPUT and "notes.pt is truncated or not a PyTorch checkpoint" in _one_error_line(err)
    assert not (tmp_path / "hf").exists()


def _train(corpus: Path, output_dir: Path, *extra: str) -> int:
    from train import main

    return main(["--config", str(TINY_TRAIN), "--dataset", str(corpus), "--output_dir", str(output_dir),
                 "--batch_size", "8", "--max_steps", "4", "--checkpointing_steps", "2", "--warmup_steps", "1",
                 "--logging_steps", "1", "--report_to", "none", *extra])


def test_train_final_save_is_whole_and_a_resume_logs_each_step_once(shared_data: Path, tmp_path: Path, capsys,
                                                                     monkeypatch) -> None:
    import transformers.modeling_utils
    from safetensors import SafetensorError
    from training_corpus import build_scene_corpus

    monkeypatch.syspath_prepend(str(REPO_ROOT / "training_scripts"))
    build_scene_corpus(shared_data, tmp_path / "corpus", per_class=2, size=64)
    run = tmp_path / "run"
    assert _train(tmp_path / "corpus", run) == 0
    log = (run / "train_log.jsonl").read_text().splitlines()
    final = {path.name: path.read_bytes() for path in (run / "final").iterdir()}
    shutil.rmtree(run / "checkpoints" / "step-0000004")  # killed after step 4 was logged, before its checkpoint

    def full(tensors, filename, *args, **kwargs) -> None:
        Path(filename).write_bytes(b"\0" * 64)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)  # save_pretrained's writer only
    capsys.readouterr()
    code, _, err = _run(lambda argv: _train(tmp_path / "corpus", run, *argv), ["--resume", "latest"], capsys)
    line = _one_error_line(err)
    assert code == EXIT_BAD_INPUT and line.startswith(f"error: {run / 'final'}: writing failed") and "MB free" in line
    assert {path.name: path.read_bytes() for path in (run / "final").iterdir()} == final  # the previous final/
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    assert sorted(path.name for path in run.iterdir() if path.name.startswith(".")) == []
    assert (run / "train_log.jsonl").read_text().splitlines() == log  # steps 3 and 4 redone, logged once, the same


def test_train_on_a_corpus_without_rows_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    import datasets

    monkeypatch.syspath_prepend(str(REPO_ROOT / "training_scripts"))
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.List(datasets.Value("string"))})
    (tmp_path / "corpus").mkdir()
    datasets.Dataset.from_dict({"image": [], "captions": []}, features=features).to_parquet(
        str(tmp_path / "corpus" / "train-00000-of-00001.parquet"))
    code, _, err = _run(lambda argv: _train(tmp_path / "corpus", tmp_path / "run"), [], capsys)
    assert code == EXIT_BAD_INPUT and f"--dataset {tmp_path / 'corpus'}: " in _one_error_line(err)
    assert not (tmp_path / "run" / "final").exists()


def test_build_corpus_records_a_non_utf8_file_name_and_goes_on(tmp_path: Path, capsys) -> None:
    import os

    from dataset_builders.build_corpus import main

    root = _dota(tmp_path / "dota", {"a": "4 4 40 4 40 40 4 40 plane 0\n"})
    name = os.fsdecode(b"b\xff")
    shutil.copy(BAD / "rgba.png", root / "images" / f"{name}.png")
    (root / "labelTxt" / f"{name}.txt").write_text("4 4 40 4 40 40 4 40 ship 0\n")
    code, out, err = _run(main, ["--source", f"dota={root}", "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert json.loads(out) == {"read": 2, "kept": 1, "skipped": 1, "duplicates": 0, "excluded": 0}
    report = json.loads((tmp_path / "out" / "build_report.json").read_text(encoding="utf-8"))
    (skipped,) = report["sources"]["dota"]["skipped"]
    assert skipped["path"].endswith("b\\udcff.png") and "not valid UTF-8" in skipped["reason"]


@pytest.mark.parametrize("kind", ["images", "scenes"])
def test_index_records_a_non_utf8_file_name_and_goes_on(tiny_model_dir: Path, scenes: dict[str, Path],
                                                         shared_data: Path, tmp_path: Path, capsys, kind: str) -> None:
    folder = tmp_path / "source"
    folder.mkdir()
    if kind == "images":
        jpegs = sorted((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))[:2]
        for jpeg in jpegs:
            shutil.copy(jpeg, folder)
        good, data = [jpeg.name for jpeg in jpegs], jpegs[0].read_bytes()
        extra = []
    else:
        good, data = ["scene.tif"], scenes["geotiff"].read_bytes()
        shutil.copy(scenes["geotiff"], folder)
        extra = ["--window", "32"]
    suffix = ".jpg" if kind == "images" else ".tif"
    with open(os.path.join(os.fsencode(folder), b"bad\xff" + suffix.encode()), "wb") as handle:
        handle.write(data)
    argv = ["index", "--model", str(tiny_model_dir), "--source", str(folder), "--output", str(tmp_path / "idx"),
            "--format", "json", *extra]
    for run in range(2):  # a re-run meets the same file
        code, out, err = _run(cli.main, argv, capsys)
        assert code == 0, err
        report = json.loads(out)
        (failure,) = report["failures"]
        assert failure["path"].endswith("bad\\udcff" + suffix) and "not valid UTF-8" in failure["reason"]
        assert report["total"] > 0 and (report["added"] > 0) == (run == 0)
    failures = json.loads((tmp_path / "idx" / "failures.json").read_text(encoding="utf-8"))
    assert [item["path"] for item in failures] == [failure["path"]]
    from rclip_hf.inference.index import EmbeddingIndex

    paths = {Path(path).name for path in EmbeddingIndex.open(tmp_path / "idx").column("path")}
    assert paths == set(good)


@pytest.mark.parametrize("damage", ["truncated_data", "garbled_manifest", "missing_data"])
def test_a_damaged_index_file_is_one_line_naming_the_index_and_never_resumed(
        tiny_model_dir: Path, shared_data: Path, tmp_path: Path, capsys, damage: str) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for jpeg in sorted((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))[:2]:
        shutil.copy(jpeg, source)
    index = tmp_path / "idx"
    build = ["index", "--model", str(tiny_model_dir), "--source", str(source), "--output", str(index)]
    assert _run(cli.main, build, capsys)[0] == 0
    (data,) = (index / "items.lance" / "data").glob("*.lance")
    latest = min((index / "items.lance" / "_versions").glob("*.manifest"))  # named u64::MAX - version
    if damage == "truncated_data":
        os.truncate(data, data.stat().st_size // 3)
    elif damage == "garbled_manifest":
        latest.write_bytes(os.urandom(64))
    else:
        data.unlink()
    shutil.copy(BAD / "rgba.png", source / "new.png")  # a resume that would add an item
    for argv in (build, ["search", "--model", str(tiny_model_dir), "--index", str(index), "--text", "grass"],
                 ["index", "--output", str(index), "--verify"]):
        code, out, err = _run(cli.main, argv, capsys)
        line = _one_error_line(err)
        assert code == EXIT_BAD_INPUT and line.startswith(f"error: {index}: the index is damaged"), (argv, err)
        if damage == "missing_data":
            assert data.name in line
        assert "added" not in out


def test_a_corpus_that_keeps_no_image_is_an_error_with_its_report(tmp_path: Path, capsys) -> None:
    from dataset_builders.build_corpus import main

    root = _dota(tmp_path / "dota", {"a": "4 4 40 4 40 40 4 40 plane 0\n"})
    shutil.copy(BAD / "corrupt.jpg", root / "images" / "a.png")
    code, _, err = _run(main, ["--source", f"dota={root}", "--output", str(tmp_path / "out")], capsys)
    line = _one_error_line(err)
    assert code == EXIT_BAD_INPUT and f"--output {tmp_path / 'out'}: no image was kept (read 1, skipped 1" in line
    assert "a.png: cannot read image" in line and f"see {tmp_path / 'out.build_report.json'}" in line
    report = json.loads((tmp_path / "out.build_report.json").read_text())
    assert report["totals"] == {"read": 1, "kept": 0, "skipped": 1, "duplicates": 0, "excluded": 0}
    assert not (tmp_path / "out").exists()


def test_builders_accept_max_pixels_as_their_skip_message_says(tmp_path: Path, capsys) -> None:
    from dataset_builders.build_corpus import main as build_corpus
    from dataset_builders.build_remotecount import main as build_remotecount

    root = _dota(tmp_path / "dota", {"a": "4 4 40 4 40 40 4 40 plane 0\n", "b": "4 4 40 4 40 40 4 40 ship 0\n"})
    Image.open(BAD / "good.png").resize((30, 30)).save(root / "images" / "b.png")
    code, _, err = _run(build_corpus, ["--source", f"dota={root}", "--output", str(tmp_path / "out"),
                                       "--max-pixels", "1000"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    (skipped,) = report["sources"]["dota"]["skipped"]
    assert skipped["path"].endswith("a.png") and "over the limit of 1,000" in skipped["reason"]
    assert "--max-pixels" in skipped["reason"] and Image.MAX_IMAGE_PIXELS != 1000  # for that build only
    release = tmp_path / "release"
    (release / "images").mkdir(parents=True)
    shutil.copy(root / "images" / "a.png", release / "images" / "a.png")
    (release / "counts.jsonl").write_text(json.dumps({"image": "a.png", "caption": "There is one ship."}) + "\n")
    code, _, err = _run(build_remotecount, ["--release", str(release), "--output", str(tmp_path / "rc"),
                                            "--max_pixels", "1000"], capsys)
    report = json.loads((tmp_path / "rc" / "build_report.json").read_text())
    assert code == 0, err
    assert "over the limit of 1,000" in report["skipped"][0]["reason"]


def test_exclude_near_a_damaged_dataset_folder_is_one_line(tmp_path: Path, capsys) -> None:
    from dataset_builders.build_corpus import main

    root = _dota(tmp_path / "dota", {"a": "4 4 40 4 40 40 4 40 plane 0\n"})
    (tmp_path / "bench" / "data").mkdir(parents=True)
    (tmp_path / "bench" / "data" / "test-00000-of-00001.parquet").write_bytes(b"PAR1 this is not parquet")
    code, _, err = _run(main, ["--source", f"dota={root}", "--output", str(tmp_path / "out"), "--exclude-near",
                               str(tmp_path / "bench")], capsys)
    assert code == EXIT_BAD_INPUT
    assert f"--exclude-near {tmp_path / 'bench'}: not a readable dataset folder" in _one_error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("builder", ["corpus", "remotecount"])
def test_a_rebuild_never_deletes_files_the_build_did_not_write(tmp_path: Path, capsys, builder: str) -> None:
    from dataset_builders.build_corpus import main as build_corpus
    from dataset_builders.build_remotecount import main as build_remotecount

    root = _dota(tmp_path / "dota", {"a": "4 4 40 4 40 40 4 40 plane 0\n"})
    output = tmp_path / "out"
    if builder == "corpus":
        main, argv = build_corpus, ["--source", f"dota={root}", "--output", str(output)]
    else:
        release = tmp_path / "release"
        (release / "images").mkdir(parents=True)
        shutil.copy(BAD / "good.png", release / "images" / "a.png")
        (release / "counts.jsonl").write_text(json.dumps({"image": "a.png", "caption": "There is one ship."}) + "\n")
        main, argv = build_remotecount, ["--release", str(release), "--output", str(output)]
    assert main(argv) == 0
    capsys.readouterr()
    (output / "data" / "shard-mine.tmp").write_text("the user's")
    (output / "notes.tmp").write_text("the user's too")
    code, _, err = _run(main, [*argv, "--seed", "5"] if builder == "corpus" else argv, capsys)
    assert code == EXIT_BAD_INPUT
    assert f"{output} holds data/shard-mine.tmp and 1 more, which its build did not write" in _one_error_line(err)
    assert (output / "data" / "shard-mine.tmp").read_text() == "the user's"
    assert (output / "notes.tmp").read_text() == "the user's too"
    (output / "data" / "shard-mine.tmp").unlink()
    (output / "notes.tmp").unlink()
    assert main([*argv, "--seed", "5"] if builder == "corpus" else argv) == 0  # a folder of its own files is rebuilt


def _page_thumbnails(page: Path) -> list[np.ndarray]:
    import base64
    import io
    import re

    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
            for data in re.findall(r"class='thumbnail'[^>]*src='data:image/jpeg;base64,([^']+)'", page.read_text())]


def test_the_html_page_shows_only_the_index_own_images_found_relative_to_where_it_was_built(
        tiny_model_dir: Path, bad_images: dict[str, Path], tmp_path: Path, capsys, monkeypatch, caplog) -> None:
    from rclip_hf.inference.index import EmbeddingIndex
    from rclip_hf.inference.results_page import write_results_page

    (tmp_path / "work" / "tiles").mkdir(parents=True)
    for name in ("a", "b"):
        shutil.copy(bad_images["png_renamed_jpg"], tmp_path / "work" / "tiles" / f"{name}.png")
    monkeypatch.chdir(tmp_path / "work")
    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", "tiles", "--output", "idx"]) == 0
    monkeypatch.chdir(tmp_path)  # the stored paths (tiles/a.png) are relative to work/, beside the index
    page = tmp_path / "hits.html"
    code, _, err = _run(cli.main, ["search", "--model", str(tiny_model_dir), "--index", "work/idx", "--text", "x",
                                   "--html", str(page)], capsys)
    assert code == 0, err
    thumbnails = _page_thumbnails(page)
    assert len(thumbnails) == 2 and all(thumbnail.std() > 10 for thumbnail in thumbnails)  # the tiles, not grey

    index = EmbeddingIndex.open(tmp_path / "work" / "idx")
    secret = Path(shutil.copy(bad_images["cmyk_jpeg"], tmp_path / "secret.jpg"))
    received = [{"rank": 1, "id": "a.png", "path": str(secret), "row": -1, "score": 0.5},
                {"rank": 2, "id": "b.png", "path": "tiles/b.png", "row": -1, "score": 0.4}]
    write_results_page(page, [("x", received)], index)
    assert len(_page_thumbnails(page)) == 1 and "image not shown: not found as indexed" in page.read_text()
    assert "1 image(s) of the index not shown" in caplog.text and str(secret) in caplog.text


# ----- received indexes: nothing read, written or deleted outside the index folder ---------------------------------
@pytest.fixture(scope="module")
def small_index(tiny_model_dir: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real index of two images (copy it before changing it); its source folder is `<index>/../source`."""
    root = tmp_path_factory.mktemp("received")
    (root / "source").mkdir()
    for jpeg in sorted((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))[:2]:
        shutil.copy(jpeg, root / "source")
    argv = ["index", "--model", str(tiny_model_dir), "--source", str(root / "source"), "--output", str(root / "idx")]
    assert cli.main(argv) == 0
    return root / "idx"


def _received(small_index: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(index, its source, a folder outside it holding the user's files), copies in `tmp_path`."""
    index, source, outside = tmp_path / "idx", tmp_path / "source", tmp_path / "outside"
    shutil.copytree(small_index, index, symlinks=True)
    shutil.copytree(small_index.parent / "source", source)
    outside.mkdir()
    return index, source, outside


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and modification time."""
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _commands(model: Path, index: Path, source: Path, tmp_path: Path) -> list[list[str]]:
    """search, a resume that would add and prune, --verify and export: each opens the index first."""
    return [["search", "--model", str(model), "--index", str(index), "--text", "grass"],
            ["index", "--model", str(model), "--source", str(source), "--output", str(index), "--prune"],
            ["index", "--output", str(index), "--verify"],
            ["index", "export", str(index), "--output", str(tmp_path / "items.parquet")]]


@pytest.mark.parametrize("kind", ["relative", "absolute", "base_path"])
def test_a_received_table_naming_a_file_outside_the_index_is_refused(tiny_model_dir: Path, small_index: Path,
                                                                    tmp_path: Path, capsys, kind: str) -> None:
    import copy

    import lance
    from lance.fragment import DataFile

    index, source, outside = _received(small_index, tmp_path)
    table = index / "items.lance"
    dataset = lance.dataset(table)
    fragment = copy.deepcopy(dataset.get_fragments()[0].metadata)
    (real,) = fragment.files
    stolen = outside / "data" / real.path  # a valid data file, outside: a read of it would succeed
    stolen.parent.mkdir()
    shutil.copy(table / "data" / real.path, stolen)
    base_id, name = None, {"relative": f"../../../outside/data/{real.path}", "absolute": str(stolen),
                           "base_path": real.path}[kind]
    if kind == "base_path":
        dataset.add_bases([lance.DatasetBasePath(str(outside), name="elsewhere", is_dataset_root=True, id=7)])
        dataset, base_id = lance.dataset(table), 7
    fragment.files = [DataFile(name, real.fields, real.column_indices, real.file_major_version,
                               real.file_minor_version, real.file_size_bytes, base_id=base_id)]
    lance.LanceDataset.commit(str(table), lance.LanceOperation.Append([fragment]), read_version=dataset.version)
    (source / "new.png").write_bytes((BAD / "rgba.png").read_bytes())  # a resume would write
    before, outside_files = _tree(index), _tree(outside)
    for argv in _commands(tiny_model_dir, index, source, tmp_path):
        code, _, err = _run(cli.main, argv, capsys)
        line = _one_error_line(err)
        assert code == EXIT_BAD_INPUT and line.startswith(f"error: {index}: table items.lance names "), (argv, err)
        assert (str(outside) if kind == "base_path" else repr(name)) in line, line
    assert _tree(outside) == outside_files and _tree(index) == before  # nothing written, nothing deleted
    assert not (tmp_path / "items.parquet").exists()


def test_a_received_extra_table_naming_storage_outside_the_index_is_refused(small_index: Path, tmp_path: Path) -> None:
    """A table kept beside the items (explore's labels) is checked as the index's own are, when it is opened."""
    import lance
    import pyarrow as pa

    from rclip_hf.inference.index import EmbeddingIndex

    index, _, outside = _received(small_index, tmp_path)
    schema = pa.schema([pa.field("id", pa.string()), pa.field("label", pa.string())])
    EmbeddingIndex.open(index).open_table("labels", schema).add(pa.table({"id": ["a"], "label": ["positive"]}))
    assert EmbeddingIndex.open(index).open_table("labels").count_rows() == 1
    lance.dataset(index / "labels.lance").add_bases([lance.DatasetBasePath(str(outside), name="elsewhere",
                                                                           is_dataset_root=True, id=7)])
    with pytest.raises(UserError, match="table labels.lance names .* storage outside the table"):
        EmbeddingIndex.open(index).open_table("labels")


@pytest.mark.parametrize("link", ["items.lance", "items.lance/data", "items.lance/_versions",
                                  "items.lance/_transactions", "items.lance/_deletions", "items.lance/_indices",
                                  "scenes.lance/data", "failures.json"])
def test_a_received_index_holding_a_symlink_is_refused_before_anything_is_written(
        tiny_model_dir: Path, small_index: Path, tmp_path: Path, capsys, link: str) -> None:
    import lance

    index, source, outside = _received(small_index, tmp_path)
    # Lance's clean-up of old versions (set in the received manifest) deletes the files it does not list in the
    # table's folders: through a linked folder, the user's files there.
    lance.dataset(index / "items.lance").update_config({"lance.auto_cleanup.interval": "1",
                                                       "lance.auto_cleanup.older_than": "0s"})
    target = outside / Path(link).name
    if (index / link).exists():
        shutil.move(index / link, target)
    elif link != "failures.json":
        target.mkdir()
    if target.is_dir():
        (target / "victim.lance").write_text("the user's file")
        os.utime(target / "victim.lance", (1e9, 1e9))  # old: due for a clean-up
    else:
        target.write_text("the user's file")
    (index / link).symlink_to(target)
    (source / "new.png").write_bytes((BAD / "rgba.png").read_bytes())  # a resume would write
    outside_files = _tree(outside)
    for argv in _commands(tiny_model_dir, index, source, tmp_path)[:2]:
        code, _, err = _run(cli.main, argv, capsys)
        line = _one_error_line(err)
        assert code == EXIT_BAD_INPUT and line.startswith(f"error: {index}: {link} is a symlink"), (argv, err)
    assert _tree(outside) == outside_files


@pytest.mark.parametrize("output", ["export", "html", "parquet", "geojson", "csv", "heatmap"])
def test_index_export_and_search_outputs_never_write_through_a_symlink(small_index: Path, tiny_model_dir: Path,
                                                                       tmp_path: Path, capsys, output: str) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's file")
    path = tmp_path / {"html": "page.html", "geojson": "hits.geojson", "csv": "hits.csv",
                       "heatmap": "maps/heatmap.json"}.get(output, "items.parquet")
    path.parent.mkdir(exist_ok=True)
    path.symlink_to(notes)
    search = ["search", "--model", str(tiny_model_dir), "--index", str(small_index), "--text", "grass"]
    image = min((small_index.parent / "source").glob("*.jpg"))
    argv = {"export": ["index", "export", str(small_index), "--output", str(path)],
            "html": [*search, "--html", str(path)],
            "parquet": [*search, "--format", "parquet", "--output", str(path)],
            "geojson": [*search, "--format", "geojson", "--output", str(path)],
            "csv": [*search, "--format", "csv", "--output", str(path)],
            "heatmap": ["heatmap", "--model", str(tiny_model_dir), "--image", str(image), "--queries", "grass",
                        "--window", "32", "--output_dir", str(path.parent)]}[output]
    code, _, err = _run(cli.main, argv, capsys)
    assert code == EXIT_BAD_INPUT and _one_error_line(err) == (
        f"error: {path}: a symlink; nothing is written through one (remove the link)")
    assert notes.read_text() == "the user's file"
    path.unlink()
    assert _run(cli.main, argv, capsys)[0] == 0 and path.is_file() and not path.is_symlink()


def test_index_migrate_reads_only_its_shards_and_writes_only_a_new_index(tmp_path: Path, capsys) -> None:
    old = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "data" / "old_index" / "images.index", old)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's file")
    code, _, err = _run(cli.main, ["index", "migrate", str(old), str(tmp_path / "mine")], capsys)
    assert code == EXIT_BAD_INPUT and _one_error_line(err).startswith(f"error: {tmp_path / 'mine'}: an existing folder")
    assert [path.name for path in (tmp_path / "mine").iterdir()] == ["notes.txt"]

    manifest = json.loads((old / "index.json").read_text())
    (shard,) = manifest["shards"]
    for name in (f"../elsewhere/{shard['name']}", "linked"):
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        for suffix in (".safetensors", ".parquet"):
            shutil.copy(old / f"{shard['name']}{suffix}", tmp_path / "elsewhere" / f"{shard['name']}{suffix}")
        if name == "linked":
            name = "shard-linked"
            for suffix in (".safetensors", ".parquet"):
                (old / f"{name}{suffix}").symlink_to(tmp_path / "elsewhere" / f"{shard['name']}{suffix}")
        (old / "index.json").write_text(json.dumps({**manifest, "shards": [{**shard, "name": name}]}))
        code, _, err = _run(cli.main, ["index", "migrate", str(old), str(tmp_path / "new")], capsys)
        assert code == EXIT_BAD_INPUT and _one_error_line(err) == (
            f"error: {old / 'index.json'}: names the shard {name!r}, not a shard file of its folder (a received index "
            "is never read outside its folder)")
        assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("export", ["found.geojson", "found.pixel.geojson", "found.parquet", "labels.parquet"])
def test_explore_exports_never_write_through_a_symlink(small_index: Path, tiny_model_dir: Path, tmp_path: Path,
                                                       export: str) -> None:
    from fastapi.testclient import TestClient

    from rclip_hf.explore import create_app

    index = tmp_path / "idx"
    shutil.copytree(small_index, index)
    client = TestClient(create_app(index, tiny_model_dir, token="t" * 20))
    client.headers["Authorization"] = "token " + "t" * 20
    assert client.post("/api/search", json={"text": "grass", "k": 2}).status_code == 200
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's file")
    (tmp_path / export).symlink_to(notes)
    path = "found.geojson" if export == "found.pixel.geojson" else export  # the pixel hits' file beside it
    file_format = {"found.geojson": "geojson", "found.parquet": "parquet", "labels.parquet": "labels"}[path]
    refused = client.post("/api/export", json={"path": str(tmp_path / path), "format": file_format, "source": "hits"})
    assert refused.status_code == 400 and refused.json()["detail"] == (
        f"{tmp_path / export}: a symlink; nothing is written through one (remove the link)")
    assert notes.read_text() == "the user's file"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["idx", "notes.txt", export])  # none half
