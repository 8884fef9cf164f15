"""benchmarks/gpu_check.sh: valid bash, does nothing but say so without CUDA, and every benchmark flag it passes
exists. (Its CUDA path runs on GPU machines only.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def test_syntax():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, check=False).returncode == 0


def test_without_cuda_it_says_so_and_writes_nothing(tmp_path):
    result = _run(str(tmp_path / "table.md"), CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 0, result.stderr
    assert "no CUDA device on this machine" in result.stdout and "nothing was run" in result.stdout
    assert not (tmp_path / "table.md").exists()


def test_commands_use_flags_the_benchmarks_accept():
    result = _run("--dry-run")
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    scripts = [Path(words[3]).name for words in commands]
    assert scripts == ["train_throughput.py", "train_throughput.py", "inference_throughput.py", "train_input.py"]
    assert sum(int(words[1]) for words in commands) <= 8 * 60  # the time limits fit the 8 minutes
    assert "--batch-size 256 --precision bfloat16" in " ".join(commands[0])
    assert "--arch ViT-L-14 --batch-size 64" in " ".join(commands[1])
    assert "--dtype bfloat16" in " ".join(commands[2]) and commands[3][-1] == str(len(os.sched_getaffinity(0)))
    for words in commands:  # each flag is declared by the script's argparse parser
        declared = set(re.findall(r"""add_argument\(((?:"--[\w-]+",?\s*)+)""", Path(words[3]).read_text()))
        flags = {flag for group in declared for flag in re.findall(r"--[\w-]+", group)}
        for flag in (word for word in words[4:] if word.startswith("--")):
            assert flag in flags, (words[3], flag)
    assert _run("--bogus").returncode == 2
