"""train.py output safety: a previous run is never overwritten or mixed in silently, and a resume runs no code
from the checkpoint (every state file name planted with a code-running pickle is refused or never read)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from training_corpus import build_scene_corpus

from rclip_hf.errors import UserError
from training_scripts.training.arguments import parse_arguments
from training_scripts.training.checkpoint import STATE_FILE, CheckpointError, list_checkpoints
from training_scripts.training.loop import run

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY = REPO_ROOT / "training_scripts" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    build_scene_corpus(shared_data, folder, per_class=4, size=64)
    return folder


def _run(corpus: Path, output_dir: Path, *extra: str) -> Path:
    return run(*parse_arguments(["--config", str(TINY), "--dataset", str(corpus), "--output_dir", str(output_dir),
                                 "--batch_size", "8", "--max_steps", "4", "--checkpointing_steps", "2",
                                 "--warmup_steps", "1", "--logging_steps", "1", "--report_to", "none", *extra]))


@pytest.fixture(scope="module")
def finished(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4."""
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    _run(corpus, output_dir)
    return output_dir


def _steps(output_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def test_a_fresh_run_into_a_previous_run_is_refused_then_overwritten_on_request(corpus: Path, finished: Path,
                                                                                tmp_path: Path) -> None:
    output_dir = tmp_path / "run"
    shutil.copytree(finished, output_dir)
    weights = (output_dir / "final" / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match=r"--output_dir .*run: holds a previous run \(train_args.json, train_log.jsonl, "
                                        r"checkpoints, final\) \(pass --resume latest .*--overwrite_output_dir"):
        _run(corpus, output_dir, "--seed", "7")
    assert (output_dir / "final" / "model.safetensors").read_bytes() == weights
    assert _steps(output_dir) == [1, 2, 3, 4]
    _run(corpus, output_dir, "--seed", "7", "--overwrite_output_dir")
    assert _steps(output_dir) == [1, 2, 3, 4]  # the previous run's log is gone, not mixed in
    assert [path.name for path in list_checkpoints(output_dir)] == ["step-0000002", "step-0000004"]
    assert (output_dir / "final" / "model.safetensors").read_bytes() != weights


def test_checkpoint_state_is_json_and_resume_latest_continues(corpus: Path, finished: Path, tmp_path: Path) -> None:
    checkpoint = list_checkpoints(finished)[0]
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    saved = json.loads((checkpoint / STATE_FILE).read_text())
    assert saved["train"] == {"step": 2, "epoch": 0, "epoch_batches": 2}
    assert saved["scheduler"]["last_epoch"] == 2
    output_dir = tmp_path / "run"
    shutil.copytree(finished, output_dir)
    shutil.rmtree(list_checkpoints(output_dir)[-1])
    _run(corpus, output_dir, "--resume", "latest")
    assert _steps(output_dir) == [1, 2, 3, 4]  # the redone steps replace the lost ones (logged once)


class _RunsCode:
    """Unpickling this writes a marker file: a stand-in for `os.system` in a planted checkpoint file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin",
                                  "model.safetensors", STATE_FILE, "scheduler.bin", "sampler.bin", "scaler.pt"])
def test_resume_refuses_or_ignores_a_planted_code_running_pickle(corpus: Path, finished: Path, tmp_path: Path,
                                                                name: str) -> None:
    output_dir = tmp_path / "run"
    shutil.copytree(finished, output_dir)
    checkpoint = list_checkpoints(output_dir)[0]
    marker = tmp_path / "pwned"
    with (checkpoint / name).open("wb") as handle:
        pickle.dump({"state": _RunsCode(marker)}, handle)
    read_by_resume = name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "model.safetensors",
                              STATE_FILE)
    if read_by_resume:
        with pytest.raises(CheckpointError, match=f"{checkpoint}.*(pickled state|code or objects|damaged|not the "
                                                  "train state)"):
            _run(corpus, output_dir, "--resume", str(checkpoint))
    else:  # accelerate reads these only for objects this run does not have (prepared schedulers, fp16, ...)
        _run(corpus, output_dir, "--resume", str(checkpoint))
    assert not marker.exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_partial_checkpoint(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from training_scripts.train import main

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\n"
                           "basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", full_disk)
    code = main(["--config", str(TINY), "--dataset", str(corpus), "--output_dir", str(tmp_path / "run"),
                 "--batch_size", "8", "--max_steps", "4", "--checkpointing_steps", "2", "--report_to", "none"])
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(err) == 1, stderr[-3000:]
    assert err[0].startswith(f"error: {tmp_path / 'run' / 'checkpoints' / '.tmp-step-0000002'}: writing the "
                             "checkpoint failed ([enforce fail")
    assert "MB free on that disk (free disk space or choose another --output_dir, then --resume latest)" in err[0]
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []
