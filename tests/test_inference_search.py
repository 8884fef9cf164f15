"""Tests of the embedding index: build, resume, failure report, model checks, exact and ANN search."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from inference_models import TINY_EMBED_DIM, copy_images
from offline_hub import cache_as_hub_dataset, go_offline
from PIL import Image

from rclip_hf import cli
from rclip_hf.embeddings import encode_images
from rclip_hf.errors import UserError
from rclip_hf.inference import EmbeddingIndex, IndexModelMismatchError, build_index, load_model, search
from rclip_hf.inference.index import ANN_EF, ANN_REFINE, FAILURES_FILE, ITEMS_TABLE
from rclip_hf.loading import model_fingerprint

pytest_plugins = ("inference_fixtures",)  # fixtures: tiny_model_dir, other_model_dir, tiny_model


@pytest.fixture()
def folder(tmp_path: Path, shared_data: Path) -> Path:
    """Six real RSSCN7 images in two class folders, one corrupt JPEG and one text file."""
    root = tmp_path / "tiles"
    copy_images(shared_data, root, per_class=3)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def test_build_round_trip_and_failure_report(folder: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    report = build_index(folder, tmp_path / "index", model, processor, batch_size=4, commit_every=4)
    assert (report.added, report.already_indexed, report.total) == (6, 0, 6)
    assert [failure["id"] for failure in report.failures] == ["broken.jpg"]
    assert "cannot read image" in report.failures[0]["reason"]
    assert json.loads((tmp_path / "index" / FAILURES_FILE).read_text()) == report.failures

    index = EmbeddingIndex.open(tmp_path / "index")
    expected_ids = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg") if p.name != "broken.jpg")
    assert sorted(index.ids()) == expected_ids and len(index) == 6
    assert index.metadata["fingerprint"] == model_fingerprint(model) and index.dim == TINY_EMBED_DIM
    stored = torch.cat([embeddings for _, embeddings in index.shard_embeddings(batch_size=4)])
    fresh = encode_images(model, processor, [Image.open(folder / item_id) for item_id in index.ids()],
                          show_progress=False)
    assert stored.shape == (6, TINY_EMBED_DIM)
    torch.testing.assert_close(stored, fresh, atol=1e-5, rtol=1e-5)


def test_resume_adds_only_new_images(folder: Path, tmp_path: Path, tiny_model, shared_data: Path) -> None:
    model, processor = tiny_model
    build_index(folder, tmp_path / "index", model, processor)
    copy_images(shared_data, folder, per_class=1, classes=("eForest",))
    report = build_index(folder, tmp_path / "index", model, processor)
    assert (report.added, report.already_indexed, report.total) == (1, 6, 7)
    ids = EmbeddingIndex.open(tmp_path / "index").ids()
    assert len(ids) == len(set(ids)) == 7 and ids[-1].startswith("eForest/")


def test_refuses_another_model(folder: Path, tmp_path: Path, tiny_model, other_model_dir: Path) -> None:
    model, processor = tiny_model
    build_index(folder, tmp_path / "index", model, processor)
    other, other_processor = load_model(other_model_dir)
    with pytest.raises(IndexModelMismatchError, match="holds embeddings of model .* fingerprint"):
        build_index(folder, tmp_path / "index", other, other_processor)
    with pytest.raises(IndexModelMismatchError, match="cannot be mixed or compared"):
        search(tmp_path / "index", "grass", model=other, processor=other_processor)


def test_text_and_image_queries(folder: Path, tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    build_index(folder, tmp_path / "index", model, processor, commit_every=4)
    query_image = folder / "gParking" / "g002.jpg"
    by_image, by_text = search(tmp_path / "index", [query_image, "a parking lot"], k=3, model=model,
                               processor=processor)
    assert by_image[0]["id"] == "gParking/g002.jpg" and by_image[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert [hit["rank"] for hit in by_text] == [1, 2, 3]
    assert [hit["score"] for hit in by_text] == sorted((hit["score"] for hit in by_text), reverse=True)
    single = search(tmp_path / "index", "a parking lot", k=3, model=model, processor=processor)
    assert [hit["id"] for hit in single] == [hit["id"] for hit in by_text]
    assert [hit["score"] for hit in single] == pytest.approx([hit["score"] for hit in by_text], abs=1e-6)
    with pytest.raises(ValueError, match=r"k=7 must be in \[1, 6\]"):
        search(tmp_path / "index", "x", k=7, model=model, processor=processor)


def test_dataset_source_with_ids_and_a_bad_row(tmp_path: Path, tiny_model, shared_data: Path) -> None:
    model, processor = tiny_model
    files = copy_images(shared_data, tmp_path / "images", per_class=2)
    rows = {"image": [{"bytes": path.read_bytes(), "path": None} for path in files] + [{"bytes": b"junk", "path": None}],
            "filename": [path.name for path in files] + ["junk.jpg"]}
    dataset = datasets.Dataset.from_dict(rows, features=datasets.Features(
        {"image": datasets.Image(), "filename": datasets.Value("string")}))
    report = build_index(dataset, tmp_path / "index", model, processor, id_column="filename")
    assert report.added == 4 and [failure["id"] for failure in report.failures] == ["junk.jpg"]
    index = EmbeddingIndex.open(tmp_path / "index")
    assert sorted(index.ids()) == sorted(path.name for path in files)
    position = index.ids().index(files[3].name)
    assert index.items([position]) == [{"id": files[3].name, "path": "", "row": 3}]
    dataset.to_parquet(str(tmp_path / "saved" / "data" / "train-00000.parquet"))
    from_folder = build_index(tmp_path / "saved", tmp_path / "index2", model, processor)
    assert from_folder.added == 4 and sorted(EmbeddingIndex.open(tmp_path / "index2").ids()) == ["0", "1", "2", "3"]
    with pytest.raises(KeyError, match="has no column 'name'"):
        build_index(dataset, tmp_path / "index3", model, processor, id_column="name")


def test_hub_dataset_id_source_indexes_from_the_offline_cache_then_searches(
        tmp_path: Path, tiny_model_dir: Path, shared_data: Path, monkeypatch, capsys) -> None:
    files = copy_images(shared_data, tmp_path / "images", per_class=2)
    dataset = datasets.Dataset.from_dict(
        {"image": [{"bytes": path.read_bytes(), "path": None} for path in files],
         "filename": [path.name for path in files]},
        features=datasets.Features({"image": datasets.Image(), "filename": datasets.Value("string")}))
    (tmp_path / "repo").mkdir()
    dataset.to_parquet(str(tmp_path / "repo" / "train-00000-of-00001.parquet"))
    cache_as_hub_dataset(tmp_path / "repo", "offline-owner/rs-tiles")
    go_offline(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no folder offline-owner/ here: the id is not a path
    index_dir = str(tmp_path / "index")
    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", "offline-owner/rs-tiles", "--output",
                     index_dir, "--id-column", "filename", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 4
    index = EmbeddingIndex.open(index_dir)
    assert sorted(index.ids()) == sorted(path.name for path in files)
    assert index.metadata["sources"] == ["offline-owner/rs-tiles"]  # the repo id, not a path under the cwd
    assert cli.main(["search", "--model", str(tiny_model_dir), "--index", index_dir, "--image", str(files[3]),
                     "--top-k", "1", "--format", "json"]) == 0
    [hit] = json.loads(capsys.readouterr().out)
    assert hit["id"] == files[3].name and hit["score"] == pytest.approx(1.0, abs=1e-5)

    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", "offline-owner/rs-nothing", "--output",
                     str(tmp_path / "index2")]) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]  # no traceback
    assert error.startswith("error: --source offline-owner/rs-nothing: no such local folder, and not loadable as a "
                            "Hub dataset id")
    assert cli.main(["index", "--model", str(tiny_model_dir), "--source", "offline-owner/rs-tiles", "--output",
                     str(tmp_path / "index3"), "--window", "64"]) == 2
    assert "--source offline-owner/rs-tiles: a Hub dataset id is indexed as whole images, not in windows" in (
        capsys.readouterr().err)


def test_a_streaming_dataset_source_is_refused_in_one_line(tmp_path: Path, tiny_model, shared_data: Path) -> None:
    model, processor = tiny_model
    files = copy_images(shared_data, tmp_path / "images", per_class=1)
    dataset = datasets.Dataset.from_dict({"image": [str(path) for path in files]},
                                         features=datasets.Features({"image": datasets.Image()}))
    with pytest.raises(UserError, match=r"--source .*: a streaming \(iterable\) dataset cannot be indexed"):
        build_index(dataset.to_iterable_dataset(), tmp_path / "index", model, processor)
    assert not (tmp_path / "index").exists()


def test_bad_sources(tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    with pytest.raises(FileNotFoundError, match="index source not found: .*nowhere"):
        build_index(tmp_path / "nowhere", tmp_path / "index", model, processor)
    with pytest.raises(FileNotFoundError, match=f"no embedding index at .*nothing .*{ITEMS_TABLE}"):
        EmbeddingIndex.open(tmp_path / "nothing")


@pytest.fixture(scope="module")
def synthetic_index(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> tuple[EmbeddingIndex, torch.Tensor]:
    """50,000 random unit vectors in commits of 10,000, with planted exact duplicates in other commits."""
    model, _ = tiny_model
    generator = torch.Generator().manual_seed(0)
    gallery = torch.nn.functional.normalize(torch.randn(50_000, TINY_EMBED_DIM, generator=generator), dim=-1)
    gallery[20_000] = gallery[100]  # a tie across shards: the lower position must rank first
    gallery[45_000] = gallery[100]
    index = EmbeddingIndex.open_or_create(tmp_path_factory.mktemp("synthetic") / "index", model)
    for start in range(0, len(gallery), 10_000):
        block = range(start, min(start + 10_000, len(gallery)))
        index.add([f"item-{i}" for i in block], [""] * len(block), list(block), gallery[start : block.stop])
        index.commit()
    return index, gallery


def test_exact_search_over_50k_equals_brute_force(synthetic_index) -> None:
    index, gallery = synthetic_index
    queries = torch.nn.functional.normalize(torch.randn(64, TINY_EMBED_DIM, generator=torch.Generator().manual_seed(1)),
                                            dim=-1)
    queries[0] = gallery[100]
    assert index.ids() == [f"item-{i}" for i in range(len(gallery))]  # appended in order: positions are rows
    scores, positions = index.search_embeddings(queries, k=25, backend="exact", chunk_size=1000)
    brute = queries @ gallery.T  # (64, 50000)
    expected_scores, expected_positions = brute.topk(25, dim=1)
    assert positions.shape == (64, 25)
    torch.testing.assert_close(scores, expected_scores, atol=1e-5, rtol=0)
    assert torch.equal(positions[1:], expected_positions[1:])
    assert positions[0, :3].tolist() == [100, 20_000, 45_000]
    assert index.items([20_000])[0]["id"] == "item-20000"


def test_ann_recall_on_clustered_data(tmp_path: Path, tiny_model, capfd) -> None:
    """IVF-HNSW-SQ at the defaults (a partition per `ANN_PARTITION_ITEMS` items, probes, ef, refine) finds >= 95 %
    of the exact top 10 on clustered vectors, with and without a prefilter, and a k whose candidates (k x refine)
    outnumber `ANN_EF`; `auto` searches exactly below `ANN_MIN_ITEMS` items; Lance prints nothing while searching
    (no deprecation warning a query)."""
    model, _ = tiny_model
    generator = torch.Generator().manual_seed(3)
    centres = torch.randn(64, TINY_EMBED_DIM, generator=generator)
    gallery = centres[torch.randint(0, 64, (20_000,), generator=generator)]
    gallery = torch.nn.functional.normalize(gallery + 0.3 * torch.randn(gallery.shape, generator=generator), dim=-1)
    index = EmbeddingIndex.open_or_create(tmp_path / "index", model)
    index.add([f"item-{i}" for i in range(len(gallery))], [""] * len(gallery), list(range(len(gallery))), gallery)
    index.commit()
    index.build_ann()
    assert index.has_ann()
    queries = torch.nn.functional.normalize(
        centres[:16] + 0.3 * torch.randn(16, TINY_EMBED_DIM, generator=generator), dim=-1)
    _, exact = index.search_embeddings(queries, k=10, backend="exact")
    scores, approx = index.search_embeddings(queries, k=10, backend="ann")
    assert torch.equal(index.search_embeddings(queries, k=10, backend="auto")[1], exact)  # < ANN_MIN_ITEMS: exact
    recall = sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), approx.tolist())) / exact.numel()
    assert recall >= 0.95
    torch.testing.assert_close(scores[:, 0], (queries * gallery[approx[:, 0]]).sum(1), atol=1e-4, rtol=0)
    allowed = torch.arange(len(gallery)) % 7 == 0
    _, exact = index.search_embeddings(queries, k=10, backend="exact", allowed=allowed)
    _, approx = index.search_embeddings(queries, k=10, backend="ann", where="row % 7 = 0")
    assert (approx % 7 == 0).all()
    assert sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), approx.tolist())) / exact.numel() >= 0.95
    k = ANN_EF // ANN_REFINE + 10
    _, exact = index.search_embeddings(queries[:2], k=k, backend="exact")
    _, approx = index.search_embeddings(queries[:2], k=k, backend="ann")
    assert sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), approx.tolist())) / exact.numel() >= 0.95
    assert "WARN" not in capfd.readouterr().err
