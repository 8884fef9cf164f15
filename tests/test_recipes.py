"""The YAML recipes of `training_scripts/configs`: the paper's starting points named as the docs name them, what
they name accepted by `convert` and `train.py`, and precision left to the launcher."""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import pytest

from rclip_hf.convert import ARCHS, parse_args, resolve_checkpoint
from training_scripts.training.arguments import parse_arguments
from training_scripts.training.loop import warn_on_precision_conflict
from training_scripts.training.model import check_model_arguments

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "training_scripts" / "configs"
#: The docs pages that name the recipes' commands: the train commands and the conversion of the RN50 starting point.
DOCS = (REPO_ROOT / "docs" / "training.md").read_text() + (REPO_ROOT / "docs" / "models.md").read_text()
#: The paper's recipes: (starting point, learning rate, global batch, output folder of the docs' train command).
PAPER = {"rn50.yaml": ("openai-rn50", 7e-5, 256, "runs/rn50"),
         "vit-b-32.yaml": ("openai/clip-vit-base-patch32", 4e-5, 256, "runs/vit-b-32"),
         "vit-l-14.yaml": ("openai/clip-vit-large-patch14", 1e-4, 28, "runs/vit-l-14")}


def _commented_commands(config: Path) -> list[list[str]]:
    """The shell commands in a recipe's comments (continuation lines joined)."""
    text = "\n".join(line[1:] for line in config.read_text().splitlines() if line.startswith("#"))
    text = text.replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in text.splitlines()
            if line.strip().startswith(("python -m rclip_hf.convert", "accelerate launch"))]


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_every_recipe_parses_and_leaves_precision_to_the_launcher(name):
    model_args, _, args = parse_arguments(["--config", str(CONFIGS / name)])
    assert args.mixed_precision is None  # accelerate launch --mixed_precision / its config file decide
    if name in PAPER:
        start, learning_rate, batch_size, _ = PAPER[name]
        assert model_args.model_name_or_path == start
        assert (args.learning_rate, args.batch_size, args.max_steps) == (learning_rate, batch_size, 108_215)
        assert args.warmup_steps > 0
    else:
        check_model_arguments(model_args)  # tiny: an inline random model


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_commands_are_accepted_by_convert_and_train(name, tmp_path):
    start, _, _, output_dir = PAPER[name]
    commands = _commented_commands(CONFIGS / name)
    converts = [command[3:] for command in commands if command[:3] == ["python", "-m", "rclip_hf.convert"]]
    launches = [command for command in commands if command[:2] == ["accelerate", "launch"]]
    assert len(launches) == 1
    train_argv = launches[0][launches[0].index("training_scripts/train.py") + 1:]
    _, _, args = parse_arguments([token.replace("CORPUS_DIR", "corpus") for token in train_argv])
    assert args.output_dir == output_dir and output_dir in DOCS  # the docs' output paths
    assert f"--config training_scripts/configs/{name}" in " ".join(train_argv)
    if "/" in start:  # a transformers Hub id, loaded as it is: no conversion
        assert not converts and start in DOCS
        model_args, _, _ = parse_arguments(["--config", str(CONFIGS / name)])
        check_model_arguments(model_args)
        return
    (convert,) = converts
    convert_args = parse_args(convert)
    assert convert_args.arch in ARCHS and convert_args.output == start
    assert f"--checkpoint {convert_args.checkpoint} --arch {convert_args.arch} --output {start}" in DOCS
    fetched = []
    resolve_checkpoint(convert_args.checkpoint, download=lambda **kwargs: fetched.append(kwargs) or "weights")
    assert fetched == [{"repo_id": "timm/resnet50_clip.openai", "filename": "open_clip_model.safetensors"}]
    (tmp_path / start).mkdir()
    (tmp_path / start / "config.json").write_text("{}")  # what the convert command writes, as train.py checks it
    model_args, _, _ = parse_arguments(["--config", str(CONFIGS / name), "--model_name_or_path",
                                        str(tmp_path / start)])
    check_model_arguments(model_args)


def test_an_explicit_precision_other_than_the_launchers_is_warned_about(monkeypatch, caplog):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with caplog.at_level(logging.WARNING, logger="training_scripts.training.loop"):
        assert warn_on_precision_conflict(None) is None
        assert warn_on_precision_conflict("bf16") is None
        message = warn_on_precision_conflict("no")
    assert re.search(r"--mixed_precision no .* launcher's mixed precision bf16", message)
    assert [record.getMessage() for record in caplog.records] == [message]
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    assert warn_on_precision_conflict("fp16") is None
