"""Two gloo processes on CPU compute the same loss and gradients as one process on the concatenated batch.

`accelerate launch --num_processes 2 --cpu` starts ONE process in accelerate 1.x (its simple launcher); two CPU
processes need the torchrun launcher plus the CPU flag: `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
--num_processes 2` (accelerate then picks MULTI_CPU with gloo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from training_corpus import build_scene_corpus

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FSDP_CONFIG = REPO_ROOT / "training_scripts" / "accelerate_configs" / "fsdp.yaml"
ACCELERATE = Path(sys.executable).with_name("accelerate")


def cpu_launch_command(num_processes: int) -> list[str]:
    """`accelerate launch` of `num_processes` gloo processes on CPU (run with `cpu_launch_env()`)."""
    distributed = ["--multi_gpu"] if num_processes > 1 else []
    return [str(ACCELERATE), "launch", *distributed, "--num_processes", str(num_processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no"]


def cpu_launch_env() -> dict[str, str]:
    """The environment forcing accelerate onto the CPU (gloo), with one thread per process."""
    return {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}


def _step(corpus: Path, out_file: Path, num_processes: int, accumulation: int = 1) -> dict:
    command = cpu_launch_command(num_processes) + [str(TESTS_DIR / "distributed_step.py"), str(corpus),
                                                   str(out_file), str(accumulation)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=cpu_launch_env(), check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    return torch.load(out_file)


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> Path:
    """28 RSSCN7 scenes at 64 px as a caption corpus."""
    folder = tmp_path_factory.mktemp("corpus")
    build_scene_corpus(shared_data, folder, per_class=4, size=64)
    return folder


@pytest.fixture(scope="module")
def one_process_step(corpus) -> tuple[Path, dict]:
    """The corpus and the loss and gradients of one process on the whole batch of 8."""
    return corpus, _step(corpus, corpus.parent / "one.pt", 1)


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 2])
def test_two_processes_match_one_process_on_the_concatenated_batch(one_process_step, tmp_path, accumulation):
    # 2 processes x `accumulation` micro-batches of 8 / (2 x accumulation) pairs: the same 8 samples, one loss
    corpus, single = one_process_step
    double = _step(corpus, tmp_path / "two.pt", 2, accumulation)
    assert (single["num_processes"], double["num_processes"]) == (1, 2)
    torch.testing.assert_close(double["loss"], single["loss"], atol=1e-5, rtol=0)
    assert double["grads"].keys() == single["grads"].keys()
    for name, grad in single["grads"].items():
        torch.testing.assert_close(double["grads"][name], grad, atol=1e-5, rtol=0, msg=f"gradient of {name}")
    assert single["grads"]["model.logit_scale"].abs().item() > 0  # the temperature is trained through the loss


def _records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def _steps(output_dir: Path) -> dict[int, dict]:
    """Step -> the logged record of that optimiser step (loss, lr, logit_scale, epoch)."""
    return {record["step"]: record for record in _records(output_dir) if "loss" in record}


def _losses(output_dir: Path) -> dict[int, float]:
    """Step -> loss of a run's train_log.jsonl."""
    return {step: record["loss"] for step, record in _steps(output_dir).items()}


def _evaluations(output_dir: Path) -> dict[int, dict[str, float]]:
    """Step -> retrieval metrics of the evaluation hook."""
    return {record["step"]: record["eval"] for record in _records(output_dir) if "eval" in record}


