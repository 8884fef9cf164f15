"""`rclip-hf`: the command line of rclip-hf. It only routes: each subcommand's options, checks and run function
live with the command (`rclip_hf/commands/`, or the module of its feature).

    rclip-hf classify --model DIR --images a.jpg tiles/ --preset aid
    rclip-hf index    --model DIR --source tiles/ --output tiles.index
    rclip-hf index    --model DIR --source scenes/ --output scenes.index --window 256 --stride 128
    rclip-hf search   --model DIR --index tiles.index --text "a stadium next to a river" --top_k 5
    rclip-hf search   --model DIR --index scenes.index --text "airport" --merge --format geojson --html hits.html
    rclip-hf count    --model DIR --image harbour.png --object ship
    rclip-hf heatmap  --model DIR --image scene.tif --queries "airplane" "ship" --window 256 --output_dir maps/
    rclip-hf convert  --checkpoint RemoteCLIP-ViT-B-32.pt --arch ViT-B-32 --output DIR
    rclip-hf export   DIR --to open_clip --output OUT
    rclip-hf eval     --model DIR --benchmarks rsitmd,eurosat --data_dir DATA

Subcommands are entries of `COMMANDS` ("module:function": the function takes the remaining arguments and returns
an exit code; the module's `HELP` is its line in `rclip-hf --help`) or of `DELEGATED_COMMANDS` (a module whose
`main(argv)` takes over; listed only when the module is importable). Bad input (missing file, unknown preset, a
folder that is not a RemoteCLIP/CLIP model, an index of another model) prints one line `error: ...` and exits with
2 (`errors.py`; `--debug` shows the traceback).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable

from .errors import EXIT_BAD_INPUT, UserError, entry_point

#: Subcommands of `rclip_hf.commands`: name -> "module:function".
COMMANDS: dict[str, str] = {
    "classify": "rclip_hf.commands.classify:run_classify",
    "index": "rclip_hf.commands.index:run_index",
    "search": "rclip_hf.commands.search:run_search",
    "count": "rclip_hf.commands.count:run_count",
    "heatmap": "rclip_hf.commands.heatmap:run_heatmap",
}
#: Subcommands implemented by another module's `main(argv)`: name -> (module, help).
DELEGATED_COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("rclip_hf.convert", "convert an open_clip checkpoint (.pt) to a transformers folder"),
    "export": ("rclip_hf.export", "export a model folder back to open_clip (open_clip_config.json + safetensors)"),
    "eval": ("rclip_hf.evaluation.runner", "evaluate a model on benchmark datasets (results JSON + table)"),
    "push": ("rclip_hf.hub", "upload a model folder and its card to the Hugging Face Hub"),
    "explore": ("rclip_hf.explore.cli", "a local web app: query, label, train, review and export on a map"),
}
_Run = Callable[[list[str]], int]


def _delegate(name: str, module_name: str) -> _Run:
    """Run `module.main(argv)` as `rclip-hf <name>`: its usage line names the subcommand, and `--flag_name` is
    given to it as `--flag-name` (every delegate accepts the dash spelling; plain argparse ones only that)."""

    def run(argv: list[str]) -> int:
        program = sys.argv[0]
        sys.argv[0] = f"rclip-hf {name}"  # argparse's default prog
        try:
            outcome = importlib.import_module(module_name).main([_dash_spelling(token) for token in argv])
        finally:
            sys.argv[0] = program
        return outcome if isinstance(outcome, int) else 0

    return run


def _dash_spelling(token: str) -> str:
    """`--flag_name[=value]` -> `--flag-name[=value]`; any other token as it is."""
    if not token.startswith("--"):
        return token
    option, equals, value = token.partition("=")
    return option.replace("_", "-") + equals + value


def available_commands() -> dict[str, tuple[str, _Run]]:
    """All subcommands, name -> (help, run): those of `COMMANDS` and the delegated ones whose module is
    importable."""
    commands = {}
    for name, target in COMMANDS.items():
        module_name, _, function = target.partition(":")
        module = importlib.import_module(module_name)
        commands[name] = (module.HELP, getattr(module, function))
    for name, (module_name, help_text) in DELEGATED_COMMANDS.items():
        if importlib.util.find_spec(module_name) is not None:
            commands[name] = (help_text, _delegate(name, module_name))
    return commands


def _usage(commands: dict[str, tuple[str, _Run]]) -> str:
    width = max(map(len, commands))
    lines = [f"  {name.ljust(width)}  {help_text}" for name, (help_text, _) in commands.items()]
    return ("usage: rclip-hf <command> [options]   (rclip-hf <command> --help for its options)\n"
            "       rclip-hf --version\n\ncommands:\n" + "\n".join(lines))


@entry_point
def main(argv: list[str]) -> int:
    """Entry point of `rclip-hf`; returns the exit code (0 ok, 2 bad input or usage)."""
    commands = available_commands()
    if argv[:1] == ["--version"]:
        from . import __version__

        print(f"rclip-hf {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(commands))
        return 0 if argv else EXIT_BAD_INPUT
    name, rest = argv[0], argv[1:]
    if name not in commands:
        close = difflib.get_close_matches(name, list(commands), n=1)
        suggestion = f"did you mean {close[0]}? " if close else ""
        raise UserError(f"unknown command {name!r} ({suggestion}commands: {', '.join(commands)})")
    from PIL import Image

    pixel_limit = Image.MAX_IMAGE_PIXELS  # --max-pixels changes it for one command
    try:
        return commands[name][1](rest)
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_BAD_INPUT
    finally:
        Image.MAX_IMAGE_PIXELS = pixel_limit


if __name__ == "__main__":
    sys.exit(main())
