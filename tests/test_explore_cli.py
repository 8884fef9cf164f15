"""Bad input of `rclip-hf explore`: one line `error: ...` and exit 2 for an unknown index or model, an index of
another model, a port in use, a public --host without --token and a bad label-set name."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rclip_hf import cli

pytest_plugins = ("inference_fixtures", "explore_fixtures")


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(["explore", *argv])
    err = capsys.readouterr().err
    lines = err.strip().split("\n")  # after any progress bar (carriage returns) of the model's loading
    assert code == 2 and lines[-1].startswith("error: ") and err.count("error: ") == 1, err
    assert "Traceback" not in err
    return lines[-1]


def test_bad_input_is_one_line_and_exit_2(explore_index: Path, tiny_model_dir: Path, other_model_dir: Path,
                                          tmp_path: Path, capsys) -> None:
    model = ["--model", str(tiny_model_dir)]
    assert "--index " + str(tmp_path / "none") in _fails(["--index", str(tmp_path / "none"), *model], capsys)
    assert "model folder not found" in _fails(["--index", str(explore_index), "--model", str(tmp_path / "m")], capsys)
    assert "cannot be mixed or compared" in _fails(["--index", str(explore_index), "--model", str(other_model_dir)],
                                                   capsys)
    err = _fails(["--index", str(explore_index), *model, "--host", "0.0.0.0"], capsys)
    assert "--host 0.0.0.0: not a loopback address" in err and "give --token" in err
    assert "--token: give at least 16 URL-safe" in _fails(["--index", str(explore_index), *model, "--token", "a b"],
                                                        capsys)
    assert "not a label-set name" in _fails(["--index", str(explore_index), *model, "--labels", "../x"], capsys)
    assert "--storage-option endpoint: expected KEY=VALUE" in _fails(
        ["--index", "s3://bucket/index", *model, "--storage-option", "endpoint"], capsys)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        err = _fails(["--index", str(explore_index), *model, "--port", str(port)], capsys)
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err and "the port is in use" in err
    assert not (explore_index / "labels.lance").exists()  # nothing was written
