"""One error style for every command: bad input prints one line `error: <file or flag>: <what> (<what to do>)`.

Library code raises `UserError` (or a subclass) for input the user can fix. Every console entry point is wrapped
with `entry_point`, which prints such errors as one line and exits with `EXIT_BAD_INPUT`; `--debug` anywhere on the
command line shows the traceback instead. Besides `UserError`, two kinds count as bad input: an `OSError` (a missing
or unreadable file, a full disk) and a `ValueError`, `KeyError` or `ImportError` raised by this project's own code
(its checks of values and names, its "install X" hints). Anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Exit code for bad input (missing files, bad values, wrong model folders), as argparse uses for bad usage.
EXIT_BAD_INPUT = 2
DEBUG_FLAG = "--debug"

_PROJECT_ROOTS = tuple(str(Path(__file__).resolve().parents[1] / name) for name in
                       ("rclip_hf", "dataset_builders", "training_scripts", "model_cards"))
_debug = contextvars.ContextVar("rclip_hf_debug", default=False)


class UserError(Exception):
    """Bad input the user can fix: `UserError(where, what, fix)` reads `where: what (fix)`; one string works too.
    A subclass whose first line is followed by a listing the user needs (e.g. mismatched keys) sets `listing`."""

    #: Print the lines after the first too (indented details), not the first line alone.
    listing = False

    def __init__(self, where: str, what: str | None = None, fix: str | None = None):
        message = where if what is None else f"{where}: {what}" + (f" ({fix})" if fix else "")
        super().__init__(message)


def dataset_not_found(flag: str, name: str, error: OSError) -> UserError:
    """The error for a `--dataset`-like value that `datasets` could load neither as a folder nor from the Hub:
    says first that no local folder of that name exists (a mistyped path is the usual cause), then the Hub's side."""
    if Path(name).expanduser().exists():
        return UserError(f"{flag} {name}", f"not a dataset folder ({error})",
                         "give a folder of Parquet shards or a saved Hugging Face dataset")
    return UserError(f"{flag} {name}", f"no such local folder, and not loadable as a Hub dataset id either ({error})",
                     "check the path, or give a Hub id owner/name you can reach")


def _raised_by_project(error: BaseException) -> bool:
    """Whether the innermost frame of `error`'s traceback is in this project's code (a deliberate check)."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(_PROJECT_ROOTS)


def is_user_error(error: BaseException) -> bool:
    """Whether `error` is bad input (printed as one line) rather than an internal error (traceback)."""
    if isinstance(error, (UserError, OSError)):
        return True
    return isinstance(error, (ValueError, KeyError, ImportError)) and _raised_by_project(error)


def user_message(error: BaseException) -> str:
    """The one line printed for a bad-input `error`, without the `error: ` prefix (a `UserError` with `listing`:
    that line and the listing under it)."""
    if isinstance(error, UserError) and error.listing:
        return str(error).strip()
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename is not None else ""
        fix = {errno.ENOSPC: " (free space on that disk or write elsewhere)",
               errno.EACCES: " (check the permissions or choose another path)"}.get(error.errno, "")
        return f"{where}{error.strerror}{fix}"
    return " ".join(str(error).split("\n")[0].split()) or type(error).__name__


def _close_progress_bars() -> None:
    """Close the tqdm bars a failed command left open, so that the error starts a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def entry_point(main: Callable[..., int | None]) -> Callable[..., int]:
    """Decorates `main(argv, **options) -> exit code`: bad input -> one line on stderr and `EXIT_BAD_INPUT`;
    `--debug` re-raises."""

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None, **options: Any) -> int:
        arguments = list(sys.argv[1:] if argv is None else argv)
        debug = DEBUG_FLAG in arguments or _debug.get()
        token = _debug.set(debug)
        try:
            outcome = main([argument for argument in arguments if argument != DEBUG_FLAG], **options)
        except Exception as error:
            if debug or not is_user_error(error):
                raise
            _close_progress_bars()
            print(f"error: {user_message(error)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        finally:
            _debug.reset(token)
        return outcome if isinstance(outcome, int) else 0

    return run
