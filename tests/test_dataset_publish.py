"""Publishing datasets: every builder's push, re-push, dry run and refusals against a fake HfApi (no network),
and the cards they write checked offline with huggingface_hub's DatasetCard and datasets' metadata readers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from datasets.utils.metadata import MetadataConfigs, known_task_ids
from fake_hub import FakeHub
from huggingface_hub import CommitOperationDelete, DatasetCard, DatasetCardData

from dataset_builders import publish
from dataset_builders.build_benchmarks import main as build_benchmarks
from dataset_builders.build_corpus import main as build_corpus
from dataset_builders.build_remotecount import main as build_remotecount
from dataset_builders.publish import PublishError, relative_report
from rclip_hf import hub as rclip_hub

DATA = Path(__file__).parent / "data"
BOX = "4 4 40 4 40 40 4 40 plane 0\n"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(orgs=(("team", "write"), ("readers", "read")))
    monkeypatch.setattr(rclip_hub, "HfApi", lambda: fake)
    monkeypatch.setattr(rclip_hub, "get_token", lambda: "hf_fake")
    return fake


def write_dota(root: Path, names: list[str]) -> Path:
    """A DOTA-layout folder: one 64x64 image with a plane per name, and a label file without its image."""
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    for name in names:
        shutil.copy(DATA / "bad_images" / name, root / "images" / name)
        (root / "labelTxt" / f"{Path(name).stem}.txt").write_text(BOX * 3)
    (root / "labelTxt" / "orphan.txt").write_text(BOX)
    return root


def check_card(folder: Path) -> dict:
    """The card's YAML survives huggingface_hub's DatasetCard round trip and datasets reads its configs and
    splits; every task is a Hub task and a licence 'other' is named and linked to a file in the folder."""
    text = (folder / "README.md").read_text()
    metadata = yaml.safe_load(text.split("---\n")[1])
    card = DatasetCard(text)
    assert card.data.to_dict() == metadata
    assert DatasetCard(str(card)).data.to_dict() == metadata
    assert DatasetCardData(**metadata).to_dict() == metadata
    assert set(metadata["task_categories"]) <= set(known_task_ids)
    assert metadata["language"] == ["en"] and metadata["pretty_name"]
    assert metadata["license"] == "other" and metadata["license_name"] and (folder / metadata["license_link"]).is_file()
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    info = datasets.DatasetInfo._from_yaml_dict(metadata["dataset_info"])
    loaded = datasets.load_dataset(str(folder))
    assert list(configs["default"]["data_files"][0]) == ["split", "path"]
    assert {name: split.num_examples for name, split in info.splits.items()} == {
        name: split.num_rows for name, split in loaded.items()}
    assert all(split.num_bytes > 0 for split in info.splits.values()) and info.download_size > 0
    assert info.features == next(iter(loaded.values())).features
    return metadata


def test_corpus_push_then_repush_replaces_shards_with_a_relative_report(tmp_path: Path, hub: FakeHub) -> None:
    root = write_dota(tmp_path / "dota", ["good.png"])
    output = tmp_path / "corpus"
    args = ["--source", f"dota={root}", "--output", str(output), "--push-to-hub", "team/rs-corpus", "--private"]
    assert build_corpus(args) == 0
    assert [name for name, _ in hub.calls] == ["whoami", "create_repo", "list_repo_files", "create_commit"]
    assert hub.calls[1][1] == {"repo_id": "team/rs-corpus", "repo_type": "dataset", "private": True, "exist_ok": True}
    assert hub.calls[3][1]["repo_type"] == "dataset"
    first = sorted(hub.repos["team/rs-corpus"])
    shard = next(path for path in first if path.startswith("data/"))
    assert first == ["LICENSE.md", "README.md", "build_report.json", shard]
    assert (output / shard).read_bytes() == hub.repos["team/rs-corpus"][shard]
    report = hub.repos["team/rs-corpus"]["build_report.json"].decode()
    assert str(tmp_path) not in report and str(tmp_path) in (output / "build_report.json").read_text()
    assert json.loads(report)["sources"]["dota"]["skipped"][0]["path"] == "dota/labelTxt/orphan.txt"
    assert json.loads(report)["config"]["source"] == ["dota=dota"]
    metadata = check_card(output)
    assert metadata["size_categories"] == ["n<1K"]
    assert metadata["task_categories"] == ["zero-shot-image-classification", "image-to-text", "text-retrieval"]
    assert "DOTA: academic research use only" in (output / "LICENSE.md").read_text()

    shutil.copy(DATA / "bad_images" / "rgba.png", root / "images" / "second.png")  # one source changes
    (root / "labelTxt" / "second.txt").write_text(BOX)
    assert build_corpus(args[:-1] + ["--push_to_hub", "team/rs-corpus"]) == 0  # the other spelling
    second = sorted(hub.repos["team/rs-corpus"])
    new_shard = next(path for path in second if path.startswith("data/"))
    assert new_shard != shard and second == ["LICENSE.md", "README.md", "build_report.json", new_shard]
    deleted = [op.path_in_repo for op in hub.calls[-1][1]["operations"] if isinstance(op, CommitOperationDelete)]
    assert deleted == [shard] and hub.uploaded() == sorted(["LICENSE.md", "README.md", "build_report.json", new_shard])
    assert hub.calls[-3][1]["private"] is False
    assert new_shard in hub.repos["team/rs-corpus"]["README.md"].decode()


def test_remotecount_dry_run_needs_no_token_and_uploads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(rclip_hub, "get_token", lambda: None)
    monkeypatch.setattr(rclip_hub, "HfApi", lambda: pytest.fail("a dry run must not create an HfApi"))
    root = write_dota(tmp_path / "dota", ["good.png"])
    caplog.set_level("INFO", logger="dataset_builders.publish")
    assert build_remotecount(["--dota", str(root), "--output", str(tmp_path / "rc"), "--push-to-hub", "me/rc",
                              "--dry-run"]) == 0
    text = caplog.text
    assert "dry run, nothing uploaded: public dataset repo me/rc: 4 files" in text
    for path in ("README.md", "LICENSE.md", "build_report.json", "data/test-00000-of-00001-"):
        assert f"  {path}" in text
    assert "  size_categories:\n  - n<1K\n" in text and "  pretty_name: RemoteCount\n" in text
    metadata = check_card(tmp_path / "rc")
    assert metadata["task_categories"] == ["zero-shot-image-classification"]


def test_remotecount_push_and_repush(tmp_path: Path, hub: FakeHub) -> None:
    root = write_dota(tmp_path / "dota", ["good.png"])
    args = ["--dota", str(root), "--output", str(tmp_path / "rc"), "--push-to-hub", "me/remotecount"]
    assert build_remotecount(args) == 0
    first = set(hub.repos["me/remotecount"])
    assert build_remotecount(args + ["--seed", "3"]) == 0  # other captions: new shard digest
    second = set(hub.repos["me/remotecount"])
    assert len(first - second) == len(second - first) == 1 and {"README.md", "LICENSE.md"} <= second
    assert "dota/labelTxt/orphan.txt" in hub.repos["me/remotecount"]["build_report.json"].decode()


def test_benchmarks_push_one_repo_per_benchmark(tmp_path: Path, hub: FakeHub, shared_data: Path) -> None:
    source = tmp_path / "rsscn7"
    for label in ("aGrass", "bField"):
        (source / label).mkdir(parents=True)
        for path in sorted((shared_data / "rsscn7" / label).iterdir())[:2]:
            shutil.copy(path, source / label / path.name)
    assert build_benchmarks(["--classification", f"rsscn7={source}", "--retrieval", f"rsitmd={DATA / 'captions'}",
                             "--output", str(tmp_path / "out"), "--push-to-hub", "me/rs-{name}"]) == 0
    assert sorted(hub.repos) == ["me/rs-rsitmd", "me/rs-rsscn7"]
    for name in ("rsitmd", "rsscn7"):
        files = hub.repos[f"me/rs-{name}"]
        assert sorted(files)[:3] == ["LICENSE.md", "README.md", "build_report.json"]
        assert str(tmp_path) not in files["build_report.json"].decode()
    assert json.loads(hub.repos["me/rs-rsscn7"]["build_report.json"])["source"] == "rsscn7"
    retrieval = check_card(tmp_path / "out" / "rsitmd")
    assert retrieval["task_categories"] == ["image-to-text", "text-retrieval"]
    classification = check_card(tmp_path / "out" / "rsscn7")
    assert classification["pretty_name"] == "RSSCN7"
    assert classification["dataset_info"]["splits"] == [
        {"name": "train", "num_bytes": classification["dataset_info"]["splits"][0]["num_bytes"], "num_examples": 2},
        {"name": "test", "num_bytes": classification["dataset_info"]["splits"][1]["num_bytes"], "num_examples": 2}]
    first = {path for path in hub.repos["me/rs-rsscn7"] if path.startswith("data/")}
    assert build_benchmarks(["--classification", f"rsscn7={source}", "--test-fraction", "1.0", "--output", str(tmp_path / "out"),
                             "--push_to_hub", "me/rs-rsscn7"]) == 0  # one benchmark: the repo id as given
    second = {path for path in hub.repos["me/rs-rsscn7"] if path.startswith("data/")}
    assert second == {p.relative_to(tmp_path / "out" / "rsscn7").as_posix()
                      for p in (tmp_path / "out" / "rsscn7" / "data").iterdir()}
    assert not first & second and len(second) == 1  # the previous train and test shards are deleted
    assert hub.repos["me/rs-rsscn7"]["README.md"] == (tmp_path / "out" / "rsscn7" / "README.md").read_bytes()


@pytest.mark.parametrize("repo, whoami, message", [
    ("me/rs-{name}", FakeHub(), "2 benchmarks need one repo each; put {name} in the repo id"),
    ("someone/rs-{name}", FakeHub(), "me cannot write to 'someone' (writable: me); choose a repo"),
    ("readers/rs-{name}", FakeHub(orgs=(("readers", "read"),)), "cannot write to 'readers'"),
    ("me/rs-{name}", FakeHub(role="read"), "the token is read-only; log in with a write token"),
    ("me/bad repo {name}", FakeHub(), "not a Hub repo id"),
])
def test_push_refusals_are_one_line_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture, repo: str, whoami: FakeHub,
                                                    message: str) -> None:
    monkeypatch.setattr(rclip_hub, "HfApi", lambda: whoami)
    monkeypatch.setattr(rclip_hub, "get_token", lambda: "hf_fake")
    repo = repo.replace("{name}", "") if message.startswith("2 benchmarks") else repo
    args = ["--classification", f"rsscn7={tmp_path}", "--retrieval", f"rsitmd={DATA / 'captions'}",
            "--output", str(tmp_path / "out"), "--push-to-hub", repo]
    assert build_benchmarks(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("error: --push-to-hub")
    assert not (tmp_path / "out").exists() and not [name for name, _ in whoami.calls if name != "whoami"]


def test_push_without_token_fails_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(rclip_hub, "get_token", lambda: None)
    root = write_dota(tmp_path / "dota", ["good.png"])
    for main, args in ((build_corpus, ["--source", f"dota={root}"]), (build_remotecount, ["--dota", str(root)])):
        assert main(args + ["--output", str(tmp_path / "out"), "--push-to-hub", "me/x"]) == 2
        err = capsys.readouterr().err
        assert err == ("error: --push-to-hub me/x: no Hugging Face token; run `hf auth login`, set HF_TOKEN or pass "
                       "--token (or add --dry-run to see what would be uploaded)\n")
        assert not (tmp_path / "out").exists()


def test_corpus_push_passes_token_revision_message_and_pull_request_and_publishes_no_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, made = FakeHub(), []
    monkeypatch.setattr(rclip_hub, "get_token", lambda: None)  # only --token authorises the push
    monkeypatch.setattr(rclip_hub, "HfApi", lambda **kwargs: made.append(kwargs) or fake)
    root = write_dota(tmp_path / "dota", ["good.png"])
    args = ["--source", f"dota={root}", "--output", str(tmp_path / "corpus"), "--push-to-hub", "me/corpus",
            "--token", "hf_given_secret", "--revision", "v1", "--commit-message", "first build"]
    assert build_corpus(args) == 0
    assert made == [{"token": "hf_given_secret"}]
    commit = fake.commits()[-1]
    assert (commit["revision"], commit["commit_message"], commit["create_pr"]) == ("v1", "first build", False)
    assert sorted(fake.refs[("me/corpus", "v1")]) == sorted(fake.uploaded()) and fake.repos["me/corpus"] == {}
    assert all(b"hf_given_secret" not in data for data in fake.refs[("me/corpus", "v1")].values())
    assert "hf_given_secret" not in (tmp_path / "corpus" / "build_report.json").read_text()
    assert build_corpus(args[:-4] + ["--create_pr", "--commit_message", "proposal"]) == 0
    commit = fake.commits()[-1]
    assert (commit["revision"], commit["commit_message"], commit["create_pr"]) == (None, "proposal", True)
    assert ("me/corpus", "refs/pr/1") in fake.refs


def test_dataset_push_follows_a_symlink_only_to_a_published_file_inside_the_folder(tmp_path: Path,
                                                                                 hub: FakeHub) -> None:
    root = write_dota(tmp_path / "dota", ["good.png"])
    output = tmp_path / "rc"
    assert build_remotecount(["--dota", str(root), "--output", str(output)]) == 0
    shard = next((output / "data").glob("*.parquet")).name
    secret = tmp_path / "secret.env"
    secret.write_text("HF_TOKEN=hf_secret")
    (output / "data" / "leak-00000.parquet").symlink_to(secret)  # a published name pointing outside
    (output / ".env").write_text("HF_TOKEN=hf_inside")
    (output / "data" / "inside-00000.parquet").symlink_to(output / ".env")  # inside, to a file never published
    (output / "data" / "copy-00000.parquet").symlink_to(shard)  # inside, to a published shard: followed
    upload = publish.plan_push(output, "me/rc", {"dota": root})
    assert "data/leak-00000.parquet" not in upload.paths and "data/inside-00000.parquet" not in upload.paths
    assert upload.links == {"data/copy-00000.parquet": f"data/{shard}"}
    assert dict(upload.refused) == {
        "data/leak-00000.parquet": "symlink to a file outside the folder (or to nothing): never uploaded",
        "data/inside-00000.parquet": "symlink to .env, not on the upload allow-list: never uploaded"}
    text = publish.describe_push(upload, private=False)
    assert f"(link -> data/{shard})" in text and "refused (2):" in text
    api = FakeHub()
    publish.push_dataset(output, publish.PushConfig(push_to_hub="me/rc"), {"dota": root}, api, "test")
    sent = api.repos["me/rc"]
    assert not any(b"hf_secret" in data or b"hf_inside" in data for data in sent.values())
    assert sent["data/copy-00000.parquet"] == (output / "data" / shard).read_bytes()


def test_a_dry_run_refuses_an_invalid_repo_id_before_building(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_dota(tmp_path / "dota", ["good.png"])
    assert build_remotecount(["--dota", str(root), "--output", str(tmp_path / "rc"), "--push-to-hub", "me/bad id",
                              "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --push-to-hub 'me/bad id': not a Hub repo id") and len(err.splitlines()) == 1
    assert not (tmp_path / "rc").exists()


def test_relative_report_rewrites_roots_and_refuses_other_local_paths(tmp_path: Path) -> None:
    root = tmp_path / "src"
    report = {"path": f"{root}/a/b.png", "reason": f"image 'x' not found in {root}/images", "frame": f"{root}/v.mp4#3",
              "near": f"{root}2/x.png", "count": 3}
    with pytest.raises(PublishError, match=r"report.near: local path '.*src2/x.png' outside the --source roots"):
        relative_report(report, {"dota": root})
    del report["near"]
    assert relative_report(report, {"dota": root}) == {
        "path": "dota/a/b.png", "reason": "image 'x' not found in dota/images", "frame": "dota/v.mp4#3", "count": 3}
    relative = {"path": "DOTA/images/a.png", "reason": "DOTA has no data here", "root": "DOTA"}
    assert relative_report(relative, {"dota": Path("DOTA"), "src": Path("data")}) == {
        "path": "dota/images/a.png", "reason": "DOTA has no data here", "root": "DOTA"}
    with pytest.raises(PublishError, match="--dry-run needs --push-to-hub"):
        publish.check_push(publish.PushConfig(dry_run=True))
