"""Command-line parsing shared by every entry point: dataclass flags with truthful help, YAML defaults, and both
spellings of every long option (`--flag_name` and `--flag-name`).

- `DataclassArgumentParser`: `transformers.HfArgumentParser` (which already accepts both spellings) whose help
  says "(default: …)" only where there is a default, and describes boolean switches as what they do.
- `parse_with_yaml_defaults`: `--config FILE.yaml` supplies defaults (a flat mapping of field names), flags given
  on the command line override them.
- `ArgumentParser`: `argparse.ArgumentParser` for the scripts that do not parse dataclasses; each long option also
  gets its other spelling.

Both parsers answer bad usage with one line: an unknown or misspelt flag raises `UnknownFlagError` ("unknown flag
--batchsize (did you mean --batch_size?)"), any other usage error (a missing or invalid value) a `UserError`; the
entry point (`errors.entry_point`) prints it as `error: ...` and exits with 2 (`--debug`: the traceback). Both also
answer `--version`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ._compat import DefaultsHelpFormatter
from .errors import UserError


def _both_spellings(option_strings: Sequence[str]) -> list[str]:
    """`option_strings` plus, for each long option, its other spelling (`--a_b` <-> `--a-b`), without repeats."""
    names = list(option_strings)
    for name in option_strings:
        if name.startswith("--"):
            for other in ("--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")):
                if other not in names:
                    names.append(other)
    return names


class UnknownFlagError(UserError):
    """A flag the command does not have, with the closest one it has: "unknown flag --batchsize (did you mean
    --batch_size?)"."""

    def __init__(self, flags: Sequence[str], known: Sequence[str]):
        described = []
        for flag in flags:
            name = flag.partition("=")[0]
            close = difflib.get_close_matches(name, [option for option in known if option.startswith("--")], n=1)
            described.append(f"{name} (did you mean {close[0]}?)" if close else name)
        super().__init__(f"unknown flag{'s' if len(flags) > 1 else ''} {', '.join(described)}")
        self.flags = list(flags)


class _OneLineUsage:
    """Mixin for `argparse.ArgumentParser`s: `--version`, and usage errors raised as one-line `UserError`s instead
    of argparse's usage text and `SystemExit(2)`."""

    def _add_version_flag(self) -> None:
        from . import __version__

        if "--version" not in self._option_string_actions:  # type: ignore[attr-defined]
            argparse.ArgumentParser.add_argument(self, "--version", action="version",  # type: ignore[arg-type]
                                                 version=f"rclip-hf {__version__}", help="print the version and exit")

    def known_flags(self) -> list[str]:
        """Every option string the parser accepts."""
        return list(self._option_string_actions)  # type: ignore[attr-defined]

    def reject_unknown(self, remaining: Sequence[str]) -> None:
        """Raise for the arguments parsing left over: `UnknownFlagError` for flags, `UserError` for other words."""
        flags = [word for word in remaining if word.startswith("-") and word != "-"]
        if flags:
            raise UnknownFlagError(flags, self.known_flags())
        if remaining:
            raise UserError(f"unexpected argument{'s' if len(remaining) > 1 else ''} {' '.join(remaining)}",
                            fix=f"see {self.prog} --help")  # type: ignore[attr-defined]

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        """As `argparse.ArgumentParser.parse_known_args`; remembers `args` so that a usage error can first name an
        unknown flag among them (a misspelt required flag is reported as misspelt, not as missing)."""
        self._arguments = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)  # type: ignore[misc]

    def _unknown_flags(self) -> list[str]:
        known = self.known_flags()
        return [word for word in getattr(self, "_arguments", []) if word.startswith("--")
                and word.partition("=")[0] not in known]

    def error(self, message: str) -> None:  # argparse's hook for every usage error; must not return
        """Raise a bad-usage `message` of argparse as a one-line `UserError`; an unknown flag is named first."""
        unknown = self._unknown_flags()
        if unknown:
            raise UnknownFlagError(unknown, self.known_flags())
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            self.reject_unknown(message[len(prefix):].split())
        raise UserError(f"{self.prog}: {message}", fix=f"see {self.prog} --help")  # type: ignore[attr-defined]


