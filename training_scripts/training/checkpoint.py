"""Atomic `accelerator.save_state` checkpoints named `step-NNNNNNN` and the `--resume` lookup.

A checkpoint is written to `checkpoints/.tmp-step-N`, then renamed: a crash mid-write leaves only a `.tmp-` folder,
which `--resume latest` never picks and the next save removes.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-"


class TrainState:
    """Optimiser steps done and the data position (epoch, micro-batches of it consumed), saved with the
    accelerator state (`register_for_checkpointing`) so that a resumed run continues the same data order."""

    def __init__(self):
        self.step = 0
        self.epoch = 0
        self.epoch_batches = 0

    def state_dict(self) -> dict[str, int]:
        """{"step", "epoch", "epoch_batches"}."""
        return {"step": self.step, "epoch": self.epoch, "epoch_batches": self.epoch_batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restores the counters."""
        self.step, self.epoch, self.epoch_batches = (int(state[key]) for key in ("step", "epoch", "epoch_batches"))


def checkpoint_dir(output_dir: Path) -> Path:
    """Where checkpoints of a run live."""
    return output_dir / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in root.iterdir()
             if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))]
    return [path for _, path in sorted(found)]


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    """`latest` -> newest complete checkpoint (None when there is none yet); a path -> that folder."""
    if not resume:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning("--resume latest: no checkpoint in %s, starting from scratch", checkpoint_dir(output_dir))
            return None
        return checkpoints[-1]
    path = Path(resume)
    if not path.is_dir() or path.name.startswith(TMP_PREFIX):
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint folder (expected .../step-N)")
    return path


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> Path:
    """Saves the full training state atomically as `checkpoints/step-{step:07d}`; keeps the newest `total_limit`."""
    root = checkpoint_dir(output_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f"{TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final