def _train(corpus: Path, output_dir: Path, launcher: list[str], script: Path, *extra: str) -> str:
    """4 steps of tiny.yaml (global batch 8 in 2 micro-batches per process; evaluation after steps 2 and 4) under
    `launcher`; the log. With 28 images, step 4 spans the end of the first epoch."""
    command = launcher + [str(script), "--config", str(REPO_ROOT / "training_scripts/configs/tiny.yaml"),
                          "--dataset", str(corpus), "--output_dir", str(output_dir), "--max_steps", "4",
                          "--batch_size", "8", "--logging_steps", "1", "--eval_samples", "8", "--eval_steps", "2",
                          "--gradient_accumulation_steps", "2", "--report_to", "none", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=cpu_launch_env(), check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    return result.stderr


def _fsdp_train(corpus: Path, output_dir: Path, *extra: str) -> str:
    """`_train` under the FSDP accelerate config on 2 CPU processes."""
    launcher = [str(ACCELERATE), "launch", "--config_file", str(FSDP_CONFIG), "--num_processes", "2",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    log = _train(corpus, output_dir, launcher, TESTS_DIR / "fsdp_cpu_train.py", *extra)
    assert "accelerate: DistributedType.FSDP on 2 process(es)" in log
    return log


@pytest.fixture(scope="module")
def fsdp_run(corpus, tmp_path_factory) -> Path:
    """4 FSDP steps with checkpoints after steps 2 and 4; returns the output folder."""
    output_dir = tmp_path_factory.mktemp("fsdp")
    _fsdp_train(corpus, output_dir, "--checkpointing_steps", "2")
    return output_dir


def _assert_same_weights(folder: Path, expected_folder: Path, atol: float) -> None:
    weights, expected = (load_file(path / "final" / "model.safetensors") for path in (folder, expected_folder))
    assert weights.keys() == expected.keys() and weights["logit_scale"].shape == ()
    for name, weight in expected.items():
        torch.testing.assert_close(weights[name], weight, atol=atol, rtol=0, msg=name)


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_matches_ddp_and_saves_a_loadable_model(corpus, fsdp_run, tmp_path):
    # both accumulate 2 micro-batches per step (cached features): one contrastive batch of 8, the same data order
    ddp = tmp_path / "ddp"
    _train(corpus, ddp, cpu_launch_command(2), REPO_ROOT / "training_scripts/train.py",
           "--checkpointing_steps", "0")
    fsdp_losses, ddp_losses = _losses(fsdp_run), _losses(ddp)
    assert sorted(fsdp_losses) == sorted(ddp_losses) == [1, 2, 3, 4]
    np.testing.assert_allclose([fsdp_losses[s] for s in (1, 2, 3, 4)], [ddp_losses[s] for s in (1, 2, 3, 4)],
                               atol=1e-5, rtol=0)
    _assert_same_weights(fsdp_run, ddp, atol=1e-5)
    # the evaluation hook runs under FSDP (gathered weights, every process) mid-run and at the end: DDP's numbers
    fsdp_evaluations, ddp_evaluations = _evaluations(fsdp_run), _evaluations(ddp)
    assert sorted(fsdp_evaluations) == [2, 4] and set(fsdp_evaluations[4]) >= {"i2t_R@1", "t2i_R@1", "mean_recall"}
    for step, metrics in ddp_evaluations.items():
        assert fsdp_evaluations[step] == pytest.approx(metrics, abs=1e-9), step
    from transformers import AutoModel

    import rclip_hf  # noqa: F401  (registers the Auto classes)

    model = AutoModel.from_pretrained(fsdp_run / "final")
    torch.testing.assert_close(model.logit_scale.detach(), load_file(fsdp_run / "final" / "model.safetensors")[
        "logit_scale"])


@pytest.mark.slow
def test_fsdp_resume_from_a_checkpoint_matches_the_uninterrupted_run(corpus, fsdp_run, tmp_path):
    # the checkpoint of step 2 (sharded weights and optimiser state gathered to full state dicts, RNG, data position,
    # schedule), resumed in a fresh folder, must give steps 3 and 4 (across the epoch's end) with the losses,
    # learning rates, temperatures, evaluation and final weights of the run that went on without stopping
    checkpoint = fsdp_run / "checkpoints" / "step-0000002"
    assert sorted(path.name for path in (fsdp_run / "checkpoints").iterdir()) == [checkpoint.name, "step-0000004"]
    resumed = tmp_path / "resumed"
    log = _fsdp_train(corpus, resumed, "--checkpointing_steps", "0", "--resume", str(checkpoint))
    assert f"resuming from {checkpoint}" in log
    steps, expected = _steps(resumed), _steps(fsdp_run)
    assert sorted(steps) == [3, 4] and sorted(_evaluations(resumed)) == [4] and steps[4]["epoch"] == 1
    for step in (3, 4):
        assert steps[step] == pytest.approx(expected[step], abs=1e-6, rel=0), step  # loss, lr, logit_scale, epoch
    assert _evaluations(resumed)[4] == pytest.approx(_evaluations(fsdp_run)[4], abs=1e-9)
    _assert_same_weights(resumed, fsdp_run, atol=1e-6)