class ArgumentParser(_OneLineUsage, argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose long options accept both `--flag_name` and `--flag-name`, which answers
    `--version`, and whose usage errors are one-line `UserError`s."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)  # with two spellings of each flag, a prefix is ambiguous anyway
        super().__init__(*args, **kwargs)
        self._add_version_flag()

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        """As `argparse.ArgumentParser.add_argument`, with the other spelling of each long option added."""
        return super().add_argument(*_both_spellings(name_or_flags), **kwargs)


class DataclassArgumentParser(_OneLineUsage, HfArgumentParser):
    """`HfArgumentParser` with truthful help: no "(default: None)" on required options, and boolean fields shown
    as switches ("--flag" turns it on, "--no_flag" off) with their real default. It answers `--version`, and an
    unknown flag or other usage error is a one-line `UserError` (not `HfArgumentParser`'s ValueError)."""

    def __init__(self, dataclass_types: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # with two spellings of each flag, a prefix is ambiguous anyway
        super().__init__(dataclass_types, **kwargs)
        self._add_version_flag()

    def parse_args_into_dataclasses(self, args: Sequence[str] | None = None, return_remaining_strings: bool = False,
                                    **kwargs: Any) -> tuple[Any, ...]:
        """As `HfArgumentParser.parse_args_into_dataclasses`; arguments left over raise `UnknownFlagError` (a flag)
        or `UserError`. With `return_remaining_strings`, words that are not flags are returned, flags still raise."""
        *parsed, remaining = super().parse_args_into_dataclasses(args=args, return_remaining_strings=True, **kwargs)
        if return_remaining_strings:
            self.reject_unknown([word for word in remaining if word.startswith("-") and word != "-"])
            return (*parsed, remaining)
        self.reject_unknown(remaining)
        return tuple(parsed)

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        """Registers an option; boolean switches get a help text that says what the switch does."""
        text = kwargs.get("help") or ""
        if kwargs.get("action") == "store_false":  # HfArgumentParser's `--no_flag` complement of a True default
            kwargs["help"] = f"turn off --{kwargs['dest']} ({text.rstrip('.')})"
        elif kwargs.get("nargs") == "?" and kwargs.get("const") is True:  # a bool field
            state = "on" if kwargs.get("default") else "off"
            kwargs["help"] = f"{text} (switch: give the flag to turn it on, or pass true/false; default: {state})"
            kwargs.setdefault("metavar", "true|false")
        action = super().add_argument(*name_or_flags, **kwargs)
        if not hasattr(self, "_actions_by_dest"):  # argparse's own __init__ adds --help before ours runs on
            self._actions_by_dest: dict[str, list[argparse.Action]] = {}
        self._actions_by_dest.setdefault(action.dest, []).append(action)
        return action

    def set_defaults(self, **kwargs: Any) -> None:
        """As `argparse.ArgumentParser.set_defaults`; an option given a default here is no longer required."""
        super().set_defaults(**kwargs)
        for dest in kwargs:
            for action in self._actions_by_dest.get(dest, []):
                action.required = False


def load_yaml_defaults(path: str | Path, allowed: Sequence[str]) -> dict[str, Any]:
    """A flat YAML mapping of option names; raises naming the file when it is missing, not valid YAML, not a mapping,
    or has a key outside `allowed`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}", f"expected a mapping of option names to values, got {type(values).__name__}")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
    return values


def parse_with_yaml_defaults(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[Any, ...]:
    """Instances of `dataclass_types` from `argv`; `--config FILE.yaml` (a flat mapping of field names, e.g.
    `learning_rate: 1e-4`) supplies defaults that flags override. `prepare` may convert the YAML values first.

    A dataclass may declare `config` itself (to record it); otherwise `--config` is added here.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=Path, default=None)
    known, remaining = pre.parse_known_args(argv)
    names = [item.name for cls in dataclass_types for item in dataclasses.fields(cls)]
    parser = DataclassArgumentParser(list(dataclass_types), prog=prog, description=description)
    declares_config = "config" in names
    if not declares_config:
        parser.add_argument("--config", type=Path, default=None, help="YAML file of defaults for the flags below")
    if known.config is not None:
        values = load_yaml_defaults(known.config, [name for name in names if name != "config"])
        parser.set_defaults(**(prepare(values) if prepare else values))
    args = remaining if not declares_config else None if argv is None else list(argv)
    parsed = parser.parse_args_into_dataclasses(args=args, look_for_args_file=False)
    return tuple(parsed[: len(dataclass_types)])


__all__ = ["ArgumentParser", "DataclassArgumentParser", "UnknownFlagError", "load_yaml_defaults",
           "parse_with_yaml_defaults"]
