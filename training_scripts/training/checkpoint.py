"""Atomic `accelerator.save_state` checkpoints named `step-NNNNNNN`, the `--resume` lookup, and the output folder
rule (a previous run is never overwritten or mixed in silently).

A checkpoint is written to `checkpoints/.tmp-step-N`, then renamed: a crash mid-write leaves only a `.tmp-` folder,
which `--resume latest` never picks and the next save removes.

Checkpoints are shared like models, so resuming runs no code from one: the weights are safetensors, the optimiser,
scaler and RNG states are read by accelerate with `weights_only=True` (the RNG file is checked first, as accelerate
would skip a refused one silently), and the train state and the learning-rate schedule are JSON (`STATE_FILE`),
not the `custom_checkpoint_N.pkl` pickles that accelerate loads with `weights_only=False`; a folder holding one of
those is refused.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils.other import load as accelerate_load
from safetensors import SafetensorError

from rclip_hf.errors import UserError

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-"
#: The train state and the scheduler state of a checkpoint, as JSON
STATE_FILE = "train_state.json"
#: accelerate's pickled states of registered objects, loaded with `weights_only=False`: refused
PICKLED_STATE_PATTERN = re.compile(r"^custom_checkpoint_\d+\.pkl$")
#: What marks a folder as holding a previous run
RUN_FILES = ("train_args.json", "train_log.jsonl", "checkpoints", "final")


class CheckpointError(UserError):
    """A checkpoint folder that cannot be resumed safely (a pickle that would run code, missing or damaged state)."""


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


def check_output_dir(output_dir: Path, resuming: bool, overwrite: bool, remove: bool = True) -> None:
    """Refuses to start a fresh run in a folder holding a previous one unless `overwrite`; then the previous run's
    files are removed (by the process with `remove`, the main one)."""
    found = [name for name in RUN_FILES if (output_dir / name).exists()]
    if resuming or not found:
        return
    if not overwrite:
        raise UserError(f"--output_dir {output_dir}", f"holds a previous run ({', '.join(found)})",
                        "pass --resume latest to continue it, --overwrite_output_dir to replace it, "
                        "or choose another folder")
    if not remove:
        return
    logger.warning("--overwrite_output_dir: removing the previous run's %s from %s", ", ".join(found), output_dir)
    for name in (*found, "logs"):
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None,
                    state: TrainState, scheduler: Any) -> Path:
    """Saves the full training state atomically as `checkpoints/step-{step:07d}`; keeps the newest `total_limit`."""
    root = checkpoint_dir(output_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f"{TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps({"train": state.state_dict(), "scheduler": scheduler.state_dict()}))
    except RuntimeError as error:  # torch.save's C++ writer: "basic_ios::clear: iostream error" on a full disk
        shutil.rmtree(tmp, ignore_errors=True)
        free_mb = shutil.disk_usage(root).free / 2**20
        raise UserError(str(tmp), f"writing the checkpoint failed ({str(error).splitlines()[0][:120]}); "
                                  f"{free_mb:.0f} MB free on that disk",
                        "free disk space or choose another --output_dir, then --resume latest") from error
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


def load_checkpoint(accelerator: Accelerator, path: Path, state: TrainState, scheduler: Any) -> None:
    """Restores a checkpoint of `save_checkpoint` without running code from it (see the module docstring)."""
    pickled = sorted(entry.name for entry in path.iterdir() if PICKLED_STATE_PATTERN.match(entry.name))
    if pickled:
        raise CheckpointError(str(path / pickled[0]), "a pickled state that would run code when loaded; train.py "
                              "never writes one", "resume only from checkpoints written by this train.py")
    rng_file = path / f"random_states_{accelerator.process_index}.pkl"
    try:
        accelerate_load(rng_file, weights_only=True)
        accelerator.load_state(str(path))
    except pickle.UnpicklingError as error:
        raise CheckpointError(str(path), f"a state file holds code or objects other than tensors and numbers "
                              f"({str(error).splitlines()[0][:160]})", "resume only from trusted checkpoints "
                              "written by this train.py") from None
    except (RuntimeError, SafetensorError, EOFError, KeyError, ValueError) as error:
        raise CheckpointError(str(path), f"damaged or from another model ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:160]})", "resume from another checkpoint "
                              "or start again with --overwrite_output_dir") from None
    try:
        saved = json.loads((path / STATE_FILE).read_text())
        state.load_state_dict(saved["train"])
        expected = scheduler.state_dict()
        if set(saved["scheduler"]) != set(expected):
            raise KeyError(f"scheduler keys {sorted(saved['scheduler'])} instead of {sorted(expected)}")
        scheduler.load_state_dict(saved["scheduler"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(str(path / STATE_FILE), f"not the train state this train.py writes ({error})",
                              "resume from another checkpoint") from None
