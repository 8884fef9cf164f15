"""rclip_hf.arguments: YAML defaults under flags, both spellings of every flag, truthful help; `rclip-hf --version`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rclip_hf import __version__, cli
from rclip_hf.arguments import ArgumentParser, DataclassArgumentParser, parse_with_yaml_defaults
from rclip_hf.errors import UserError


@dataclass
class _Options:
    data_dir: str = field(metadata={"help": "input folder"})
    batch_size: int = field(default=8, metadata={"help": "images per batch"})
    bf16: bool = field(default=False, metadata={"help": "encode under bfloat16"})
    show_progress: bool = field(default=True, metadata={"help": "show progress bars"})
    device: str | None = field(default=None, metadata={"help": "device (default: cuda when available)"})


def test_yaml_defaults_are_overridden_by_flags_in_either_spelling(tmp_path: Path) -> None:
    config = tmp_path / "defaults.yaml"
    config.write_text("batch_size: 32\nbf16: true\ndata_dir: from_yaml\n")
    (options,) = parse_with_yaml_defaults([_Options], ["--config", str(config), "--batch-size", "4"])
    assert (options.data_dir, options.batch_size, options.bf16, options.show_progress) == ("from_yaml", 4, True, True)
    (options,) = parse_with_yaml_defaults([_Options], ["--data_dir", "x", "--no-show-progress", "--bf16", "false"])
    assert (options.data_dir, options.batch_size, options.bf16, options.show_progress) == ("x", 8, False, False)


def test_yaml_errors_name_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"--config .*missing.yaml: no such file"):
        parse_with_yaml_defaults([_Options], ["--config", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown key\(s\) \['batch_sise'\]; allowed keys are"):
        parse_with_yaml_defaults([_Options], ["--config", str(bad)])
    bad.write_text("- a list\n")
    with pytest.raises(UserError, match=r"bad.yaml: expected a mapping of option names to values, got list"):
        parse_with_yaml_defaults([_Options], ["--config", str(bad)])


def test_help_has_no_default_none_and_describes_switches() -> None:
    text = DataclassArgumentParser(_Options, prog="tool").format_help()
    assert text.startswith("usage: tool ")
    assert "(default: None)" not in text and "input folder\n" in text.replace("  ", " ")
    assert "images per batch (default: 8)" in text
    assert "--bf16 [true|false]" in text and "default: off)" in text
    assert "turn off --show_progress (show progress bars)" in " ".join(text.split())
    assert "device (default: cuda when available)\n" in text  # its own default text, not a second one


def test_argparse_scripts_accept_both_spellings() -> None:
    parser = ArgumentParser()
    parser.add_argument("--repo-id")
    parser.add_argument("--max_side", type=int)
    args = parser.parse_args(["--repo_id", "a/b", "--max-side", "3"])
    assert (args.repo_id, args.max_side) == ("a/b", 3)


def test_version_and_both_spellings_through_delegated_commands(tmp_path: Path, monkeypatch, capsys) -> None:
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out == f"rclip-hf {__version__}\n"
    (tmp_path / "fake_argparse_module.py").write_text(
        "import argparse, sys\n"
        "def main(argv):\n"
        "    parser = argparse.ArgumentParser()\n"
        "    parser.add_argument('--repo-id', required=True)\n"
        "    print(parser.prog, parser.parse_args(argv).repo_id)\n"
        "    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.DELEGATED_COMMANDS, "push", ("fake_argparse_module", "upload"))
    assert cli.main(["push", "--repo_id", "me/model"]) == 0
    assert capsys.readouterr().out == "rclip-hf push me/model\n"
    assert cli.main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rclip-hf eval ") and "(default: None)" not in out


def test_evaluate_script_names_itself_in_usage_and_keeps_one_line_errors(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "training_scripts" / "evaluate.py"
    shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: training_scripts/evaluate.py ")
    failed = subprocess.run([sys.executable, str(script), "--model", str(tmp_path / "missing"), "--data-dir",
                             str(tmp_path), "--benchmarks", "rsitmd"], capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().startswith("error: ") and len(failed.stderr.strip().splitlines()) == 1
