"""Model cards: model-index from the results JSON, paper-layout tables, plots, offline metadata check, CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard, metadata_load
from PIL import Image

from model_cards import (
    CardInputs,
    ResultsFormatError,
    build_model_card,
    card_metrics,
    iter_metrics,
    load_results,
)
from model_cards.build import main as build_main
from model_cards.card import check_card_offline, describe_metric
from model_cards.paper import PAPER_ZERO_SHOT
from model_cards.plots import make_plots
from rclip_hf.usage import arch_of_model_dir

RETRIEVAL = {"i2t_R@1": 10.0, "i2t_R@5": 30.0, "i2t_R@10": 50.0, "t2i_R@1": 5.0, "t2i_R@5": 25.0,
             "t2i_R@10": 45.0, "mean_recall": 27.5}


def counting_metrics(top1: float) -> dict:
    """Top-k rising by 10 from `top1`, and a diagonal confusion matrix."""
    metrics = {f"top{k}": top1 + 10.0 * (k - 1) for k in range(1, 11)}
    metrics["confusion_matrix"] = [[1.0 if row == column else 0.0 for column in range(10)] for row in range(10)]
    return metrics


def make_results(arch: str = "ViT-B-32") -> dict:
    """A results JSON in the layout the evaluation runner writes, with hand-checkable values."""
    return {
        "model": "runs/demo/final", "model_type": "remoteclip", "arch": arch, "dtype": "float32",
        "created": "2025-01-02T03:04:05+00:00", "rclip_hf_version": "0.1.0",
        "benchmarks": {
            "rsitmd": {"task": "retrieval", "split": "test", "num_images": 4, "num_texts": 20, "metrics": dict(RETRIEVAL)},
            "eurosat": {"task": "zero_shot_classification", "split": "test", "num_samples": 10, "num_classes": 10,
                        "templates": "paper", "metrics": {"top1": 40.0, "top5": 80.0, "mean_per_class_recall": 35.0},
                        "linear_probe": {"task": "linear_probe", "split": "test", "num_train": 20,
                                         "metrics": {"top1": 90.0, "top5": 100.0, "mean_per_class_recall": 88.0},
                                         "lr": 0.8, "weight_decay": 4e-5},
                        "few_shot": {"task": "few_shot", "metrics": {"1-shot": {"top1_mean": 22.5, "top1_std": 1.5,
                                                                                "top1_per_seed": [21.0, 24.0]}}}},
            "rsscn7": {"task": "zero_shot_classification", "split": "test", "num_samples": 70, "num_classes": 7,
                       "templates": "paper", "metrics": {"top1": 30.0, "top5": 75.0, "mean_per_class_recall": 29.0}},
            "remotecount": {"task": "counting", "split": "test", "num_samples": 5,
                            "metrics": counting_metrics(20.0), "metrics_digits": counting_metrics(10.0)},
        },
    }


def test_model_index_holds_every_scalar_metric_with_its_results_path():
    results = make_results()
    card = build_model_card(results, CardInputs(model_name="demo"))
    numbers = card_metrics(card)
    assert numbers[("rsitmd", "metrics/i2t_R@10")] == 50.0
    assert numbers[("eurosat", "linear_probe/metrics/top1")] == 90.0
    assert numbers[("eurosat", "few_shot/metrics/1-shot.top1_mean")] == 22.5
    assert numbers[("remotecount", "metrics_digits/top3")] == 30.0
    # 7 retrieval + 3 + 3 probe + 2 few-shot + 3 zero-shot + 20 counting; lists (confusion, seeds) are not metrics
    assert len(numbers) == 7 + 3 + 3 + 2 + 3 + 20
    assert numbers == {(e.benchmark, f"{e.group}/{e.key}"): e.shown for e in iter_metrics(results)}
    assert card.data.model_name == "demo"
    assert card.data.pipeline_tag == "zero-shot-image-classification"


def test_model_index_uses_hub_task_ids_and_the_benchmark_repos_build_benchmarks_pushes():
    from datasets.utils.metadata import known_task_ids
    from transformers.pipelines import SUPPORTED_TASKS

    from dataset_builders.build_benchmarks import repo_for
    from dataset_builders.publish import PushConfig

    card = build_model_card(make_results(), CardInputs(model_name="demo", repo_id="team/demo"))
    results = card.data.eval_results
    assert {result.task_type for result in results} <= set(known_task_ids) | set(SUPPORTED_TASKS)
    tasks = {(result.dataset_type, result.metric_config): result.task_type for result in results}
    assert tasks[("team/rs-rsitmd", "metrics/i2t_R@1")] == "image-to-text"
    assert tasks[("team/rs-rsitmd", "metrics/t2i_R@5")] == "text-to-image"
    assert tasks[("team/rs-eurosat", "metrics/top1")] == "zero-shot-image-classification"
    assert tasks[("team/rs-eurosat", "linear_probe/metrics/top1")] == "image-classification"
    pushed = {repo_for(PushConfig(push_to_hub="team/rs-{name}"), name, 4).push_to_hub
              for name in ("rsitmd", "eurosat", "rsscn7", "remotecount")}
    assert {result.dataset_type for result in results} == pushed
    assert card_metrics(card)[("rsitmd", "metrics/i2t_R@10")] == 50.0  # read back by benchmark name
    other = build_model_card(make_results(), CardInputs(repo_id="team/demo", benchmarks_owner="rs-bench"))
    assert {result.dataset_type for result in other.data.eval_results} == {
        name.replace("team/", "rs-bench/") for name in pushed}


def test_metric_descriptions():
    results = make_results()
    described = {(e.group, e.key): describe_metric(e) for e in iter_metrics(results)}
    assert described[("metrics", "i2t_R@5")] == ("recall", "image-to-text R@5", {"k": 5, "direction": "image-to-text"})
    assert described[("metrics_digits", "top2")] == ("accuracy", "top-2 accuracy (digits)",
                                                     {"k": 2, "count_style": "digits"})
    assert described[("few_shot/metrics", "1-shot.top1_std")][0] == "accuracy_std"


def test_tables_put_our_numbers_next_to_the_papers():
    results = make_results()
    baseline = copy.deepcopy(results)
    baseline["benchmarks"]["eurosat"]["metrics"]["top1"] = 11.0
    text = build_model_card(results, CardInputs(baseline=baseline, baseline_name="untrained start")).text
    assert "| RSITMD | **this model** | 10.00 | 30.00 | 50.00 | 5.00 | 25.00 | 45.00 | 27.50 |" in text
    assert "| RSITMD | RemoteCLIP ViT-B/32 (paper) | 27.88 | 50.66 | 65.71 | 22.17 | 56.46 | 73.41 | 49.38 |" in text
    assert "RemoteCLIP RN50 (paper)" not in text  # only the same architecture's published row
    paper_row = "| RemoteCLIP ViT-B/32 (paper) | " + " | ".join(f"{v:.2f}" for v in PAPER_ZERO_SHOT[
        "RemoteCLIP ViT-B/32"]) + " |"
    assert paper_row in text
    assert "| **this model** | – | – | – | 40.00 |" in text
    assert "| untrained start | – | – | – | 11.00 |" in text
    assert "| RSSCN7 | test | 7 | 70 | 30.00 | 30.00 | 75.00 | 29.00 |" in text
    assert "| RemoteCount | **this model** | digits | 10.00 | 20.00 |" in text
    assert "@article{remoteclip," in text and "10.1109/TGRS.2024.3390838" in text


def test_small_architecture_is_flagged_and_all_paper_rows_shown():
    text = build_model_card(make_results(arch="remoteclip"), CardInputs(training={"max_steps": 20})).text
    assert "**This is not an official RemoteCLIP model.**" in text
    assert "RemoteCLIP RN50 (paper)" in text and "RemoteCLIP ViT-L/14 (paper)" in text
    assert "| `max_steps` | `20` |" in text


def test_plots_are_written_for_each_task(tmp_path):
    results = make_results()
    plots = make_plots(results, tmp_path / "plots", arch="ViT-B-32", baseline=results)
    assert [plot.path for plot in plots] == ["plots/zero_shot_accuracy.png", "plots/recall_at_k.png",
                                             "plots/remotecount_confusion.png"]
    for plot in plots:
        with Image.open(tmp_path / plot.path) as image:
            assert image.format == "PNG" and image.width > 200


def test_no_plot_without_the_task(tmp_path):
    results = make_results()
    results["benchmarks"] = {"rsscn7": results["benchmarks"]["rsscn7"]}
    assert [plot.path for plot in make_plots(results, tmp_path / "plots")] == ["plots/zero_shot_accuracy.png"]


def test_cli_writes_card_that_round_trips_offline(tmp_path):
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(make_results()))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert build_main(["--results", str(results_path), "--model-dir", str(model_dir)]) == 0
    readme = model_dir / "README.md"
    check_card_offline(readme, make_results())
    metadata = metadata_load(readme)
    assert metadata["license"] == "apache-2.0" and metadata["library_name"] == "transformers"
    card = ModelCard.load(readme)
    assert card_metrics(card)[("eurosat", "metrics/top1")] == 40.0
    assert "![Counting confusion matrix](plots/remotecount_confusion.png)" in card.text
    assert sorted(p.name for p in (model_dir / "plots").iterdir()) == [
        "recall_at_k.png", "remotecount_confusion.png", "zero_shot_accuracy.png"]


def test_cli_writes_eval_results_files_in_the_hubs_format_and_push_uploads_them(tmp_path):
    from fake_hub import FakeHub
    from huggingface_hub import parse_eval_result_entries

    from rclip_hf.hub import push

    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(make_results()))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "model.safetensors").write_bytes(b"x")
    assert build_main(["--results", str(results_path), "--model-dir", str(model_dir), "--repo_id", "team/demo"]) == 0
    files = sorted(path.name for path in (model_dir / ".eval_results").iterdir())
    assert files == ["eurosat.yaml", "remotecount.yaml", "rsitmd.yaml", "rsscn7.yaml"]
    entries = parse_eval_result_entries(yaml.safe_load((model_dir / ".eval_results" / "rsitmd.yaml").read_text()))
    assert len(entries) == 7 and {entry.dataset_id for entry in entries} == {"team/rs-rsitmd"}
    first = entries[0]
    assert (first.task_id, first.value, first.date) == ("metrics/i2t_R@1", 10.0, "2025-01-02T03:04:05+00:00")
    assert (first.source_url, first.source_name) == ("https://huggingface.co/team/demo", "Model card")
    assert first.notes == "Zero-shot image-to-text retrieval: image-to-text R@1 (percent)"
    every = [entry for name in files for entry in parse_eval_result_entries(
        yaml.safe_load((model_dir / ".eval_results" / name).read_text()))]
    assert {(entry.dataset_id.removeprefix("team/rs-"), entry.task_id): entry.value for entry in every} == {
        (e.benchmark, f"{e.group}/{e.key}"): e.shown for e in iter_metrics(make_results())}
    api = FakeHub(name="team")
    push(model_dir, "team/demo", api=api)
    assert {f".eval_results/{name}" for name in files} <= set(api.uploaded())


def test_cli_never_writes_through_a_symlink(tmp_path, capsys):
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(make_results()))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    outside = tmp_path / "outside.md"
    (model_dir / "README.md").symlink_to(outside)
    assert build_main(["--results", str(results_path), "--model-dir", str(model_dir)]) == 2
    assert "README.md is a symlink; the card is never written through one" in capsys.readouterr().err
    assert not outside.exists() and not (model_dir / "plots").exists()


def test_offline_check_catches_a_changed_number(tmp_path):
    readme = tmp_path / "README.md"
    build_model_card(make_results(), CardInputs()).save(readme)
    changed = make_results()
    changed["benchmarks"]["rsitmd"]["metrics"]["mean_recall"] = 27.6
    with pytest.raises(ValueError, match="differs from the results JSON"):
        check_card_offline(readme, changed)


def test_bad_results_are_rejected_with_file_and_key(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"model": "x"}))
    with pytest.raises(ResultsFormatError, match=r"results.json: key 'benchmarks'"):
        load_results(path)
    bad = make_results()
    bad["benchmarks"]["eurosat"]["task"] = "segmentation"
    path.write_text(json.dumps(bad))
    with pytest.raises(ResultsFormatError, match=r"benchmarks.eurosat.task is 'segmentation'"):
        load_results(path)
    bad = make_results()
    bad["benchmarks"]["rsitmd"]["metrics"]["i2t_R@1"] = "high"
    path.write_text(json.dumps(bad))
    with pytest.raises(ResultsFormatError, match=r"benchmarks.rsitmd.metrics.i2t_R@1 is 'high'"):
        load_results(path)
    path.write_text("{not json")
    with pytest.raises(ResultsFormatError, match="cannot read results JSON"):
        load_results(path)


def test_cli_exit_code_on_bad_input(tmp_path, capsys):
    (tmp_path / "results.json").write_text("[]")
    argv = ["--results", str(tmp_path / "results.json"), "--model-dir", str(tmp_path)]
    assert build_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "key 'benchmarks'" in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(ResultsFormatError, match="key 'benchmarks'"):  # the shared --debug: the traceback
        build_main([*argv, "--debug"])


def test_arch_of_model_dir(tmp_path):
    from rclip_hf import RemoteCLIPConfig

    RemoteCLIPConfig.from_preset("ViT-B-32").save_pretrained(tmp_path / "b32")
    RemoteCLIPConfig.from_preset("RN50").save_pretrained(tmp_path / "rn50")
    RemoteCLIPConfig.from_preset("ViT-B-32", projection_dim=64).save_pretrained(tmp_path / "custom")
    assert arch_of_model_dir(tmp_path / "b32") == "ViT-B-32"
    assert arch_of_model_dir(tmp_path / "rn50") == "RN50"
    assert arch_of_model_dir(tmp_path / "custom") is None


def test_readme_template_exists():
    template = Path(__file__).resolve().parents[1] / "model_cards" / "templates" / "model_card.md"
    assert "{{ results_tables }}" in template.read_text(encoding="utf-8")


def test_summary_override_replaces_the_opening_sentence():
    text = build_model_card(make_results(arch="RN50"), CardInputs(summary="Random weights, not RemoteCLIP.")).text
    assert "\nRandom weights, not RemoteCLIP.\n" in text
    assert "RemoteCLIP RN50, the remote-sensing CLIP" not in text
    default = build_model_card(make_results(arch="RN50"), CardInputs()).text
    assert "RemoteCLIP RN50, the remote-sensing CLIP of Liu et al. (2024), in transformers format." in default


def test_card_numbers_are_rounded_to_two_decimals_results_keep_full_precision(tmp_path):
    results = make_results()
    noisy = float(np.float32(100 / 7))  # 14.28571492433548: float32 noise of a 1/7 accuracy
    results["benchmarks"]["rsscn7"]["metrics"]["top1"] = noisy
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(results))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert build_main(["--results", str(results_path), "--model-dir", str(model_dir)]) == 0
    text = (model_dir / "README.md").read_text()
    assert "value: 14.29\n" in text and "14.2857" not in text
    assert "| 14.29 |" in text
    assert card_metrics(ModelCard.load(model_dir / "README.md"))[("rsscn7", "metrics/top1")] == 14.29
    assert json.loads(results_path.read_text())["benchmarks"]["rsscn7"]["metrics"]["top1"] == noisy
    check_card_offline(model_dir / "README.md", results)  # compares against the rounded values


ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("rclip_hf", "dataset_builders", "model_cards", "training_scripts", "metrics")


def test_one_bibtex_key_and_one_text_everywhere():
    """Cards, metric Spaces and the README cite RemoteCLIP with one BibTeX entry (the Spaces hold copies)."""
    import re

    from rclip_hf.benchmark_registry import REMOTECLIP_BIBTEX

    files = [ROOT / "README.md", *(path for folder in (*SHIPPED, "docs") for pattern in ("*.py", "*.md")
                                   for path in (ROOT / folder).rglob(pattern))]
    keys = {match for path in files for match in re.findall(r"@\w+\{([^,\s]+),", path.read_text(encoding="utf-8"))}
    assert keys == {"remoteclip"}
    copies = [path for path in files if "@article{remoteclip," in path.read_text(encoding="utf-8")
              and path.name != "benchmark_registry.py"]
    assert {path.parent.name for path in copies} >= {"rs_counting", "rs_knn", "rs_linear_probe", "rs_retrieval",
                                                      "rs_zero_shot"}
    for path in copies:
        assert REMOTECLIP_BIBTEX in path.read_text(encoding="utf-8"), path


def test_shipped_code_cites_the_paper_not_an_outside_document():
    offenders = [str(path.relative_to(ROOT)) for folder in SHIPPED for path in (ROOT / folder).rglob("*.py")
                 if "shared/docs" in path.read_text(encoding="utf-8")]
    assert offenders == []
    assert "doi:10.1109/TGRS.2024.3390838" in (ROOT / "dataset_builders" / "b2c.py").read_text(encoding="utf-8")
