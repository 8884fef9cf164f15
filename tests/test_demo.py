"""The `--quick` demo end to end: a model folder that reloads, a card whose numbers are the results JSON, a clean
dry-run push listing (bounded: about 2 minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> Path:
    """Output folder of one `python demo/run.py --quick` run."""
    output = tmp_path_factory.mktemp("demo")
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "demo" / "run.py"), "--output", str(output),
                                "--quick"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    if completed.returncode != 0:
        pytest.fail(f"demo failed ({completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    (output / "stdout.txt").write_text(completed.stdout)
    return output


@pytest.mark.slow
def test_quick_demo_runs_every_stage(quick_demo):
    out = (quick_demo / "stdout.txt").read_text()
    for index in range(1, 8):
        assert f"[{index}/7] " in out
    summary = json.loads((quick_demo / "demo_summary.json").read_text())
    assert summary["mode"] == "train" and len(summary["timings_s"]) == 7
    assert abs(sum(summary["airport_scores_percent"].values()) - 100.0) < 1e-3
    assert out.rstrip().endswith(f"rclip-hf explore --index {quick_demo / 'scenes.index'} --model {quick_demo / 'model'}")
    report = json.loads(next((quick_demo / "corpus").glob("*report*.json")).read_text())
    assert report["totals"]["excluded"] >= 1  # RemoteCount's DOTA images are kept out of training


@pytest.mark.slow
def test_quick_demo_model_folder_reloads_and_card_equals_results(quick_demo):
    import torch
    from huggingface_hub import ModelCard
    from transformers import AutoModel, CLIPModel

    from model_cards.card import card_metrics, iter_metrics

    folder = quick_demo / "model"
    model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    assert type(model) is CLIPModel  # a trained ViT folder is plain transformers CLIP (Hub-native, issue #14)
    results = json.loads((quick_demo / "results.json").read_text())
    assert json.loads((folder / "results.json").read_text()) == results
    numbers = card_metrics(ModelCard.load(folder / "README.md"))
    assert numbers == {(e.benchmark, f"{e.group}/{e.key}"): e.shown for e in iter_metrics(results)}
    assert set(results["benchmarks"]) == {"rsscn7_captions", "rsscn7", "remotecount"}
    text = (folder / "README.md").read_text()
    top1 = results["benchmarks"]["rsscn7"]["metrics"]["top1"]
    assert f"| RSSCN7 | test | 7 | 70 | {top1:.2f} |" in text
    assert "untrained start" in text and "**This is not an official RemoteCLIP model.**" in text


@pytest.mark.slow
def test_quick_demo_dry_run_push_lists_no_stray_files(quick_demo):
    from rclip_hf.hub import plan_upload

    plan = plan_upload(quick_demo / "model")
    assert plan.paths == [".eval_results/remotecount.yaml", ".eval_results/rsscn7.yaml",
                          ".eval_results/rsscn7_captions.yaml", "README.md", "config.json", "model.safetensors",
                          "plots/recall_at_k.png", "plots/remotecount_confusion.png", "plots/zero_shot_accuracy.png",
                          "processor_config.json", "results.json", "tokenizer.json", "tokenizer_config.json"]
    assert plan.skipped == []
    assert plan.metadata["pipeline_tag"] == "zero-shot-image-classification"


@pytest.mark.slow
def test_training_again_into_the_demo_output_replaces_the_earlier_run(quick_demo):
    """`make demo` run twice: the second training run replaces the first in the demo's own folder."""
    from demo.pipeline import DemoArguments, offline_environment, train

    before = json.loads((quick_demo / "train" / "train_args.json").read_text())
    final = train(quick_demo / "corpus", quick_demo / "train", 2, DemoArguments(output=str(quick_demo),
                  num_processes=1, seed=5), offline_environment(quick_demo))
    after = json.loads((quick_demo / "train" / "train_args.json").read_text())
    assert before["train"]["max_steps"] != 2 and after["train"]["max_steps"] == 2 and after["train"]["seed"] == 5
    assert (final / "config.json").is_file()


def test_retrieval_numbers_say_that_captions_repeat_within_a_class():
    """The demo's retrieval captions are the same for every test image of a class; the table says so."""
    from collections import defaultdict

    from demo.pipeline import RETRIEVAL_NOTE, comparison_table

    captions = json.loads((REPO_ROOT / "demo" / "data" / "rsscn7" / "dataset_rsscn7_captions.json").read_text())
    by_class = defaultdict(list)
    for entry in captions["images"]:
        if entry["split"] == "test":
            by_class[entry["filename"].split("/")[-2]].append(tuple(sentence["raw"] for sentence in entry["sentences"]))
    assert len(by_class) == 7 and all(len(rows) == 10 and len(set(rows)) == 1 for rows in by_class.values())
    results = {"benchmarks": {"rsscn7_captions": {"task": "retrieval", "metrics": {"mean_recall": 12.5}},
                              "rsscn7": {"task": "zero_shot_classification", "metrics": {"top1": 40.0}}}}
    table = comparison_table(results, results)
    assert table.endswith(RETRIEVAL_NOTE) and "at most 10%" in table
    assert RETRIEVAL_NOTE not in comparison_table({"benchmarks": {"rsscn7": results["benchmarks"]["rsscn7"]}}, None)
