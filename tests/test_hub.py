"""Hub publishing: the upload allow-list, the dry-run listing and the real path against a fake HfApi (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_hub import FakeHub

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
    api = FakeHub()
    plan = push(folder, "me/remoteclip", private=True, api=api)
    assert [name for name, _ in api.calls] == ["whoami", "create_repo", "create_commit"]
    assert api.calls[1][1] == {"repo_id": "me/remoteclip", "repo_type": "model", "private": True, "exist_ok": True}
    commit = api.calls[2][1]
    assert commit["repo_id"] == "me/remoteclip" and commit["repo_type"] == "model"
    assert [operation.path_in_repo for operation in commit["operations"]] == PUBLISHED == plan.paths
    assert api.repos["me/remoteclip"]["README.md"] == CARD.encode()


def test_dry_run_list_and_upload_are_one_list_even_for_pattern_like_names(tmp_path, monkeypatch, capsys):
    """Names with `[`, `*` or `?` are uploaded as themselves: no pattern can pull in a file the dry run omits."""
    folder = make_folder(tmp_path)
    (folder / "plots" / "[ab].png").write_bytes(b"brackets")  # as a pattern it would match plots/a.png
    (folder / "plots" / "a.png").write_bytes(b"a")
    (folder / "plots" / "*.png").write_bytes(b"star")
    (folder / "plots" / "a.png.bak").write_bytes(b"not allowed")
    assert hub.main([str(folder), "--repo-id", "me/x", "--dry-run"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.split("skipped")[0].splitlines()[1:]]
    api = FakeHub()
    monkeypatch.setattr(hub, "HfApi", lambda: api)
    monkeypatch.setattr(hub, "get_token", lambda: "hf_fake")
    assert hub.main([str(folder), "--repo_id", "me/x"]) == 0
    uploaded = api.uploaded()
    assert uploaded == listed == plan_upload(folder).paths
    assert {"plots/[ab].png", "plots/*.png", "plots/a.png"} <= set(uploaded) and "plots/a.png.bak" not in uploaded
    sent = api.repos["me/x"]
    assert sent["plots/[ab].png"] == b"brackets" and sent["plots/*.png"] == b"star"


def test_symlinks_are_followed_only_inside_the_folder(tmp_path):
    folder = make_folder(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    (folder / "results.json").unlink()
    (folder / "results.json").symlink_to(secret)  # an allowed name pointing outside: refused
    (folder / "plots" / "copy.png").symlink_to(folder / "plots" / "recall_at_k.png")  # inside: followed
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "x.png").write_bytes(b"x")
    (folder / "linked_plots").symlink_to(outside_dir, target_is_directory=True)
    plan = plan_upload(folder)
    assert "results.json" not in plan.paths and "plots/copy.png" in plan.paths
    skipped = dict(plan.skipped)
    assert skipped["results.json"] == "symlink to a file outside the folder (or to nothing): never uploaded"
    assert skipped["linked_plots"] == "symlinked folder: not followed, never uploaded"
    api = FakeHub()
    push(folder, "me/x", api=api)
    sent = api.repos["me/x"]
    assert b"token" not in sent.values() and sent["plots/copy.png"] == b"x" * 10


def test_remote_code_and_open_clip_files_are_on_the_allow_list(tmp_path):
    folder = make_folder(tmp_path)
    names = ["configuration_remoteclip.py", "modeling_remoteclip.py", "processing_remoteclip.py",
             "open_clip_config.json", "open_clip_model.safetensors"]
    for name in names:
        (folder / name).write_text("x")
    (folder / "helper.py").write_text("import os")
    plan = plan_upload(folder)
    assert set(names) <= set(plan.paths) and "helper.py" in dict(plan.skipped)


def test_push_writes_a_card_for_a_folder_without_one(tmp_path, capsys):
    """`rclip-hf push` (like convert/export --push-to-hub) writes the card, with this folder's snippets."""
    from inference_models import make_tiny_model_dir

    folder = make_tiny_model_dir(tmp_path / "tiny")
    assert hub.main([str(folder), "--repo-id", "me/tiny", "--dry-run"]) == 0
    card = (folder / "README.md").read_text()
    assert 'CLIPModel.from_pretrained("me/tiny")' in card and "pip install torch transformers pillow" in card
    assert "README.md" in capsys.readouterr().out


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


@pytest.mark.parametrize("repo, api, token, message", [
    ("someone/x", FakeHub(), "hf_fake", "--repo-id someone/x: me cannot write to 'someone' (writable: me, team)"),
    ("me/x", FakeHub(role="read"), "hf_fake", "--repo-id me/x: the token is read-only; log in with a write token"),
    ("me/x", FakeHub(), None, "--repo-id me/x: no Hugging Face token; run `hf auth login` or set HF_TOKEN"),
])
def test_push_checks_write_access_first_and_uploads_nothing(tmp_path, monkeypatch, capsys, repo, api, token,
                                                           message):
    api.orgs = (("team", "admin"), ("readers", "read"))
    monkeypatch.setattr(hub, "HfApi", lambda: api)
    monkeypatch.setattr(hub, "get_token", lambda: token)
    assert hub.main([str(make_folder(tmp_path)), "--repo-id", repo]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1, err
    assert [name for name, _ in api.calls if name != "whoami"] == []


def test_convert_push_to_hub_checks_the_token_before_converting(tmp_path, monkeypatch, capsys):
    from rclip_hf.convert import main as convert

    monkeypatch.setattr(hub, "get_token", lambda: None)
    monkeypatch.setattr(hub, "HfApi", lambda: pytest.fail("no token: no HfApi"))
    output = tmp_path / "out"
    assert convert(["--checkpoint", str(tmp_path / "missing.pt"), "--arch", "RN50", "--output", str(output),
                    "--push-to-hub", "me/rn50"]) == 2
    assert capsys.readouterr().err.startswith("error: --push-to-hub me/rn50: no Hugging Face token")
    assert not output.exists()
