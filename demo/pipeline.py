"""Stages of the rclip-hf demo, offline on `demo/data/`: benchmarks -> corpus (B2C, M2B, p-Hash) -> training (accelerate,
CPU) -> evaluation against the untrained start -> model folder with card and plots; or, with `--checkpoint`,
conversion of an official open_clip file -> the same evaluation and card."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

import rclip_hf
from rclip_hf.arguments import DataclassArgumentParser
from rclip_hf.convert import ConversionError, convert_checkpoint, normalize_arch

logger = logging.getLogger("demo")

DEMO_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEMO_DIR.parent
DEMO_DATA = DEMO_DIR / "data"
TRAINING_SCRIPTS = REPO_ROOT / "training_scripts"
TINY_CONFIG = TRAINING_SCRIPTS / "configs" / "tiny.yaml"
#: The authors' demo (RemoteCLIP README): this image against these captions, ~100 % on the first with RN50.
DEMO_IMAGE = DEMO_DATA / "remoteclip" / "airport.jpg"
DEMO_CAPTIONS = (
    "A busy airport with many airplanes.",
    "Satellite view of Hohai University.",
    "A building next to a lake.",
    "Many people in a stadium.",
    "a cute cat",
)
#: Training sources of the mini corpus (format -> folder under demo/data): B2C on DOTA/DIOR boxes, M2B on iSAID
#: masks, label-made captions of RSSCN7 training scenes.
CORPUS_SOURCES = {"dota": "dota", "isaid": "isaid", "dior": "dior", "captions": "rsscn7"}
#: Benchmarks built from demo/data: retrieval on held-out RSSCN7 scenes, zero-shot RSSCN7, RemoteCount from DOTA.
BENCHMARKS = ("rsscn7_captions", "rsscn7", "remotecount")
#: Printed under the retrieval numbers: the demo's captions are made from the class names.
RETRIEVAL_NOTE = ("      note: rsscn7_captions' captions are made from the class name, identical for the 10 test "
                  "images of a class:\n      a caption fits 10 images equally, so text->image R@1 is at most 10% "
                  "and R@5 at most 50%, and image->text\n      ranks among identical captions are decided by the "
                  "tie rule; read them as a smoke test, not as caption retrieval.")
RANDOM_CHECKPOINT = "random"
FULL_STEPS = 1000
QUICK_STEPS = 20


class DemoError(RuntimeError):
    """A stage of the demo failed; the message names the command and what to look at."""


@dataclass
class DemoArguments:
    """Options of `python demo/run.py`."""

    output: str = field(metadata={"help": "folder for everything the demo writes"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "official open_clip .pt file (e.g. RemoteCLIP-RN50.pt) to convert and evaluate instead of training; "
                f"'{RANDOM_CHECKPOINT}': a random-weight checkpoint of --arch made on the spot"})
    arch: str = field(default="RN50", metadata={"help": "architecture of --checkpoint (RN50, ViT-B-32, ViT-L-14)"})
    quick: bool = field(default=False, metadata={"help": "shortened run for CI: fewer training steps, same stages"})
    steps: int | None = field(default=None, metadata={"help": "training steps (default 1000, 20 with --quick)"})
    num_processes: int = field(default=2, metadata={"help": "CPU processes for accelerate launch"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation, data order and every random choice"})


class StageClock:
    """Announces numbered stages and records how long each took."""

    def __init__(self, total: int):
        self.total = total
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Print `[i/n] name`, run the block, print and record its wall time."""
        index = len(self.timings) + 1
        print(f"\n[{index}/{self.total}] {name}", flush=True)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        print(f"      done in {self.timings[name]:.1f} s", flush=True)

    def report(self) -> str:
        """Table of stage timings and their total."""
        width = max(len(name) for name in self.timings)
        lines = [f"  {name:<{width}}  {seconds:7.1f} s" for name, seconds in self.timings.items()]
        lines.append(f"  {'total':<{width}}  {sum(self.timings.values()):7.1f} s")
        return "\n".join(lines)


