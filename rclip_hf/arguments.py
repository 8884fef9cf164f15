"""Command-line parsing shared by every entry point: dataclass flags with truthful help, YAML defaults, and both
spellings of every long option (`--flag_name` and `--flag-name`).

- `DataclassArgumentParser`: `transformers.HfArgumentParser` (which already accepts both spellings) whose help
  says "(default: …)" only where there is a default, and describes boolean switches as what they do.
- `parse_with_yaml_defaults`: `--config FILE.yaml` supplies defaults (a flat mapping of field names), flags given
  on the command line override them.
- `ArgumentParser`: `argparse.ArgumentParser` for the scripts that do not parse dataclasses; each long option also
  gets its other spelling.
"""

from __future__ import annotations

import argparse
import dataclasses
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


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose long options accept both `--flag_name` and `--flag-name`."""

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        """As `argparse.ArgumentParser.add_argument`, with the other spelling of each long option added."""
        return super().add_argument(*_both_spellings(name_or_flags), **kwargs)


class DataclassArgumentParser(HfArgumentParser):
    """`HfArgumentParser` with truthful help: no "(default: None)" on required options, and boolean fields shown
    as switches ("--flag" turns it on, "--no_flag" off) with their real default."""

    def __init__(self, dataclass_types: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(dataclass_types, **kwargs)

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
    pre = argparse.ArgumentParser(add_help=False)
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


__all__ = ["ArgumentParser", "DataclassArgumentParser", "load_yaml_defaults", "parse_with_yaml_defaults"]
