"""The `evaluate` modules in metrics/ work as Hub Spaces: each folder, copied alone and loaded with
``evaluate.load(path)`` in a process where rclip_hf cannot be imported, returns what the rclip_hf library returns
on random and tied inputs (one truth, tested twice); its app.py's function, given those inputs as the uploaded file
a Space user sends, returns the same (gradio itself is needed only to serve it: ``python app.py``)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from rclip_hf.evaluation import (
    LinearProbeConfig,
    classification_metrics,
    counting_metrics,
    few_shot,
    knn_metrics,
    linear_probe,
    retrieval_metrics,
)

evaluate = pytest.importorskip("evaluate")
METRICS = Path(__file__).resolve().parents[1] / "metrics"
NAMES = ("rs_counting", "rs_knn", "rs_linear_probe", "rs_retrieval", "rs_zero_shot")
SPACE_FILES = ("README.md", "app.py", "requirements.txt")

# Runs in a fresh interpreter: rclip_hf is unimportable, each metric folder is copied alone and loaded by path.
SPACE_RUNNER = textwrap.dedent('''
    import importlib.abc, inspect, json, runpy, shutil, sys
    from pathlib import Path

    class NoRclipHf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "rclip_hf" or name.startswith("rclip_hf.") or name == "gradio":
                raise ImportError(f"{name} is not importable here")

    sys.meta_path.insert(0, NoRclipHf())
    import evaluate
    import numpy as np

    metrics, work = Path(sys.argv[1]), Path(sys.argv[2])
    cases = json.loads((work / "cases.json").read_text())
    arrays = np.load(work / "inputs.npz")
    results, app_results, apps, namespaces = {}, {}, {}, {}
    for name in sorted({case["module"] for case in cases.values()}):
        space = work / "spaces" / name
        shutil.copytree(metrics / name, space)
        namespaces[name] = runpy.run_path(str(space / "app.py"))  # not __main__: gradio is not started
        info = namespaces[name]["MODULE"].info
        apps[name] = {"name": namespaces[name]["MODULE"].name, "homepage": info.homepage, "license": info.license,
                      "codebase_urls": info.codebase_urls}
    for key, case in cases.items():
        module = evaluate.load(str(work / "spaces" / case["module"]))
        kwargs = {k: (arrays[v[1:]] if isinstance(v, str) and v.startswith("@") else v) for k, v in case["kwargs"].items()}
        results[key] = module.compute(**kwargs)
        app = namespaces[case["module"]]
        upload = work / f"{key}.npz"  # the file a Space user uploads: the metric's arrays by name
        np.savez(upload, **{name: kwargs[name] for name in app["ARRAYS"]})
        fields = inspect.signature(app["compute"]).parameters
        options = {k: v for k, v in kwargs.items() if k not in app["ARRAYS"]}
        given = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in options.items() if k in fields}
        if "options" in fields:
            given["options"] = json.dumps({k: v for k, v in options.items() if k not in fields})
        app_results[key] = app["compute"](str(upload), **given)
    print(json.dumps({"results": results, "app_results": app_results, "apps": apps}))
''')


def _normalise(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def build_cases() -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, object]]:
    """(arrays, cases as evaluate.compute kwargs with "@name" array references, expected library results)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    images = _normalise(rng.normal(size=(30, 16)))
    text_to_image = np.repeat(np.arange(30), 2)
    arrays.update(images=images, text_to_image=text_to_image,
                  texts=_normalise(images[text_to_image] + 0.8 * rng.normal(size=(60, 16))))
    # tied: integer vectors (exact products), duplicated images and texts, an image without captions
    arrays["tied_images"] = rng.integers(0, 2, size=(12, 3)).astype(np.float32)
    arrays["tied_text_to_image"] = np.array([0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 10])
    arrays["tied_texts"] = rng.integers(0, 2, size=(14, 3)).astype(np.float32)
    arrays["scores"], arrays["labels"] = rng.normal(size=(40, 10)).astype(np.float32), rng.integers(0, 10, 40)
    arrays["tied_scores"] = rng.integers(0, 3, size=(40, 10)).astype(np.float32)
    arrays["counts"] = arrays["labels"] + 1
    arrays["features"], arrays["feature_labels"] = images, np.arange(30) % 3
    arrays["tied_features"] = rng.integers(0, 2, size=(30, 4)).astype(np.float32)

    cases, expected = {}, {}
    for prefix in ("", "tied_"):
        ims, txts, t2i = arrays[prefix + "images"], arrays[prefix + "texts"], arrays[prefix + "text_to_image"]
        for tie_break in ("torch", "lowest_index"):
            cases[f"retrieval_{prefix}{tie_break}"] = {"module": "rs_retrieval", "kwargs": {
                "text_embeds": f"@{prefix}texts", "text_to_image": f"@{prefix}text_to_image",
                "image_embeds": f"@{prefix}images", "ks": [1, 2, 5, 50], "tie_break": tie_break}}
            expected[f"retrieval_{prefix}{tie_break}"] = retrieval_metrics(ims, txts, t2i, ks=(1, 2, 5, 50),
                                                                           tie_break=tie_break)
        scores = arrays[prefix + "scores"]
        cases[f"zero_shot_{prefix}"] = {"module": "rs_zero_shot", "kwargs": {
            "predictions": f"@{prefix}scores", "references": "@labels", "ks": [1, 3, 5]}}
        expected[f"zero_shot_{prefix}"] = classification_metrics(scores, arrays["labels"], ks=(1, 3, 5))
        cases[f"counting_{prefix}"] = {"module": "rs_counting", "kwargs": {
            "predictions": f"@{prefix}scores", "references": "@counts"}}
        expected[f"counting_{prefix}"] = counting_metrics(scores, arrays["counts"])
        features, labels = arrays[prefix + "features"], arrays["feature_labels"]
        train = {"train_features": f"@{prefix}features", "train_labels": "@feature_labels", "num_classes": 3}
        cases[f"knn_{prefix}"] = {"module": "rs_knn", "kwargs": {
            "predictions": f"@{prefix}features", "references": "@feature_labels", **train, "k": 5}}
        expected[f"knn_{prefix}"] = knn_metrics(features, labels, features, labels, 3, k=5)
        cases[f"probe_{prefix}"] = {"module": "rs_linear_probe", "kwargs": {
            "predictions": f"@{prefix}features", "references": "@feature_labels", **train, "epochs": 20,
            "search_rounds": 2}}
        direct = linear_probe(features, labels, features, labels, 3, LinearProbeConfig(epochs=20, search_rounds=2))
        expected[f"probe_{prefix}"] = {**direct["metrics"], "lr": direct["lr"], "weight_decay": direct["weight_decay"]}
        cases[f"few_shot_{prefix}"] = {"module": "rs_linear_probe", "kwargs": {
            "predictions": f"@{prefix}features", "references": "@feature_labels", **train, "epochs": 10,
            "search_rounds": 2, "shots": [1, 4], "seeds": [0, 1]}}
        expected[f"few_shot_{prefix}"] = few_shot(features, labels, features, labels, 3, (1, 4), (0, 1),
                                                  LinearProbeConfig(epochs=10, search_rounds=2))
    return arrays, cases, expected