def offline_environment(output: Path) -> dict[str, str]:
    """Environment of every stage: no Hub access, a datasets cache private to this run."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_CACHE=str(output / "cache" / "datasets"), TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_command(command: Sequence[str], env: dict[str, str]) -> None:
    """Run one pipeline CLI with its progress shown; raise `DemoError` naming it when it fails."""
    print("      $ " + " ".join(str(part) for part in command), flush=True)
    completed = subprocess.run([str(part) for part in command], env=env, cwd=REPO_ROOT, check=False)
    if completed.returncode != 0:
        raise DemoError(f"stage command failed with exit code {completed.returncode}: {' '.join(map(str, command))}")


def build_benchmarks(data: Path, target: Path, env: dict[str, str]) -> None:
    """Benchmark folders from demo/data: RSSCN7 retrieval (held-out test scenes) and zero-shot, RemoteCount."""
    run_command([sys.executable, "-m", "dataset_builders.build_benchmarks", "--retrieval",
                 f"rsscn7_captions={data / 'rsscn7'}", "--classification", f"rsscn7={data / 'rsscn7'}",
                 "--output", target], env)
    run_command([sys.executable, "-m", "dataset_builders.build_remotecount", "--dota", data / "dota",
                 "--output", target / "remotecount"], env)


def build_corpus(data: Path, target: Path, exclude_near: Path, seed: int, env: dict[str, str]) -> dict[str, Any]:
    """Mini caption corpus (B2C, M2B, p-Hash de-duplication, benchmark images kept out); returns its report."""
    sources = [argument for name, folder in CORPUS_SOURCES.items()
               for argument in ("--source", f"{name}={data / folder}")]
    run_command([sys.executable, "-m", "dataset_builders.build_corpus", *sources, "--output", target,
                 "--exclude_near", exclude_near, "--seed", str(seed)], env)
    reports = sorted(target.glob("*report*.json"))
    if not reports:
        raise DemoError(f"{target}: the corpus builder wrote no build report")
    return json.loads(reports[0].read_text(encoding="utf-8"))


def describe_corpus(corpus: Path, report: dict[str, Any]) -> str:
    """Totals and a sample of B2C / M2B captions of the corpus."""
    import datasets

    rows = datasets.load_dataset(str(corpus), split="train")
    lines = [f"      corpus totals: {report.get('totals')}", f"      {len(rows)} image-caption samples; examples:"]
    shown: set[str] = set()
    for row in rows.select_columns(["source", "captions"]):
        if row["source"] not in shown:
            shown.add(row["source"])
            lines.append(f"        [{row['source']}] " + " | ".join(row["captions"][:3]))
    return "\n".join(lines)


def save_starting_point(target: Path, seed: int) -> None:
    """The untrained model exactly as train.py initialises it (same config, `set_seed(seed)` before the build)."""
    from accelerate.utils import set_seed

    from training_scripts.training.arguments import parse_arguments
    from training_scripts.training.model import build_model_and_processor

    model_args, _, _ = parse_arguments(["--config", str(TINY_CONFIG)])
    set_seed(seed)
    model, processor = build_model_and_processor(model_args)
    model.save_pretrained(target)
    processor.save_pretrained(target)


def train(corpus: Path, target: Path, steps: int, args: DemoArguments, env: dict[str, str]) -> Path:
    """Tiny RemoteCLIP trained with accelerate on CPU, replacing an earlier demo run in `target`; returns the final
    model folder."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(args.num_processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if args.num_processes > 1:  # accelerate's `--cpu` picks its one-process launcher: gloo needs this form
        launch.append("--multi_gpu")
        env = {**env, "ACCELERATE_USE_CPU": "true"}
    else:
        launch.append("--cpu")
    run_command([*launch, TRAINING_SCRIPTS / "train.py", "--config", TINY_CONFIG, "--dataset", corpus, "--output_dir", target,
                 "--max_steps", str(steps), "--seed", str(args.seed), "--report_to", "none",
                 "--checkpointing_steps", "0", "--logging_steps", str(max(1, steps // 10)), "--overwrite_output_dir"],
                env)
    final = target / "final"
    if not (final / "config.json").is_file():
        raise DemoError(f"training finished but {final} has no config.json")
    return final


def evaluate(model_dir: Path, benchmarks: Path, output: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run the evaluation runner on the demo benchmarks; returns the results JSON."""
    run_command([sys.executable, TRAINING_SCRIPTS / "evaluate.py", "--model", model_dir, "--benchmarks",
                 ",".join(BENCHMARKS), "--data-dir", benchmarks, "--output", output], env)
    return json.loads(output.read_text(encoding="utf-8"))


def comparison_table(results: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """Headline numbers of this model (and its starting point) per benchmark."""
    headline = {"retrieval": "mean_recall", "zero_shot_classification": "top1", "counting": "top1"}
    lines = [f"      {'benchmark':<18}{'metric':<14}{'start':>10}{'trained':>10}" if baseline else
             f"      {'benchmark':<18}{'metric':<14}{'value':>10}"]
    for name, entry in results["benchmarks"].items():
        key = headline[entry["task"]]
        value = entry["metrics"][key]
        if baseline:
            start = baseline["benchmarks"][name]["metrics"][key]
            lines.append(f"      {name:<18}{key:<14}{start:>10.2f}{value:>10.2f}")
        else:
            lines.append(f"      {name:<18}{key:<14}{value:>10.2f}")
    if "rsscn7_captions" in results["benchmarks"]:
        lines.append(RETRIEVAL_NOTE)
    return "\n".join(lines)


def write_model_folder(model_dir: Path, target: Path, results_path: Path, baseline_path: Path | None,
                       training: dict[str, Any] | None, summary: str | None, env: dict[str, str]) -> None:
    """Copy the model and processor files, the results JSON, then generate the card and plots."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_dir, target)
    shutil.copy2(results_path, target / "results.json")
    command = [sys.executable, "-m", "model_cards.build", "--results", target / "results.json", "--model-dir", target,
               "--model_name", "remoteclip-demo" if training else f"remoteclip-{model_dir.name}"]
    if summary is not None:
        command += ["--summary", summary]
    if baseline_path is not None:
        command += ["--baseline_results", baseline_path, "--baseline_name", "untrained start"]
    if training is not None:
        summary = target.parent / "training_summary.json"
        summary.write_text(json.dumps(training, indent=2) + "\n")
        command += ["--training_summary", summary]
    run_command(command, env)


def check_model_folder(folder: Path, results: dict[str, Any]) -> str:
    """Reload with `from_pretrained` and check the card's numbers against the results JSON."""
    from huggingface_hub import ModelCard

    from model_cards.card import card_metrics, check_card_offline, iter_metrics

    model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    check_card_offline(folder / "README.md", results)
    numbers = card_metrics(ModelCard.load(folder / "README.md"))
    expected = {(entry.benchmark, f"{entry.group}/{entry.key}"): entry.shown for entry in iter_metrics(results)}
    if numbers != expected:
        raise DemoError(f"{folder / 'README.md'}: card numbers differ from the results JSON (to the card's 2 decimals)")
    return (f"      reloaded {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
            f"parameters); card metadata parses and its {len(numbers)} numbers equal results.json (to 2 decimals)")


def make_random_checkpoint(arch: str, path: Path, seed: int) -> bool:
    """Save a random-weight open_clip QuickGELU `arch` state dict to `path`; False when open_clip is missing."""
    try:
        import open_clip
    except ImportError:
        return False
    torch.manual_seed(seed)
    model = open_clip.create_model(f"{arch}-quickgelu", pretrained=None)
    torch.save(model.state_dict(), path)
    return True


def build_random_model_folder(arch: str, output: Path, seed: int) -> None:
    """Without open_clip: a random `RemoteCLIPModel` of preset `arch` saved straight to `output`."""
    torch.manual_seed(seed)
    model = rclip_hf.RemoteCLIPModel(rclip_hf.RemoteCLIPConfig.from_preset(arch))
    model.save_pretrained(output)
    rclip_hf.build_processor(image_size=model.config.image_size).save_pretrained(output)


def convert(args: DemoArguments, arch: str, target: Path) -> None:
    """Convert `--checkpoint` (or a random-weight one made on the spot) to a transformers folder."""
    if args.checkpoint != RANDOM_CHECKPOINT:
        convert_checkpoint(args.checkpoint, arch, target, overwrite=True)  # a folder of the demo's own output
        print(f"      {args.checkpoint} -> {target}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / f"random-{arch}.pt"
        if make_random_checkpoint(arch, checkpoint, args.seed):
            convert_checkpoint(checkpoint, arch, target, overwrite=True)
            print(f"      random open_clip {arch}-quickgelu state dict -> transformers folder {target}")
            return
    build_random_model_folder(arch, target, args.seed)
    print(f"      open_clip is not installed: built RemoteCLIPModel({arch}) directly in {target}")


def classify_image(model_dir: Path, image_path: Path, captions: Sequence[str]) -> list[float]:
    """Zero-shot probabilities (%) of `captions` for one image, softmax over the model's scaled logits."""
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    with Image.open(image_path) as image:
        inputs = processor(text=list(captions), images=[image.convert("RGB")], return_tensors="pt", padding=True)
    with torch.inference_mode():
        logits_per_image = model(**inputs).logits_per_image  # (1, num_captions)
    return (100.0 * logits_per_image.softmax(dim=-1)[0]).tolist()


def format_scores(captions: Sequence[str], percentages: Sequence[float]) -> str:
    """Caption / probability table, best first."""
    width = max(len(caption) for caption in captions)
    rows = sorted(zip(captions, percentages), key=lambda row: -row[1])
    return "\n".join(f"  {caption:<{width}}  {percent:6.2f} %" for caption, percent in rows)


RANDOM_SUMMARY = ("Random weights in the official RemoteCLIP {arch} architecture, made and converted by the rclip-hf "
                  "demo: not trained, not RemoteCLIP; its numbers are chance level by construction.")
HONEST_NOTE = (
    "What this shows: every stage of the system running offline on a few real images. What it does not show: "
    "RemoteCLIP's quality. The model has ~3 M parameters and 64 px inputs, trained for minutes on ~140 scene "
    "images (captions made from their RSSCN7 labels) and a handful of B2C/M2B-captioned detection images. Gains "
    "over the untrained start on RSSCN7 (held-out images of the training classes) are expected; RemoteCount, "
    "rebuilt from three DOTA images, has a few samples and says nothing about counting.")


def run(args: DemoArguments) -> dict[str, Any]:
    """Run the demo; returns a summary dict (also written to `OUTPUT/demo_summary.json`)."""
    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    env = offline_environment(output)
    os.environ.update({key: env[key] for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_DATASETS_CACHE")})
    trained = args.checkpoint is None
    clock = StageClock(total=7 if trained else 6)
    benchmarks = output / "benchmarks"
    model_folder = output / "model"
    summary: dict[str, Any] = {"mode": "train" if trained else "convert", "output": str(output)}
    with clock.stage("benchmarks from demo/data: RSSCN7 retrieval + zero-shot (held-out), RemoteCount from DOTA"):
        build_benchmarks(DEMO_DATA, benchmarks, env)
    baseline_path = None
    training = None
    if trained:
        steps = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
        with clock.stage("mini corpus: B2C (DOTA, DIOR), M2B (iSAID), captions; p-Hash dedup; benchmark images out"):
            report = build_corpus(DEMO_DATA, output / "corpus", benchmarks / "remotecount", args.seed, env)
            print(describe_corpus(output / "corpus", report))
        with clock.stage(f"train a tiny RemoteCLIP: {steps} steps, accelerate, {args.num_processes} CPU processes"):
            save_starting_point(output / "untrained", args.seed)
            model_dir = train(output / "corpus", output / "train", steps, args, env)
        with clock.stage("evaluate the untrained start and the trained model"):
            baseline_path = output / "results_untrained.json"
            baseline = evaluate(output / "untrained", benchmarks, baseline_path, env)
            results = evaluate(model_dir, benchmarks, output / "results.json", env)
            print(comparison_table(results, baseline))
        training = {"config": str(TINY_CONFIG.relative_to(REPO_ROOT)), "corpus": "demo/data mini corpus",
                    "corpus_totals": report.get("totals"), "max_steps": steps, "seed": args.seed,
                    "processes": f"{args.num_processes} (CPU, accelerate)",
                    "note": "Demo model: tiny, trained for minutes on a few real images; not RemoteCLIP."}
    else:
        arch = normalize_arch(args.arch)
        model_dir = output / f"converted-{arch.lower()}"
        with clock.stage(f"convert {args.checkpoint} ({arch}) with rclip_hf.convert"):
            convert(args, arch, model_dir)
        with clock.stage("evaluate the converted model"):
            results = evaluate(model_dir, benchmarks, output / "results.json", env)
            print(comparison_table(results, None))
    with clock.stage("model folder: weights, processor, results.json, card + plots; reload and check"):
        card_summary = RANDOM_SUMMARY.format(arch=args.arch) if args.checkpoint == RANDOM_CHECKPOINT else None
        write_model_folder(model_dir, model_folder, output / "results.json", baseline_path, training, card_summary,
                           env)
        print(check_model_folder(model_folder, results))
        from rclip_hf.hub import HubOptions, describe_plan, plan_upload

        print("      dry-run push: " + describe_plan(plan_upload(model_folder), "YOUR_NAME/remoteclip-demo", HubOptions())
              .replace("\n", "\n      "))
    with clock.stage(f"zero-shot: {DEMO_IMAGE.name} against the authors' demo captions"):
        percentages = classify_image(model_folder, DEMO_IMAGE, DEMO_CAPTIONS)
        print(format_scores(DEMO_CAPTIONS, percentages))
        print(f"      chance is {100 / len(DEMO_CAPTIONS):.0f} %; with the official RN50 weights "
              "(--checkpoint RemoteCLIP-RN50.pt --arch RN50) the first caption scores about 100 %")
    with clock.stage("scene index for `rclip-hf explore`: 128 px windows of the DOTA scenes"):
        scene_index = build_demo_scene_index(model_folder, output / "scenes.index")
    if trained or args.checkpoint == RANDOM_CHECKPOINT:
        print("\n" + HONEST_NOTE if trained else "\nRandom weights: near-chance numbers are the expected result.")
    print("\nstage timings:\n" + clock.report())
    print(f"\nmodel folder with card: {model_folder / 'README.md'}")
    print(f"\nquery, label, train and export on a map (a local web app):\n"
          f"  rclip-hf explore --index {scene_index} --model {model_folder}")
    summary.update({"model_folder": str(model_folder), "results": str(output / "results.json"),
                    "airport_scores_percent": dict(zip(DEMO_CAPTIONS, percentages)), "timings_s": clock.timings})
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_demo_scene_index(model_folder: Path, output: Path) -> Path:
    """Index 128 px windows of the DOTA scenes of demo/data with the demo's model, for `rclip-hf explore`."""
    from rclip_hf.inference import WindowOptions, build_scene_index

    report = build_scene_index([DEMO_DATA / "dota" / "images"], output, model_folder,
                               options=WindowOptions(window=128, stride=128))
    print(f"      {report.total} windows of {report.scenes} scenes in {output}")
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python demo/run.py`; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = DataclassArgumentParser(DemoArguments, prog="demo/run.py", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    try:
        run(args)
    except (ConversionError, DemoError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
