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
def one_process_step(shared_data, tmp_path_factory) -> tuple[Path, dict]:
    """The corpus and the loss and gradients of one process on the whole batch of 8."""
    corpus = tmp_path_factory.mktemp("corpus")
    build_scene_corpus(shared_data, corpus, per_class=4, size=64)
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


def _train(corpus: Path, output_dir: Path, launcher: list[str], script: Path, *extra: str
           ) -> tuple[dict[int, float], str]:
    """3 steps of tiny.yaml (global batch 8, evaluation at the end) under `launcher`; step -> loss and the log."""
    command = launcher + [str(script), "--config", str(REPO_ROOT / "training_scripts/configs/tiny.yaml"),
                          "--dataset", str(corpus), "--output_dir", str(output_dir), "--max_steps", "3",
                          "--batch_size", "8", "--logging_steps", "1", "--checkpointing_steps", "0",
                          "--eval_samples", "8", "--report_to", "none", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=cpu_launch_env(), check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    records = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records if "eval" in record] == [3]  # the evaluation hook ran
    return {record["step"]: record["loss"] for record in records if "loss" in record}, result.stderr


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_matches_ddp_and_saves_a_loadable_model(one_process_step, tmp_path):
    # the FSDP run also accumulates 2 micro-batches per step: with the cached-feature loss, still the same batch
    corpus, _ = one_process_step
    ddp_losses, _ = _train(corpus, tmp_path / "ddp", cpu_launch_command(2), REPO_ROOT / "training_scripts/train.py")
    fsdp_launcher = [str(ACCELERATE), "launch", "--config_file", str(FSDP_CONFIG), "--num_processes", "2",
                     "--mixed_precision", "no", "--dynamo_backend", "no"]
    fsdp_losses, log = _train(corpus, tmp_path / "fsdp", fsdp_launcher, TESTS_DIR / "fsdp_cpu_train.py",
                              "--gradient_accumulation_steps", "2")
    assert "accelerate: DistributedType.FSDP on 2 process(es)" in log
    assert sorted(fsdp_losses) == [1, 2, 3]
    np.testing.assert_allclose([fsdp_losses[s] for s in (1, 2, 3)], [ddp_losses[s] for s in (1, 2, 3)], atol=1e-5,
                               rtol=0)
    ddp_weights = load_file(tmp_path / "ddp" / "final" / "model.safetensors")
    fsdp_weights = load_file(tmp_path / "fsdp" / "final" / "model.safetensors")
    assert fsdp_weights.keys() == ddp_weights.keys() and fsdp_weights["logit_scale"].shape == ()
    for name, weight in ddp_weights.items():
        torch.testing.assert_close(fsdp_weights[name], weight, atol=1e-5, rtol=0, msg=name)
    from transformers import AutoModel

    import rclip_hf  # noqa: F401  (registers the Auto classes)

    model = AutoModel.from_pretrained(tmp_path / "fsdp" / "final")
    torch.testing.assert_close(model.logit_scale.detach(), fsdp_weights["logit_scale"])