@pytest.fixture(scope="module")
def space_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """(Space results and app info from the subprocess, library results)."""
    work = tmp_path_factory.mktemp("spaces")
    arrays, cases, expected = build_cases()
    np.savez(work / "inputs.npz", **arrays)
    (work / "cases.json").write_text(json.dumps(cases))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", SPACE_RUNNER, str(METRICS), str(work)], check=False, cwd=work,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), expected


def test_space_modules_equal_the_library_on_random_and_tied_inputs(space_run) -> None:
    outputs, expected = space_run
    assert sorted(outputs["results"]) == sorted(expected)
    for key, value in expected.items():
        assert outputs["results"][key] == json.loads(json.dumps(value)), key
    tied = expected["retrieval_tied_torch"], expected["retrieval_tied_lowest_index"]
    assert tied[0] != tied[1]  # the tied case exercises the tie rules: they differ, and each side matches


def test_space_apps_compute_the_library_results_from_an_uploaded_file(space_run) -> None:
    outputs, expected = space_run
    assert sorted(outputs["app_results"]) == sorted(expected)
    for key, value in expected.items():
        assert outputs["app_results"][key] == json.loads(json.dumps(value)), key


def test_space_apps_carry_hub_metadata(space_run) -> None:
    apps = space_run[0]["apps"]
    assert sorted(apps) == list(NAMES)
    for name, info in apps.items():
        assert info["name"] == name and info["license"] == "apache-2.0"
        assert info["homepage"].startswith("https://") and info["codebase_urls"]


@pytest.mark.parametrize("name", NAMES)
def test_space_folder_is_complete_and_self_contained(name: str) -> None:
    folder = METRICS / name
    assert sorted(path.name for path in folder.iterdir() if path.is_file()) == sorted((*SPACE_FILES, f"{name}.py"))
    card = yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py" and card["title"] == name
    assert {"evaluate", "metric"} <= set(card["tags"]) and card["license"] == "apache-2.0"
    requirements = (folder / "requirements.txt").read_text().split()
    assert {line.split(">=")[0].split("==")[0] for line in requirements} == {
        "evaluate", "datasets", "numpy", "torch", "gradio"}
    gradio = next(line for line in requirements if line.startswith("gradio"))
    assert gradio == f"gradio=={card['sdk_version']}" and int(card["sdk_version"].split(".")[0]) >= 5
    tree = ast.parse((folder / f"{name}.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"datasets", "evaluate", "numpy", "torch", "math", "dataclasses"}, imported
    app = ast.parse((folder / "app.py").read_text())
    functions = {node.name: node for node in app.body if isinstance(node, ast.FunctionDef)}
    assert {"compute", "build_demo", "read_arrays"} <= set(functions)
    top_level = {alias.name for node in app.body if isinstance(node, ast.Import | ast.ImportFrom)
                 for alias in node.names}
    assert "gradio" not in top_level  # compute runs without gradio; build_demo imports it
    assert "launch_gradio_widget" not in (folder / "app.py").read_text()  # evaluate's widget needs gradio 3


def test_space_apps_share_one_upload_reader() -> None:
    """Each Space is copied alone, so each app.py holds its reader: the five copies are one text."""
    readers = {ast.get_source_segment(text, node) for name in NAMES
               for text in [(METRICS / name / "app.py").read_text()] for node in ast.parse(text).body
               if isinstance(node, ast.FunctionDef) and node.name == "read_arrays"}
    assert len(readers) == 1 and "allow_pickle=False" in readers.pop()


def test_local_load_matches_with_streaming_batches() -> None:
    """Loaded from the repo too, rows added in batches give the same numbers as one call of the library."""
    rng = np.random.default_rng(3)
    images = _normalise(rng.normal(size=(20, 8)))
    text_to_image = np.repeat(np.arange(20), 2)
    texts = _normalise(images[text_to_image] + rng.normal(size=(40, 8)))
    metric = evaluate.load(str(METRICS / "rs_retrieval"))
    metric.add_batch(text_embeds=texts[:15], text_to_image=text_to_image[:15])
    metric.add_batch(text_embeds=texts[15:], text_to_image=text_to_image[15:])
    assert metric.compute(image_embeds=images) == retrieval_metrics(images, texts, text_to_image)
