"""End to end: the evaluation runner on real images from ../shared/data with a tiny random-weight model."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from offline_hub import cache_as_hub_dataset, go_offline

import rclip_hf
from rclip_hf.errors import UserError
from rclip_hf.evaluation.runner import (
    BenchmarkRunner,
    EvalArguments,
    load_eval_model,
    main,
    markdown_report,
    run_evaluation,
)

IMAGES_PER_CLASS = 4


def _write_dataset(splits: dict[str, datasets.Dataset], folder: Path) -> Path:
    """Write ``splits`` as Parquet shards + a README card with YAML ``configs`` (the layout `dataset_builders.build_benchmarks` writes)."""
    folder.mkdir(parents=True)
    data_files = []
    for split, dataset in splits.items():
        dataset.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
        data_files.append(f"  - split: {split}\n    path: {split}-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n" + "\n".join(data_files) + "\n---\n"
    )
    return folder


def _classification(source: Path, classes: list[str], folder: Path) -> Path:
    """A train/test classification dataset of the first images of ``classes`` (ClassLabel = folder names)."""
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=classes),
            "filename": datasets.Value("string"),
        }
    )
    rows = {
        "train": {"image": [], "label": [], "filename": []},
        "test": {"image": [], "label": [], "filename": []},
    }
    for label, name in enumerate(classes):
        for position, path in enumerate(sorted((source / name).glob("*.jpg"))[: 2 * IMAGES_PER_CLASS]):
            split = rows["train" if position % 2 else "test"]
            split["image"].append(str(path))
            split["label"].append(label)
            split["filename"].append(path.name)
    return _write_dataset(
        {split: datasets.Dataset.from_dict(r, features=features) for split, r in rows.items()}, folder
    )


@pytest.fixture(scope="module")
def data_dir(shared_data: Path, tmp_path_factory) -> Path:
    """rsscn7 (7 classes), aid150 (5 classes), a 6-image caption set and a 4-sample counting set."""
    root = tmp_path_factory.mktemp("benchmarks")
    _classification(
        shared_data / "rsscn7", sorted(p.name for p in (shared_data / "rsscn7").iterdir()), root / "rsscn7"
    )
    _classification(
        shared_data / "aid150", ["Airport", "BareLand", "Beach", "Forest", "Port"], root / "aid150"
    )
    images = (
        sorted((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))[:3]
        + sorted((shared_data / "rsscn7" / "gParking").glob("*.jpg"))[:3]
    )
    captions = [
        [f"a green meadow number {i}", "grass land"]
        if i < 3
        else [f"a parking lot with cars {i}", "cars parked", "many cars"]
        for i in range(6)
    ]
    retrieval = datasets.Dataset.from_dict(
        {"image": [str(p) for p in images], "captions": captions, "filename": [p.name for p in images]}
    ).cast_column("image", datasets.Image())
    _write_dataset({"test": retrieval}, root / "ucm")
    counting_images = sorted((shared_data / "aid150" / "Airport").glob("*.jpg"))[:4]
    counting = datasets.Dataset.from_dict(
        {
            "image": [str(p) for p in counting_images],
            "caption": [
                "There are three planes in the image.",
                "There is one plane in the image.",
                "7 ships are docked.",
                "A harbor with boats.",
            ],
            "count": [3, 1, 7, 2],
            "category": ["plane", "plane", "ship", "harbor"],
        }
    ).cast_column("image", datasets.Image())
    _write_dataset({"test": counting}, root / "remotecount")
    return root


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight RemoteCLIP ViT (2 layers, 32 px) with the offline processor, saved with save_pretrained."""
    torch.manual_seed(0)
    config = rclip_hf.RemoteCLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
            "hidden_act": "quick_gelu",
        },
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("tiny_remoteclip")
    rclip_hf.RemoteCLIPModel(config).save_pretrained(folder)
    rclip_hf.build_processor(image_size=32).save_pretrained(folder)
    return folder


