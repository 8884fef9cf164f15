"""Hub publishing: the upload allow-list, the dry-run listing and the real path against a fake HfApi (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_hub import FakeHub

from rclip_hf import hub
from rclip_hf.hub import HubOptions, PublishError, describe_plan, plan_upload, push

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
    monkeypatch.setattr(hub, "get_token", lambda: None)
    monkeypatch.setattr(hub, "HfApi", lambda **_: pytest.fail("a dry run without a token must not create an HfApi"))
    assert hub.main([str(folder), "--repo-id", "me/remoteclip", "--dry-run", "--private"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run: would create private model repo me/remoteclip and upload 9 files")
    assert "deleting the files of an earlier upload that this one does not send" in out
    for name in PUBLISHED:
        assert f"  {name} " in out
    assert "pytorch_model.bin" in out and "pickle weights are never uploaded" in out
    assert "  license: apache-2.0" in out and "  tags: ['remote-sensing']" in out


def test_real_push_creates_repo_and_uploads_exactly_the_plan(tmp_path):
    folder = make_folder(tmp_path)
    api = FakeHub()
    plan = push(folder, "me/remoteclip", HubOptions(private=True), api=api)
    assert [name for name, _ in api.calls] == ["whoami", "create_repo", "list_repo_files", "create_commit"]
    assert api.calls[1][1] == {"repo_id": "me/remoteclip", "repo_type": "model", "private": True, "exist_ok": True}
    commit = api.commits()[0]
    assert commit["repo_id"] == "me/remoteclip" and commit["repo_type"] == "model"
    assert [operation.path_in_repo for operation in commit["operations"]] == PUBLISHED == plan.paths
    assert commit["commit_message"] == "Upload RemoteCLIP model (rclip-hf)"
    assert commit["revision"] is None and commit["create_pr"] is False
    assert api.repos["me/remoteclip"]["README.md"] == CARD.encode()


def test_dry_run_list_and_upload_are_one_list_even_for_pattern_like_names(tmp_path, monkeypatch, capsys):
    """Names with `[`, `*` or `?` are uploaded as themselves: no pattern can pull in a file the dry run omits."""
    folder = make_folder(tmp_path)
    (folder / "plots" / "[ab].png").write_bytes(b"brackets")  # as a pattern it would match plots/a.png
    (folder / "plots" / "a.png").write_bytes(b"a")
    (folder / "plots" / "*.png").write_bytes(b"star")
    (folder / "plots" / "a.png.bak").write_bytes(b"not allowed")
    assert hub.main([str(folder), "--repo-id", "me/x", "--dry-run"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.split("\ndeleting")[0].splitlines()[1:]]
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


def test_a_symlink_is_followed_only_to_an_allowed_file_and_the_dry_run_marks_it(tmp_path, capsys):
    """`results.json -> .env` inside the folder would upload the secret under an allowed name: refused."""
    folder = make_folder(tmp_path)
    (folder / ".env").write_text("HF_TOKEN=hf_secret")
    (folder / "results.json").unlink()
    (folder / "results.json").symlink_to(".env")
    (folder / "plots" / "copy.png").symlink_to("recall_at_k.png")
    plan = plan_upload(folder)
    assert "results.json" not in plan.paths and plan.links == {"plots/copy.png": "plots/recall_at_k.png"}
    assert dict(plan.skipped)["results.json"] == "symlink to .env, not on the upload allow-list: never uploaded"
    assert hub.main([str(folder), "--repo-id", "me/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  plots/copy.png " in out and "(link -> plots/recall_at_k.png)" in out
    api = FakeHub()
    push(folder, "me/x", api=api)
    assert b"HF_TOKEN=hf_secret" not in api.repos["me/x"].values() and "results.json" not in api.repos["me/x"]


def test_a_dangling_readme_symlink_never_gets_a_card_written_through_it(tmp_path, capsys):
    from inference_models import make_tiny_model_dir

    folder = make_tiny_model_dir(tmp_path / "tiny")
    target = tmp_path / "elsewhere" / "written.md"
    target.parent.mkdir()
    (folder / "README.md").symlink_to(target)
    assert hub.main([str(folder), "--repo-id", "me/tiny", "--dry-run"]) == 2
    assert "README.md is a symlink to nothing; a card is never written through a link" in capsys.readouterr().err
    assert not target.exists() and (folder / "README.md").is_symlink()


@pytest.mark.parametrize("repo_id", ["me/bad name", "a/b/c", "me/x--y"])
def test_a_dry_run_refuses_an_invalid_repo_id(tmp_path, capsys, repo_id):
    folder = make_folder(tmp_path)
    assert hub.main([str(folder), "--repo-id", repo_id, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --repo-id {repo_id!r}: not a Hub repo id") and len(err.strip().splitlines()) == 1


def test_a_re_push_deletes_the_earlier_uploads_files_no_longer_planned_and_the_dry_run_lists_them(
        tmp_path, monkeypatch, capsys):
    folder = make_folder(tmp_path)
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"shard")
    api = FakeHub()
    push(folder, "me/x", api=api)
    api.repos["me/x"][".gitattributes"] = b"*.safetensors filter=lfs"  # the Hub's own file: never ours to delete
    api.repos["me/x"]["notes/by-hand.md"] = b"written on the Hub"  # not on the allow-list: kept
    (folder / "model-00001-of-00002.safetensors").unlink()
    (folder / "plots" / "zero_shot_accuracy.png").unlink()
    monkeypatch.setattr(hub, "HfApi", lambda **_: api)
    monkeypatch.setattr(hub, "get_token", lambda: "hf_fake")
    assert hub.main([str(folder), "--repo-id", "me/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "deleting 2 files of an earlier upload there:\n  model-00001-of-00002.safetensors\n" \
           "  plots/zero_shot_accuracy.png\n" in out
    assert len(api.commits()) == 1  # the dry run read the repo, committed nothing
    plan = push(folder, "me/x", api=api)
    assert api.deleted() == plan.deletions == ["model-00001-of-00002.safetensors", "plots/zero_shot_accuracy.png"]
    assert api.uploaded() == plan.paths
    assert sorted(api.repos["me/x"]) == sorted([".gitattributes", "notes/by-hand.md", *plan.paths])


def test_a_dry_run_that_cannot_read_the_repo_says_the_deletions_are_unknown(tmp_path, monkeypatch, capsys):
    api = FakeHub()

    def offline(**_):
        raise ConnectionError("Name or service not known")

    api.list_repo_files = offline
    monkeypatch.setattr(hub, "get_token", lambda: "hf_saved")
    monkeypatch.setattr(hub, "HfApi", lambda **_: api)
    assert hub.main([str(make_folder(tmp_path)), "--repo-id", "me/x", "--dry-run"]) == 0
    assert "the repo was not read: no token, or offline" in capsys.readouterr().out


def test_token_revision_commit_message_and_pull_request_reach_the_hub(tmp_path, monkeypatch, capsys):
    folder = make_folder(tmp_path)
    api = FakeHub()
    made = []
    monkeypatch.setattr(hub, "get_token", lambda: None)  # only --token can authorise this push
    monkeypatch.setattr(hub, "HfApi", lambda **kwargs: made.append(kwargs) or api)
    assert hub.main([str(folder), "--repo-id", "me/x", "--token", "hf_given", "--revision", "v2",
                     "--commit-message", "retrained", "--private"]) == 0
    assert made == [{"token": "hf_given"}]
    assert ("create_branch", {"repo_id": "me/x", "repo_type": "model", "branch": "v2", "exist_ok": True}) in api.calls
    commit = api.commits()[-1]
    assert (commit["revision"], commit["commit_message"], commit["create_pr"]) == ("v2", "retrained", False)
    assert sorted(api.refs[("me/x", "v2")]) == PUBLISHED and api.repos["me/x"] == {}  # main untouched
    assert "on branch v2 in one commit" in capsys.readouterr().out
    assert hub.main([str(folder), "--repo_id", "me/x", "--token", "hf_given", "--create_pr",
                     "--commit_message", "proposal"]) == 0
    commit = api.commits()[-1]
    assert (commit["revision"], commit["commit_message"], commit["create_pr"]) == (None, "proposal", True)
    assert sorted(api.refs[("me/x", "refs/pr/1")]) == PUBLISHED and api.repos["me/x"] == {}
    assert "as a pull request" in capsys.readouterr().out


def test_export_push_to_hub_takes_the_same_hub_options(tmp_path, monkeypatch):
    from inference_models import make_tiny_model_dir

    from rclip_hf.export import main as export

    api, made = FakeHub(), []
    monkeypatch.setattr(hub, "get_token", lambda: None)
    monkeypatch.setattr(hub, "HfApi", lambda **kwargs: made.append(kwargs) or api)
    model = make_tiny_model_dir(tmp_path / "tiny")
    assert export([str(model), "--to", "open_clip", "--output", str(tmp_path / "oc"), "--push-to-hub", "me/oc",
                   "--token", "hf_given", "--create-pr", "--commit_message", "open_clip files", "--private"]) == 0
    assert made == [{"token": "hf_given"}]
    assert ("create_repo", {"repo_id": "me/oc", "repo_type": "model", "private": True, "exist_ok": True}) in api.calls
    commit = api.commits()[-1]
    assert (commit["create_pr"], commit["commit_message"]) == (True, "open_clip files")
    assert sorted(api.refs[("me/oc", "refs/pr/1")]) == ["README.md", "open_clip_config.json",
                                                        "open_clip_model.safetensors"]


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
    text = describe_plan(plan_upload(folder), "me/x", HubOptions())
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
    ("me/x", FakeHub(), None, "--repo-id me/x: no Hugging Face token; run `hf auth login`, set HF_TOKEN or pass --token"),
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
    monkeypatch.setattr(hub, "HfApi", lambda **_: pytest.fail("no token: no HfApi"))
    output = tmp_path / "out"
    assert convert(["--checkpoint", str(tmp_path / "missing.pt"), "--arch", "RN50", "--output", str(output),
                    "--push-to-hub", "me/rn50"]) == 2
    assert capsys.readouterr().err.startswith("error: --push-to-hub me/rn50: no Hugging Face token")
    assert not output.exists()


TINY = Path(__file__).resolve().parents[1] / "training_scripts" / "configs" / "tiny.yaml"


def test_train_push_to_hub_uploads_final_with_a_card_of_its_architecture_start_and_training(
        tmp_path, monkeypatch, shared_data):
    """`train.py --push_to_hub --hub_model_id` goes through the push path, with the same Hub options."""
    from training_corpus import build_scene_corpus

    from training_scripts.train import main as train

    corpus = tmp_path / "corpus"
    build_scene_corpus(shared_data, corpus, per_class=4, size=64)
    api, made = FakeHub(), []
    monkeypatch.setattr(hub, "get_token", lambda: None)
    monkeypatch.setattr(hub, "HfApi", lambda **kwargs: made.append(kwargs) or api)
    common = ["--config", str(TINY), "--dataset", str(corpus), "--batch_size", "8", "--max_steps", "2",
              "--checkpointing_steps", "0", "--warmup_steps", "1", "--report_to", "none"]
    assert train([*common, "--output_dir", str(tmp_path / "nope"), "--push_to_hub"]) == 2  # no repo: before training
    assert not (tmp_path / "nope").exists() and api.calls == []
    assert train([*common, "--output_dir", str(tmp_path / "run"), "--push_to_hub", "--hub_model_id", "me/tiny-rs",
                  "--token", "hf_given", "--revision", "run1", "--commit_message", "two steps"]) == 0
    assert made == [{"token": "hf_given"}]
    commit = api.commits()[-1]
    assert (commit["revision"], commit["commit_message"]) == ("run1", "two steps")
    final = tmp_path / "run" / "final"
    assert api.uploaded() == plan_upload(final).paths and "README.md" in api.uploaded()
    card = (final / "README.md").read_text()
    assert api.refs[("me/tiny-rs", "run1")]["README.md"] == card.encode()
    assert "- **Architecture:** image tower: ViT (width 64, 2 layers, patch 16), 64 px" in card
    assert "- **Starting point:** random initialisation of an inline `--model_config`" in card
    assert "| `steps` | `2` |" in card and "| `global batch` | `8` |" in card and f"| `dataset` | `{corpus}` |" in card
    assert "this folder is a conversion" not in card and "None" not in card.split("## Intended use")[0]
    assert "hf_given" not in (tmp_path / "run" / "train_args.json").read_text()


def _tiny_resnet_dir(folder: Path) -> Path:
    from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, build_processor

    text = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
    tower = {"model_type": "remoteclip_resnet_vision", "layers": [1, 1, 1, 1], "width": 8, "num_attention_heads": 4,
             "projection_dim": 16, "image_size": 64}
    RemoteCLIPModel(RemoteCLIPConfig(text_config=text, vision_config=tower, projection_dim=16)).save_pretrained(folder)
    build_processor(image_size=64).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["vit", "resnet", "open_clip"])
def test_each_card_kind_has_its_loaders_runnable_install_lines_and_architecture(tmp_path, kind):
    """The card a push writes names this folder's loaders only, each with an install line that runs: the package
    from its code repo (setup.cfg `url`, not on PyPI), `transformers>=5` wherever remote code is used."""
    import configparser

    from inference_models import make_tiny_model_dir

    from rclip_hf.export import export_open_clip

    folder = tmp_path / f"{kind}-model"
    if kind == "resnet":
        _tiny_resnet_dir(folder)
    else:
        make_tiny_model_dir(folder)
    if kind == "open_clip":
        export_open_clip(folder, tmp_path / "open_clip")
        folder = tmp_path / "open_clip"
    assert hub.ensure_card(folder, "me/rs") == folder / "README.md"
    card = (folder / "README.md").read_text()
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    url = setup["metadata"]["url"]
    assert url.startswith("https://github.com/") and url in setup["metadata"]["project_urls"]
    installs = [block.split("\n")[0] for block in card.split("```bash\n")[1:]]
    expected = {"vit": ["pip install torch transformers pillow", f'pip install "rclip-hf @ git+{url}"'],
                "resnet": ['pip install torch "transformers>=5" pillow', f'pip install "rclip-hf @ git+{url}"'],
                "open_clip": ["pip install torch open_clip_torch pillow"]}[kind]
    assert installs == expected
    assert ("trust_remote_code=True" in card) == (kind == "resnet")
    assert ('open_clip.create_model_and_transforms("hf-hub:me/rs")' in card) == (kind == "open_clip")
    assert f"[rclip-hf]({url})" in card and "@article{remoteclip," in card
    if kind != "open_clip":
        assert "(image tower: " + ("modified ResNet" if kind == "resnet" else "ViT") in card
        assert "None" not in card and "truncation=True" in card
    metadata = plan_upload(folder).metadata
    assert metadata["library_name"] == ("open_clip" if kind == "open_clip" else "transformers")
    assert metadata["pipeline_tag"] == "zero-shot-image-classification"
