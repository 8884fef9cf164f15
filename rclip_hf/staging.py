"""Folders and files written whole, never through a symlink.

Folders: files go into a hidden temporary sibling of the output (`.<name>.partial-<pid>`), which is renamed onto it
(or whose files are moved into it) only once complete, so that a failed or killed write never leaves a half-written
model where a complete one, or nothing, was; a full disk is one line naming the folder and the space needed.

Files: `write_new_file` opens with `O_NOFOLLOW`, and `replaced_file` writes a temporary sibling (created new, never
through a link) that is renamed over the file once complete; a symlink where the file belongs is refused with one
line naming it, so nothing is ever written to a link's target.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError

from .errors import UserError


def state_dict_bytes(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Bytes of a state dict's tensors: about the size of its safetensors file."""
    return sum(tensor.numel() * tensor.element_size() for tensor in state_dict.values())


def check_output_free(output: Path, flag: str, overwrite: bool) -> None:
    """`UserError` when `output` exists and is a file or a non-empty folder, unless `overwrite`."""
    output = Path(output)
    if overwrite or not output.exists():
        return
    if not output.is_dir():
        raise UserError(f"{flag} {output}", "is a file, not a folder", "choose a folder path")
    if any(output.iterdir()):
        raise UserError(f"{flag} {output}", "exists and is not empty", "pass --overwrite to replace it, or choose a "
                        "new folder")


@contextmanager
def staged_folder(output: str | Path, needed_bytes: int, merge: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `output` to write into. On success it replaces `output` (the previous
    folder removed only then), or with `merge` its files replace those of the same names in `output` (the other
    files stay). On failure it is removed and `output` is left as it was; a write that fails for want of space
    (OSError, safetensors' or torch's writer) raises `UserError` naming `output`, `needed_bytes` and the space free."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except (OSError, SafetensorError, RuntimeError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError) and error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        free = shutil.disk_usage(output.parent).free
        raise UserError(str(output), f"writing failed ({type(error).__name__}: {_first_line(error)}); it needs about "
                        f"{_megabytes(needed_bytes)}, {_megabytes(free)} free on that disk",
                        "free disk space or choose another folder; nothing there was changed") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if merge:
        output.mkdir(exist_ok=True)
        for file in sorted(staging.iterdir()):
            os.replace(file, output / file.name)
        staging.rmdir()
        return
    previous = output.parent / f".{output.name}.previous-{os.getpid()}"
    if output.exists():
        output.rename(previous)
    staging.rename(output)
    shutil.rmtree(previous, ignore_errors=True)


def _open_no_link(path: Path, flags: int) -> BinaryIO:
    """`path` opened for writing with `flags`, never through a symlink: a link there is `UserError` naming it."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserError(str(path), "a symlink; nothing is written through one", "remove the link") from None
        raise
    return os.fdopen(descriptor, "wb")


def refuse_link(path: str | Path) -> None:
    """`UserError` naming `path` when it is a symlink (where a file or folder of ours belongs)."""
    if Path(path).is_symlink():
        raise UserError(str(path), "a symlink; nothing is written through one", "remove the link")


def write_new_file(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` (created or truncated), never through a symlink (`O_NOFOLLOW`): a link there is
    `UserError` naming it."""
    with _open_no_link(Path(path), os.O_TRUNC) as file:
        file.write(data)


@contextmanager
def replaced_file(path: str | Path) -> Iterator[BinaryIO]:
    """A new file to write (binary) that replaces `path` once complete: a temporary sibling, renamed over `path` on
    success and removed on failure, so `path` is the previous file or the new one, never half of one. A symlink at
    `path` is refused (`UserError` naming it) and the temporary file is created new, never through a link."""
    path = Path(path)
    refuse_link(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # a leftover of a killed run (a link is removed, never followed)
    try:
        with _open_no_link(temporary, os.O_EXCL) as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.0f} MB" if size >= 2**20 else f"{size / 2**20:.1f} MB"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:160]


__all__ = ["check_output_free", "refuse_link", "replaced_file", "staged_folder", "state_dict_bytes", "write_new_file"]