def test_runner_end_to_end(data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out" / "results.json"
    exit_code = main(
        [
            "--model",
            str(tiny_model_dir),
            "--benchmarks",
            "ucm,rsscn7,aid150,remotecount",
            "--data-dir",
            str(data_dir),
            "--output",
            str(output),
            "--knn",
            "--linear_probe",
            "--probe_epochs",
            "20",
            "--batch_size",
            "5",
            "--no-show-progress",
        ]
    )
    assert exit_code == 0
    saved = json.loads(output.read_text())
    assert saved["model_type"] == "remoteclip" and saved["rclip_hf_version"] == rclip_hf.__version__
    ucm = saved["benchmarks"]["ucm"]
    assert (ucm["task"], ucm["num_images"], ucm["num_texts"]) == ("retrieval", 6, 15)
    assert list(ucm["metrics"]) == [
        "i2t_R@1",
        "i2t_R@5",
        "i2t_R@10",
        "t2i_R@1",
        "t2i_R@5",
        "t2i_R@10",
        "mean_recall",
    ]
    assert (
        ucm["metrics"]["i2t_R@10"] == 100.0
    )  # k clamped to the 6-image / 15-text galleries: every query hits
    rsscn7 = saved["benchmarks"]["rsscn7"]
    assert (rsscn7["task"], rsscn7["num_samples"], rsscn7["num_classes"]) == (
        "zero_shot_classification",
        28,
        7,
    )
    assert 0.0 <= rsscn7["metrics"]["top1"] <= rsscn7["metrics"]["top5"] <= 100.0
    assert rsscn7["knn"]["num_train"] == 28 and set(rsscn7["linear_probe"]["metrics"]) == {
        "top1",
        "top5",
        "mean_per_class_recall",
    }
    counting = saved["benchmarks"]["remotecount"]
    assert counting["num_samples"] == 3  # "A harbor with boats." has no number: skipped with its reason
    assert (
        counting["skipped"][0]["index"] == 3
        and "does not contain its count 2" in counting["skipped"][0]["reason"]
    )
    assert counting["metrics"]["top10"] == 100.0 and counting["metrics_digits"]["top10"] == 100.0
    assert all(abs(sum(row) - 1) < 1e-9 for row in counting["metrics"]["confusion_matrix"] if any(row))
    table = output.with_suffix(".md").read_text()
    assert "| UCM-captions |" in table and "RSSCN7" in table and "| RemoteCount | words |" in table
    assert table in capsys.readouterr().out


def test_runner_matches_direct_computation(data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The runner's zero-shot top-1 equals encoding + argmax done by hand with the same model and processor."""
    args = EvalArguments(
        model=str(tiny_model_dir),
        benchmarks="aid150",
        data_dir=str(data_dir),
        output=str(tmp_path / "r.json"),
        show_progress=False,
    )
    results = run_evaluation(args)
    model, processor, _ = load_eval_model(str(tiny_model_dir), "cpu")
    test = datasets.load_dataset(str(data_dir / "aid150"))["test"]
    prompts = [
        f"a satellite photo of {name}." for name in ("airport", "bare land", "beach", "forest", "port")
    ]
    with torch.inference_mode():
        text = model.get_text_features(
            **processor(text=prompts, return_tensors="pt", padding=True)
        ).pooler_output
        image = model.get_image_features(
            **processor(images=[i.convert("RGB") for i in test["image"]], return_tensors="pt")
        ).pooler_output
    predicted = (
        torch.nn.functional.normalize(image, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T
    ).argmax(1)
    expected = (predicted == torch.tensor(test["label"])).double().mean().item() * 100
    assert results["benchmarks"]["aid150"]["metrics"]["top1"] == pytest.approx(expected, abs=1e-9)


def test_runner_open_clip_baseline(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    results = run_evaluation(
        EvalArguments(
            model="open_clip:RN50",
            benchmarks="ucm",
            data_dir=str(data_dir),
            output=str(tmp_path / "r.json"),
            show_progress=False,
            batch_size=6,
        )
    )
    assert results["model_type"] == "open_clip" and results["arch"] == "RN50"
    assert results["benchmarks"]["ucm"]["num_texts"] == 15


def test_runner_errors(data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    args = EvalArguments(
        model=str(tiny_model_dir),
        benchmarks="nosuch",
        data_dir=str(data_dir),
        output=str(tmp_path / "r.json"),
    )
    with pytest.raises(FileNotFoundError, match="benchmark 'nosuch': dataset folder .*nosuch not found"):
        run_evaluation(args)
    args.benchmarks, args.templates = "rsscn7", "fancy"
    with pytest.raises(ValueError, match="'fancy' is not a template set"):
        run_evaluation(args)
    args.templates, args.split = "paper", "validation"
    with pytest.raises(ValueError, match="no split 'validation'"):
        run_evaluation(args)
    with pytest.raises(ValueError, match="open_clip:ARCH"):
        load_eval_model("open_clip:", "cpu")


def test_markdown_report_layout() -> None:
    metrics = {
        key: 1.0
        for key in ["i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall"]
    }
    results = {
        "model": "m",
        "benchmarks": {
            "rsitmd": {"task": "retrieval", "metrics": metrics},
            "aid": {"task": "zero_shot_classification", "templates": "paper", "metrics": {"top1": 90.0}},
            "eurosat": {"task": "zero_shot_classification", "templates": "paper", "metrics": {"top1": 40.0}},
        },
    }
    report = markdown_report(results)
    assert "| RSITMD | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |" in report
    assert (
        "| EuroSAT | AID | average |" in report and "| 40.00 | 90.00 | 65.00 |" in report
    )  # paper's column order


def test_runner_reports_validation_split_and_split_definition(
    data_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A benchmark built with published split lists: the validation split is reported, the probe searches on it,
    and results.json names the split definition from the builder's report."""
    splits = datasets.load_dataset(str(data_dir / "aid150"))
    halves = splits["test"].train_test_split(test_size=0.5, seed=0, stratify_by_column="label")
    folder = _write_dataset(
        {"train": splits["train"], "validation": halves["train"], "test": halves["test"]}, tmp_path / "aid150"
    )
    definition = {"kind": "split_files", "files": ["aid150-test.txt"], "description": "published lists"}
    (folder / "build_report.json").write_text(json.dumps({"split_definition": definition}))
    args = EvalArguments(
        model=str(tiny_model_dir),
        benchmarks="aid150",
        data_dir=str(tmp_path),
        output=str(tmp_path / "r.json"),
        show_progress=False,
        linear_probe=True,
        probe_epochs=5,
    )
    entry = run_evaluation(args)["benchmarks"]["aid150"]
    assert entry["split_definition"] == definition
    assert entry["validation"]["num_samples"] == halves["train"].num_rows == 10
    assert set(entry["validation"]["metrics"]) == {"top1", "top5", "mean_per_class_recall"}
    assert entry["linear_probe"]["search_split"] == "validation" and len(entry["linear_probe"]["search"]) == 5


def test_hub_dataset_ids_load_from_the_offline_cache(data_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    for name in ("ucm", "remotecount"):
        cache_as_hub_dataset(data_dir / name, f"offline-owner/rs-{name}")
    go_offline(monkeypatch)
    common = {"model": str(tiny_model_dir), "benchmarks": "ucm,remotecount", "show_progress": False}
    from_hub = run_evaluation(EvalArguments(data_dir="offline-owner/rs-{name}", output=str(tmp_path / "hub.json"),
                                            **common))
    from_folders = run_evaluation(EvalArguments(data_dir=str(data_dir), output=str(tmp_path / "dir.json"), **common))
    for name in ("ucm", "remotecount"):
        assert from_hub["benchmarks"][name]["metrics"] == from_folders["benchmarks"][name]["metrics"]
    with pytest.raises(UserError, match=r"--data-dir offline-owner/rs-ucm: 2 benchmarks need one Hub dataset each"):
        run_evaluation(EvalArguments(data_dir="offline-owner/rs-ucm", **common))
    with pytest.raises(UserError, match=r"--data-dir offline-owner/rs-eurosat: no such local folder, and not "
                                        r"loadable as a Hub dataset id"):
        run_evaluation(EvalArguments(**{**common, "benchmarks": "eurosat"}, data_dir="offline-owner/rs-{name}"))


def test_a_streaming_dataset_is_refused_in_one_line(data_dir: Path, tiny_model_dir: Path) -> None:
    args = EvalArguments(model=str(tiny_model_dir), benchmarks="ucm", data_dir=str(data_dir))
    model, processor, _ = load_eval_model(str(tiny_model_dir), "cpu")
    streamed = datasets.load_dataset(str(data_dir / "ucm"), streaming=True)
    with pytest.raises(UserError, match=r"benchmark 'ucm': a streaming \(iterable\) dataset cannot be evaluated"):
        BenchmarkRunner(model, processor, args, "cpu").run("ucm", streamed)
