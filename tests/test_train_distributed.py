"""Two gloo processes on CPU compute the same loss and gradients as one process on the concatenated batch.

`accelerate launch --num_processes 2 --cpu` starts ONE process in accelerate 1.x (its simple launcher); two CPU
processes need the torchrun launcher plus the CPU flag: `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
--num_processes 2` (accelerate then picks MULTI_CPU with gloo).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_corpus import build_scene_corpus

TESTS_DIR = Path(__file__).resolve().parent
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
