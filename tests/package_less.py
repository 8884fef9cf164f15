"""Run Python code in a process where `rclip_hf` cannot be imported: only torch and transformers (and what they
depend on) are there, as for a Hub user. Offline, with remote-code modules cached in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Prepended to the code: a `sys.meta_path` finder that raises on `rclip_hf` and its submodules.
BLOCKER = """\
import sys


class _BlockRclipHf:
    def find_spec(self, name, path=None, target=None):
        if name == "rclip_hf" or name.startswith("rclip_hf."):
            raise ImportError(f"{name} is blocked: this process has only torch and transformers")
        return None


sys.meta_path.insert(0, _BlockRclipHf())
"""


def run_python(code: str, cwd: Path, *, block_package: bool = True, env: dict[str, str] | None = None,
               timeout: float = 300) -> str:
    """stdout of `python -c code` in `cwd`, offline; fails the test with its stderr when it exits non-zero."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(cwd / ".hf_modules"),
                       PYTHONWARNINGS="ignore")
    if not block_package:
        environment["PYTHONPATH"] = str(REPO_ROOT)
    environment.update(env or {})
    result = subprocess.run([sys.executable, "-c", (BLOCKER if block_package else "") + code], cwd=cwd,
                            env=environment, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"python exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def make_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """An offline Hugging Face cache holding `folder`'s files as the snapshot of model repo `repo_id`."""
    revision = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        if path.is_file():
            (snapshot / path.name).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot
