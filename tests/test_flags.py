"""Every entry point answers a misspelt flag with one line, `error: unknown flag --x (did you mean --y?)`, and exit
2 (`--debug`: the traceback); `train.py --version` works. In-process where the entry point is a `main(argv)`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dataset_builders import build_benchmarks, build_corpus, build_remotecount
from model_cards import build as build_card
from rclip_hf import __version__, cli, convert, export, hub
from rclip_hf.arguments import UnknownFlagError
from rclip_hf.evaluation import runner

ROOT = Path(__file__).resolve().parents[1]
MISSPELT = {"--batchsize", "--commitevery", "--topk", "--objcet", "--no-verfy", "--push-to-hb", "--dryrun", "--outptu",
            "--dry_rnu", "--linearprobe", "--max_sidee", "--sed", "--test_fracton", "--repoid", "--storage-optin"}

#: (entry point, arguments with one misspelt flag, the flag it suggests); the other arguments make a valid command,
#: so that only the misspelling can be reported.
IN_PROCESS = [
    (cli.main, ["classify", "--model", "m", "--images", "a.png", "--labels", "x", "--batchsize", "4"], "--batch_size"),
    (cli.main, ["index", "--model", "m", "--source", "s", "--output", "o", "--commitevery", "8"], "--commit_every"),
    (cli.main, ["index", "export", "i", "--outptu", "o.parquet"], "--output"),
    (cli.main, ["index", "migrate", "old", "new", "--storage-optin", "k=v"], "--storage-option"),
    (cli.main, ["search", "--model", "m", "--index", "i", "--text", "a", "--topk", "3"], "--top_k"),
    (cli.main, ["count", "--model", "m", "--image", "a.png", "--objcet", "ship"], "--object"),
    (cli.main, ["heatmap", "--model", "m", "--image", "a.png", "--batchsize", "4", "--queries", "q"], "--batch_size"),
    (cli.main, ["convert", "--checkpoint", "c.pt", "--arch", "RN50", "--output", "o", "--no-verfy"], "--no-verify"),
    (cli.main, ["export", "m", "--to", "open_clip", "--output", "o", "--push-to-hb", "a/b"], "--push-to-hub"),
    (cli.main, ["eval", "--model", "m", "--benchmarks", "ucm", "--data_dir", "d", "--batchsize", "2"], "--batch_size"),
    (cli.main, ["push", "m", "--repo-id", "a/b", "--dryrun"], "--dry_run"),
    (convert.main, ["--checkpoint", "c.pt", "--arch", "RN50", "--outptu", "o"], "--output"),
    (export.main, ["m", "--to", "open_clip", "--outptu", "o"], "--output"),
    (hub.main, ["m", "--repo_id", "a/b", "--dry_rnu"], "--dry_run"),
    (runner.main, ["--model", "m", "--benchmarks", "ucm", "--data_dir", "d", "--linearprobe"], "--linear_probe"),
    (lambda argv: runner.main(argv, prog="training_scripts/evaluate.py"),  # evaluate.py's whole main
     ["--model", "m", "--benchmarks", "ucm", "--data-dir", "d", "--batchsize", "2"], "--batch_size"),
    (build_corpus.main, ["--source", "dota=d", "--output", "o", "--max_sidee", "8"], "--max_side"),
    (build_remotecount.main, ["--dota", "d", "--output", "o", "--sed", "1"], "--seed"),
    (build_benchmarks.main, ["--classification", "ucm=d", "--output", "o", "--test_fracton", "0.2"],
     "--test_fraction"),
    (build_card.main, ["--results", "r.json", "--model_dir", "m", "--repoid", "a/b"], "--repo_id"),
]


def _name(case: tuple) -> str:
    main, argv, _ = case
    command = " ".join(argv[:2]) if argv[:2] in (["index", "export"], ["index", "migrate"]) else argv[0]
    return f"{main.__module__.split('.')[-1]}:{command if main is cli.main else main.__name__}"


@pytest.mark.parametrize("case", IN_PROCESS, ids=[_name(case) for case in IN_PROCESS])
def test_a_misspelt_flag_is_one_line_and_exit_2(case, capsys) -> None:
    main, argv, suggestion = case
    misspelt = next(word for word in argv if word in MISSPELT)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1:] == [f"error: unknown flag {misspelt} (did you mean {suggestion}?)"], \
        captured.err
    assert "Traceback" not in captured.err and not captured.out


def test_debug_shows_the_traceback_and_usage_errors_are_one_line(capsys) -> None:
    with pytest.raises(UnknownFlagError, match=r"unknown flag --batchsize \(did you mean --batch_size\?\)"):
        cli.main(["classify", "--model", "m", "--images", "a.png", "--batchsize", "4", "--debug"])
    # a misspelt required flag is named as misspelt, not as missing; two unknown flags are both named
    assert cli.main(["count", "--modle", "m", "--image", "a.png", "--object", "ship", "--stlye", "words"]) == 2
    assert capsys.readouterr().err == ("error: unknown flags --modle (did you mean --model?), --stlye (did you mean "
                                       "--style?)\n")
    assert cli.main(["count", "--model", "m", "--image", "a.png"]) == 2  # a missing flag: argparse's words, one line
    err = capsys.readouterr().err
    assert err.startswith("error: rclip-hf count: the following arguments are required: --object") and \
        err.count("\n") == 1
    assert cli.main(["export", "m", "--to", "onnx2", "--output", "o"]) == 2
    assert "invalid choice: 'onnx2'" in capsys.readouterr().err
    assert cli.main(["clasify", "--model", "m"]) == 2  # a misspelt command, through the same one line
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'clasify' (did you mean classify? commands: classify, index,") and \
        err.count("\n") == 1


def test_train_script_answers_a_misspelt_flag_and_version(capsys) -> None:
    from training_scripts import train

    with pytest.raises(SystemExit) as shown:
        train.main(["--version"])
    assert shown.value.code == 0 and capsys.readouterr().out == f"rclip-hf {__version__}\n"
    # run as a script (its own folder on sys.path, as `accelerate launch` runs it): one subprocess
    script = ROOT / "training_scripts" / "train.py"
    result = subprocess.run([sys.executable, str(script), "--dataset", "d", "--output_dir", "o", "--learningrate",
                             "1"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (
        2, "error: unknown flag --learningrate (did you mean --learning_rate?)\n")
