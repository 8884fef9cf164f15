"""Progress bars obey the HF and tqdm switches and know their total; one precision vocabulary (`--dtype` on the
inference commands and eval, the same names for training's `--mixed_precision`); delegated commands' usage lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

from rclip_hf import cli, embeddings, loading
from rclip_hf.errors import UserError
from rclip_hf.evaluation.runner import EvalArguments, run_evaluation
from rclip_hf.inference import classify
from rclip_hf.precision import accelerate_mixed_precision, precision_name, torch_dtype
from rclip_hf.progress import progress_bar

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir


@pytest.mark.parametrize("switch", ["HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"])
def test_either_switch_turns_every_bar_off(switch: str, monkeypatch) -> None:
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    with progress_bar(range(3), disable=False) as bar:
        assert not bar.disable
    monkeypatch.setenv(switch, "1")
    with progress_bar(range(3), disable=False) as bar:  # the caller asked for a bar; the user said no
        assert bar.disable


def test_huggingface_hub_disable_progress_bars_is_obeyed(monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    disable_progress_bars()
    try:
        with progress_bar(range(3)) as bar:
            assert bar.disable
    finally:
        enable_progress_bars()


def test_classify_bar_has_a_total(tiny_model_dir: Path, shared_data: Path, monkeypatch) -> None:
    bars = []

    def recording_bar(*args, **kwargs):
        bars.append(kwargs)
        return progress_bar(*args, **kwargs)

    monkeypatch.setattr(embeddings, "progress_bar", recording_bar)
    images = sorted((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))[:3]
    classify(images, ["grass", "parking lot"], model=tiny_model_dir, batch_size=1)
    image_bars = [bar for bar in bars if bar["desc"] == "encode images"]
    assert [bar["total"] for bar in image_bars] == [3]


def test_dtype_loads_the_weights_in_that_precision(tiny_model_dir: Path, shared_data: Path, tmp_path: Path,
                                                   monkeypatch, capsys) -> None:
    image = shutil.copy(shared_data / "remoteclip" / "airport.jpg", tmp_path / "airport.jpg")
    loaded = []

    def recording_load(*args, **kwargs):
        model, processor = real_load(*args, **kwargs)
        loaded.append(next(model.parameters()).dtype)
        return model, processor

    real_load = loading.load_model
    monkeypatch.setattr(loading, "load_model", recording_load)
    scores = {}
    for dtype in ("float32", "bfloat16"):
        assert cli.main(["classify", "--model", str(tiny_model_dir), "--images", str(image), "--labels", "airport",
                         "grass", "--dtype", dtype, "--format", "json"]) == 0
        scores[dtype] = [row["score"] for row in json.loads(capsys.readouterr().out)]
    assert loaded == [torch.float32, torch.bfloat16]
    assert scores["bfloat16"] == pytest.approx(scores["float32"], abs=0.05)
    assert cli.main(["count", "--model", str(tiny_model_dir), "--image", str(image), "--object", "plane", "--dtype",
                     "float8"]) == 2
    assert "--dtype" in capsys.readouterr().err


def test_one_precision_vocabulary() -> None:
    assert [precision_name(name) for name in ("float32", "no", "bf16", "bfloat16", "fp16")] == [
        "float32", "float32", "bfloat16", "bfloat16", "float16"]
    assert [accelerate_mixed_precision(name) for name in ("float32", "bfloat16", "float16", "bf16")] == [
        "no", "bf16", "fp16", "bf16"]
    assert torch_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(UserError, match="--mixed_precision fp8: choose one of float32, bfloat16, float16"):
        accelerate_mixed_precision("fp8")


def test_eval_takes_dtype_and_keeps_bf16_as_a_deprecated_alias(tmp_path: Path) -> None:
    args = EvalArguments(model=str(tmp_path / "missing"), benchmarks="ucm", data_dir=str(tmp_path), bf16=True)
    with pytest.warns(FutureWarning, match="--bf16 is deprecated: use --dtype bfloat16"), \
            pytest.raises(FileNotFoundError):  # the model is looked for after the precision is settled
        run_evaluation(args)
    assert args.dtype == "bfloat16"
    args = EvalArguments(model=str(tmp_path / "missing"), benchmarks="ucm", data_dir=str(tmp_path), dtype="half")
    with pytest.raises(UserError, match="--dtype half: choose one of float32, bfloat16, float16"):
        run_evaluation(args)


@pytest.mark.parametrize("name", ["convert", "export", "eval", "push"])
def test_delegated_commands_name_themselves(name: str, capsys) -> None:
    assert cli.main([name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: rclip-hf {name} ")
