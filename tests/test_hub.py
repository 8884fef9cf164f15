"""Hub publishing: the upload allow-list, the dry-run listing and the real path against a fake HfApi (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rclip_hf import hub
from rclip_hf.hub import PublishError, describe_plan, plan_upload, push

CARD = "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- remote-sensing\n---\n\n# demo\n"
PUBLISHED = ["README.md", "config.json", "model.safetensors", "plots/recall_at_k.png", "plots/zero_shot_accuracy.png",
             "processor_config.json", "results.json", "tokenizer.json", "tokenizer_config.json"]


def make_folder(root: Path) -> Path:
    """A model folder with everything publishable plus stray files that must be skipped."""
    folder = root / "model"
    (folder / "plots").mkdir(parents=True)
    for name in PUBLISHED:
        (folder / name).write_bytes(b"x" * 10)
    (folder / "README.md").write_text(CARD)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    (folder / "notes.txt").write_text("scratch")
    (folder / "plots" / "draft.svg").write_text("<svg/>")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "model.safetensors").write_bytes(b"old")
    return folder


class FakeApi:
    """Records the calls `push` makes."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))


def test_plan_uploads_only_the_allow_list(tmp_path):
    plan = plan_upload(make_folder(tmp_path))
    assert plan.paths == PUBLISHED
    assert dict(plan.skipped) == {
        "checkpoints/model.safetensors": "not on the upload allow-list",
        "notes.txt": "not on the upload allow-list",
        "plots/draft.svg": "not on the upload allow-list",
        "pytorch_model.bin": "pickle weights are never uploaded (safetensors only)",
    }
    assert {path: kind for path, kind, _ in plan.files}["plots/recall_at_k.png"] == "plot"
    assert plan.metadata == {"license": "apache-2.0", "library_name": "transformers", "tags": ["remote-sensing"]}


def test_dry_run_lists_files_skips_and_metadata_and_calls_nothing(tmp_path, monkeypatch, capsys):
    folder = make_folder(tmp_path)
    monkeypatch.setattr(hub, "HfApi", lambda: pytest.fail("a dry run must not create an HfApi"))
    assert hub.main([str(folder), "--repo-id", "me/remoteclip", "--dry-run", "--private"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run: would create private model repo me/remoteclip and upload 9 files")
    for name in PUBLISHED:
        assert f"  {name} " in out
    assert "pytorch_model.bin" in out and "pickle weights are never uploaded" in out
    assert "  license: apache-2.0" in out and "  tags: ['remote-sensing']" in out


def test_real_push_creates_repo_and_uploads_exactly_the_plan(tmp_path):
    folder = make_folder(tmp_path)
    api = FakeApi()
    plan = push(folder, "me/remoteclip", private=True, api=api)
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/remoteclip", "repo_type": "model", "private": True, "exist_ok": True}
    upload = api.calls[1][1]
    assert upload["allow_patterns"] == PUBLISHED == plan.paths
    assert upload["folder_path"] == str(folder) and upload["repo_id"] == "me/remoteclip"


def test_model_index_is_summarised(tmp_path):
    folder = make_folder(tmp_path)
    (folder / "README.md").write_text(
        "---\nmodel-index:\n- name: demo\n  results:\n  - task: {type: zero-shot-image-classification}\n"
        "    dataset: {name: RSSCN7, type: rsscn7}\n    metrics:\n    - {type: accuracy, value: 30.0}\n"
        "    - {type: recall, value: 29.0}\n---\n")
    text = describe_plan(plan_upload(folder), "me/x", private=False)
    assert "public model repo me/x" in text
    assert "model-index: 2 metrics on 1 task/dataset pairs (rsscn7)" in text


@pytest.mark.parametrize("missing, message", [
    ("model.safetensors", "without weights"),
    ("config.json", "without config"),
    ("README.md", "without card"),
])
def test_unpublishable_folder_is_refused(tmp_path, missing, message):
    folder = make_folder(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(PublishError, match=message):
        plan_upload(folder)


def test_missing_folder_exit_code(tmp_path, capsys):
    assert hub.main([str(tmp_path / "nope"), "--repo-id", "me/x", "--dry-run"]) == 2
    assert "does not exist" in capsys.readouterr().err
