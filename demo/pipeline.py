"""Stages of the rclip-hf demo: checkpoint -> conversion -> zero-shot on the authors' demo image."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor, HfArgumentParser

import rclip_hf
from rclip_hf.convert import ConversionError, convert_checkpoint, normalize_arch

logger = logging.getLogger("demo")

DEMO_DIR = Path(__file__).resolve().parent
DEMO_DATA = DEMO_DIR / "data"
#: The authors' demo (RemoteCLIP README): this image against these captions, ~100 % on the first with RN50.
DEMO_IMAGE = DEMO_DATA / "remoteclip" / "airport.jpg"
DEMO_CAPTIONS = (
    "A busy airport with many airplanes.",
    "Satellite view of Hohai University.",
    "A building next to a lake.",
    "Many people in a stadium.",
    "a cute cat",
)


@dataclass
class DemoArguments:
    """Options of `python demo/run.py`."""

    output: str = field(metadata={"help": "folder for everything the demo writes"})
    checkpoint: str | None = field(
        default=None, metadata={"help": "official open_clip .pt file (e.g. RemoteCLIP-RN50.pt); none: random weights"})
    arch: str = field(default="RN50", metadata={"help": "architecture of --checkpoint (RN50, ViT-B-32, ViT-L-14)"})
    quick: bool = field(default=False, metadata={"help": "shortened run for CI (fewer steps, same stages)"})
    seed: int = field(default=0, metadata={"help": "seed of the random weights and of every random choice"})


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


def run(args: DemoArguments) -> dict:
    """Run the demo; returns a summary dict (also written to `OUTPUT/demo_summary.json`)."""
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    arch = normalize_arch(args.arch)
    model_dir = output / f"remoteclip-{arch.lower()}"
    clock = StageClock(total=2)
    random_weights = args.checkpoint is None
    if random_weights:
        with clock.stage(f"build a random-weight {arch} checkpoint (official architecture) and convert it"):
            with tempfile.TemporaryDirectory() as scratch:
                checkpoint = Path(scratch) / f"random-{arch}.pt"
                converted = make_random_checkpoint(arch, checkpoint, args.seed)
                if converted:
                    convert_checkpoint(checkpoint, arch, model_dir)
                    print(f"      random open_clip {arch}-quickgelu state dict -> transformers folder {model_dir}")
            if not converted:
                build_random_model_folder(arch, model_dir, args.seed)
                print(f"      open_clip is not installed: built RemoteCLIPModel({arch}) directly in {model_dir}")
    else:
        with clock.stage(f"convert {args.checkpoint} ({arch})"):
            convert_checkpoint(args.checkpoint, arch, model_dir)
            print(f"      -> {model_dir}")
    with clock.stage(f"zero-shot: {DEMO_IMAGE.name} against the authors' demo captions"):
        percentages = classify_image(model_dir, DEMO_IMAGE, DEMO_CAPTIONS)
        print(format_scores(DEMO_CAPTIONS, percentages))
        if random_weights:
            print(f"      random weights: near-uniform scores (chance is {100 / len(DEMO_CAPTIONS):.0f} %) are the "
                  "expected, honest result; pass --checkpoint RemoteCLIP-RN50.pt --arch RN50 for the real model")
    print("\nstage timings:\n" + clock.report())
    summary = {"arch": arch, "checkpoint": args.checkpoint, "model_dir": str(model_dir),
               "image": DEMO_IMAGE.name, "scores_percent": dict(zip(DEMO_CAPTIONS, percentages)),
               "timings_s": clock.timings}
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python demo/run.py`; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    try:
        run(args)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
