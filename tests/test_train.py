"""training_scripts/train.py: argument parsing, early config errors, learning on a real corpus, exact resume."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_corpus import TEMPLATES, build_scene_corpus

REPO_ROOT = Path(__file__).resolve().parents[1]
from rclip_hf.errors import UserError
from training_scripts.training.arguments import parse_arguments
from training_scripts.training.augment import TrainAugmentation
from training_scripts.training.checkpoint import list_checkpoints, resolve_resume
from training_scripts.training.data import (
    EpochShuffleSampler,
    PixelNormalizer,
    build_train_dataloader,
    choose_caption,
    load_caption_corpus,
)
from training_scripts.training.loop import per_device_batch_size, run, training_step
from training_scripts.training.optim import build_optimizer_and_scheduler, parameter_groups

TRAIN_SCRIPT = REPO_ROOT / "training_scripts" / "train.py"
TINY = REPO_ROOT / "training_scripts" / "configs" / "tiny.yaml"
STEPS = 120
CHECKPOINT_EVERY = 40


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> tuple[Path, list[str]]:
    """RSSCN7 (7 classes x 50 images, 72 px) as a caption corpus; returns its folder and the class names."""
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_scene_corpus(shared_data, folder)


def _train_command(corpus_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN_SCRIPT), "--config", str(TINY), "--dataset", str(corpus_dir),
            "--output_dir", str(output_dir), "--max_steps", str(STEPS), "--checkpointing_steps",
            str(CHECKPOINT_EVERY), "--logging_steps", "1", "--report_to", "none", "--seed", "3",
            "--eval_samples", "16", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2", "ACCELERATE_USE_CPU": "true"}


def _losses(output_dir: Path) -> dict[int, float]:
    """Step -> loss from train_log.jsonl (a resumed run's later lines win)."""
    records = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    return {record["step"]: record["loss"] for record in records if "loss" in record}


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory) -> Path:
    """A full 120-step single-process run of tiny.yaml; returns its output folder."""
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run(_train_command(corpus[0], output_dir), capture_output=True, text=True, env=_env(),
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return output_dir


# --- arguments -----------------------------------------------------------------------------------------------


def test_command_line_overrides_yaml(tmp_path):
    model_args, data_args, args = parse_arguments(
        ["--config", str(TINY), "--dataset", "corpus_dir", "--max_steps", "7", "--seed", "5", "--output_dir", "o"])
    assert (args.max_steps, args.seed, args.output_dir, data_args.dataset) == (7, 5, "o", "corpus_dir")
    assert args.batch_size == 32 and model_args.model_config["vision_config"]["image_size"] == 64  # from the YAML


def test_unknown_yaml_key_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("max_steps: 3\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown key\(s\) \['learning_rte'\]"):
        parse_arguments(["--config", str(config)])


# --- pieces ---------------------------------------------------------------------------------------------------


def test_per_device_batch_size_divides_exactly():
    assert per_device_batch_size(256, 4, 2) == 32
    with pytest.raises(ValueError, match=r"--batch_size 30 is not divisible by num_processes \(4\) x "
                                         r"gradient_accumulation_steps \(2\) = 8"):
        per_device_batch_size(30, 4, 2)


def test_crop_box_stays_inside_and_respects_the_scale():
    augment = TrainAugmentation(size=8, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    left, top, width, height = augment.crop_box(100, 100, np.random.default_rng(0))
    assert (width, height) == (50, 50) and 0 <= left <= 50 and 0 <= top <= 50


def test_bad_augmentation_values_fail():
    with pytest.raises(ValueError, match=r"crop_scale .* got \(0.0, 1.0\)"):
        TrainAugmentation(size=8, scale=(0.0, 1.0))


def test_sampler_is_a_seeded_permutation_per_epoch():
    sampler = EpochShuffleSampler(5, seed=1)
    first = list(sampler)
    assert sorted(index for index, _ in first) == [0, 1, 2, 3, 4] and {epoch for _, epoch in first} == {0}
    assert first == list(EpochShuffleSampler(5, seed=1))
    sampler.set_epoch(1)
    second = list(sampler)
    assert {epoch for _, epoch in second} == {1} and [i for i, _ in second] != [i for i, _ in first]


def test_caption_choice_uses_every_caption_and_rejects_empty():
    captions = ["a", "b", "c"]
    assert {choose_caption(captions, np.random.default_rng(seed), "x") for seed in range(30)} == set(captions)
    with pytest.raises(ValueError, match="sample 4: `captions` is empty"):
        choose_caption([], np.random.default_rng(0), "sample 4")


def test_no_weight_decay_on_biases_norms_embeddings_and_temperature():
    from training_scripts.training.model import ContrastiveModule, build_model_and_processor

    model_args, _, _ = parse_arguments(["--config", str(TINY)])
    module = ContrastiveModule(build_model_and_processor(model_args)[0])
    decayed, plain = parameter_groups(module, 0.1)
    names = {id(p): name for name, p in module.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert "model.logit_scale" in plain_names and "model.text_model.embeddings.token_embedding.weight" in plain_names
    assert "model.vision_model.post_layernorm.weight" in plain_names
    assert "model.text_projection.weight" in decayed_names
    assert not any(name.endswith("bias") for name in decayed_names)
    assert (decayed["weight_decay"], plain["weight_decay"]) == (0.1, 0.0)


def test_fused_adamw_steps_equal_the_loop_implementation():
    from training_scripts.training.model import ContrastiveModule, build_model_and_processor

    model_args, _, train_args = parse_arguments(["--config", str(TINY), "--weight_decay", "0.1"])
    torch.manual_seed(0)
    fused_module = ContrastiveModule(build_model_and_processor(model_args)[0])
    loop_module, initial = copy.deepcopy(fused_module), copy.deepcopy(fused_module)
    fused, _ = build_optimizer_and_scheduler(fused_module, train_args)
    assert all(group["fused"] for group in fused.param_groups)
    for group in fused.param_groups:  # the schedule starts its warm-up at 0; compare at a learning rate that moves
        group["lr"] = 1e-3
    loop = torch.optim.AdamW(parameter_groups(loop_module, 0.1), lr=1e-3,
                             betas=fused.param_groups[0]["betas"], eps=fused.param_groups[0]["eps"], foreach=False)
    for step in range(5):
        for module, optimizer in ((fused_module, fused), (loop_module, loop)):
            optimizer.zero_grad()
            generator = torch.Generator().manual_seed(step)
            sum((p * torch.randn(p.shape, generator=generator)).sum() for p in module.parameters()).backward()
            optimizer.step()
    for (name, after), before in zip(fused_module.named_parameters(), loop_module.parameters()):
        torch.testing.assert_close(after, before, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(fused_module.model.text_projection.weight, initial.model.text_projection.weight)


@pytest.mark.parametrize("streaming", [False, True])
def test_dataloader_batches_are_uint8_pixels_and_tokens_padded_to_the_longest_and_reproducible(corpus, streaming):
    import rclip_hf

    _, data_args, _ = parse_arguments(["--config", str(TINY), "--dataset", str(corpus[0]),
                                       *(["--streaming", "true", "--shuffle_buffer_size", "16"] if streaming else [])])
    processor = rclip_hf.build_processor(64)

    def first_batch():
        loader = build_train_dataloader(load_caption_corpus(data_args), processor, TrainAugmentation(size=64),
                                        data_args, per_device_batch_size=6, seed=0)
        return next(iter(loader))

    batch = first_batch()
    assert batch["pixel_values"].shape == (6, 3, 64, 64) and batch["pixel_values"].dtype == torch.uint8
    # captions are 5 to 9 tokens with start/end: padded to the longest in the batch, not to 77
    assert batch["input_ids"].shape[0] == 6 and 7 <= batch["input_ids"].shape[1] <= 11
    assert batch["attention_mask"].sum(dim=1).max() == batch["input_ids"].shape[1]
    again = first_batch()
    assert torch.equal(batch["pixel_values"], again["pixel_values"]) and torch.equal(batch["input_ids"], again["input_ids"])


def _step_gradients(corpus_dir: Path, accumulation: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and gradients of one training step of tiny.yaml on the first 8 samples, in `accumulation` micro-batches."""
    from accelerate import Accelerator

    from rclip_hf.loss import ClipLoss
    from training_scripts.training.model import ContrastiveModule, build_model_and_processor

    model_args, data_args, _ = parse_arguments(["--config", str(TINY), "--dataset", str(corpus_dir)])
    torch.manual_seed(0)
    model, processor = build_model_and_processor(model_args)
    module = ContrastiveModule(model)
    loader = iter(build_train_dataloader(load_caption_corpus(data_args), processor, TrainAugmentation(size=64),
                                         data_args, per_device_batch_size=8 // accumulation, seed=0))
    normalize = PixelNormalizer(processor.image_processor.image_mean, processor.image_processor.image_std)
    loss = training_step(module, [next(loader) for _ in range(accumulation)], ClipLoss(), Accelerator(cpu=True),
                         normalize)
    return loss, {name: parameter.grad for name, parameter in module.named_parameters()}


def test_accumulated_micro_batches_equal_one_step_on_the_whole_batch(corpus):
    whole_loss, whole_grads = _step_gradients(corpus[0], 1)
    for accumulation in (2, 4):
        loss, grads = _step_gradients(corpus[0], accumulation)
        torch.testing.assert_close(loss, whole_loss, atol=1e-5, rtol=0)
        for name, grad in whole_grads.items():
            torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=0, msg=f"{accumulation}: {name}")
    assert whole_grads["model.logit_scale"].abs().item() > 1e-4  # taken once, not once per micro-batch


# --- early failures (nothing is built or trained) -------------------------------------------------------------


def _run_args(*argv: str):
    return parse_arguments(["--config", str(TINY), "--report_to", "none", *argv])


def test_unknown_arch_fails_before_compute(tmp_path):
    with pytest.raises(ValueError, match=r"--arch 'ViT-X-99' is unknown; choose one of \['RN101', 'RN50'"):
        run(*_run_args("--model_config", "", "--arch", "ViT-X-99", "--dataset", "unused",
                       "--output_dir", str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_two_model_sources_fail(tmp_path):
    with pytest.raises(ValueError, match=r"exactly one of .*got \['arch', 'model_config'\]"):
        run(*_run_args("--arch", "RN50", "--dataset", "unused", "--output_dir", str(tmp_path / "out")))


def test_indivisible_batch_fails_before_compute(corpus, tmp_path):
    with pytest.raises(ValueError, match=r"--batch_size 30 is not divisible by .*gradient_accumulation_steps \(4\)"):
        run(*_run_args("--dataset", str(corpus[0]), "--batch_size", "30", "--gradient_accumulation_steps", "4",
                       "--output_dir", str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_missing_columns_fail_before_compute(tmp_path):
    import datasets

    folder = tmp_path / "no_captions"
    folder.mkdir()
    datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "caption": ["one string"]},
                               features=datasets.Features({"image": datasets.Image(),
                                                           "caption": datasets.Value("string")})
                               ).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['captions'\]; found \['caption', 'image'\]"):
        run(*_run_args("--dataset", str(folder), "--output_dir", str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_bad_mixed_precision_and_resume_path_fail(tmp_path):
    with pytest.raises(UserError, match=r"--mixed_precision fp8: choose one of float32, bfloat16, float16"):
        run(*_run_args("--dataset", "unused", "--mixed_precision", "fp8"))
    with pytest.raises(FileNotFoundError, match="--resume .*nowhere: not a complete checkpoint folder"):
        resolve_resume(str(tmp_path / "nowhere"), tmp_path)


# --- learning, saving, resuming -------------------------------------------------------------------------------


def _top1_scene_accuracy(model_dir: Path, corpus_dir: Path, class_names: list[str]) -> float:
    """Image -> class-caption R@1 (%) of a saved model over every training image (chance: 100 / classes)."""
    import datasets
    from transformers import AutoModel, AutoProcessor

    import rclip_hf  # noqa: F401  (registers the Auto classes)
    from rclip_hf.embeddings import encode_images, encode_texts

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    rows = datasets.load_dataset(str(corpus_dir), split="train")
    image_embeds = encode_images(model, processor, rows["image"], batch_size=64, show_progress=False)
    text_embeds = encode_texts(model, processor, [TEMPLATES[0].format(name) for name in class_names],
                               show_progress=False)
    predicted = (image_embeds @ text_embeds.T).argmax(dim=1)
    return (predicted == torch.tensor(rows["label"])).float().mean().item() * 100


@pytest.mark.slow
def test_loss_falls_and_retrieval_rises_well_above_chance(uninterrupted, corpus):
    losses = _losses(uninterrupted)
    assert sorted(losses) == list(range(1, STEPS + 1))
    records = [json.loads(line) for line in (uninterrupted / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records if "eval" in record] == [STEPS]  # the final evaluation hook
    first, last = np.mean([losses[s] for s in range(1, 11)]), np.mean([losses[s] for s in range(STEPS - 19, STEPS + 1)])
    assert last < first - 0.5, (first, last)
    chance = 100 / len(corpus[1])
    accuracy = _top1_scene_accuracy(uninterrupted / "final", *corpus)
    assert accuracy > 2.5 * chance, (accuracy, chance)
    print(f"loss {first:.3f} -> {last:.3f}; image->text R@1 {accuracy:.1f}% (chance {chance:.1f}%)")


@pytest.mark.slow
def test_sigkill_then_resume_latest_matches_the_uninterrupted_run(uninterrupted, corpus, tmp_path):
    output_dir = tmp_path / "killed"
    process = subprocess.Popen(_train_command(corpus[0], output_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=_env())
    log = output_dir / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        done = _losses(output_dir) if log.exists() else {}
        if max(done, default=0) >= CHECKPOINT_EVERY * 2 + 10:  # past checkpoint 80, before 120
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert [path.name for path in list_checkpoints(output_dir)][-1] == f"step-{CHECKPOINT_EVERY * 2:07d}"
    assert not (output_dir / "final").exists()
    # a checkpoint cut off mid-write is a .tmp- folder: --resume latest must never pick it
    (output_dir / "checkpoints" / f".tmp-step-{CHECKPOINT_EVERY * 3:07d}").mkdir()

    result = subprocess.run(_train_command(corpus[0], output_dir, "--resume", "latest"), capture_output=True,
                            text=True, env=_env(), timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"resuming from {output_dir}/checkpoints/step-{CHECKPOINT_EVERY * 2:07d}" in result.stderr
    expected, resumed = _losses(uninterrupted), _losses(output_dir)
    later = range(CHECKPOINT_EVERY * 2 + 1, STEPS + 1)
    np.testing.assert_allclose([resumed[s] for s in later], [expected[s] for s in later], rtol=0, atol=1e-5)
    assert (output_dir / "final" / "model.safetensors").is_file()


def test_mixed_precision_is_left_to_accelerate_unless_given(corpus, tmp_path, monkeypatch):
    assert parse_arguments([])[2].mixed_precision is None
    config = tmp_path / "tiny-no-precision.yaml"  # tiny.yaml without its explicit mixed_precision: "no"
    config.write_text("\n".join(line for line in TINY.read_text().splitlines()
                                if not line.startswith("mixed_precision")))
    common = ["--dataset", str(corpus[0]), "--max_steps", "2", "--batch_size", "8", "--gradient_accumulation_steps",
              "2", "--checkpointing_steps", "0", "--report_to", "none", "--logging_steps", "1"]
    # what `accelerate launch --mixed_precision bf16` (or its config file) sets for the script
    result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--config", str(config), "--output_dir",
                             str(tmp_path / "launcher"), *common], capture_output=True, text=True, timeout=600,
                            env={**_env(), "ACCELERATE_MIXED_PRECISION": "bf16"}, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "mixed precision bfloat16" in result.stderr  # recorded in the shared vocabulary
    saved = json.loads((tmp_path / "launcher" / "train_args.json").read_text())
    assert saved["train"]["mixed_precision"] == "bfloat16" and sorted(_losses(tmp_path / "launcher")) == [1, 2]
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # an explicit flag wins over the launcher
    run(*parse_arguments(["--config", str(config), "--output_dir", str(tmp_path / "flag"), "--mixed_precision", "no",
                          *common]))
    assert json.loads((tmp_path / "flag" / "train_args.json").read_text())["train"]["mixed_precision"] == "float32"


def test_dataset_smaller_than_a_batch_fails_instead_of_looping_forever(corpus, tmp_path):
    model_args, data_args, train_args = parse_arguments(
        ["--config", str(TINY), "--dataset", str(corpus[0]), "--output_dir", str(tmp_path), "--max_train_samples",
         "3", "--max_steps", "5", "--report_to", "none", "--checkpointing_steps", "0"])
    with pytest.raises(ValueError, match=r"the training data yields no full batch \(--batch_size 32 over 1 process"):
        run(model_args, data_args, train_args)


@pytest.mark.parametrize("launch", [["-m", "training_scripts.train"], [str(TRAIN_SCRIPT)]])
def test_train_runs_as_module_and_as_script_without_path_inserts(launch: list[str]) -> None:
    """`python -m training_scripts.train` and `python training_scripts/train.py` both import the training package."""
    result = subprocess.run([sys.executable, *launch, "--help"], capture_output=True, text=True, cwd=REPO_ROOT,
                            env=_env(), timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: training_scripts/train.py ") and "--learning_rate" in result.stdout
