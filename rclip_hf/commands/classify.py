"""`rclip-hf classify`: zero-shot classification of image files and folders against class names or a preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from .options import BANDS_HELP, ModelOptions, expand_images, flag_help, load_model_for, parse_options
from .output import emit

HELP = "zero-shot classification of images against class names or a benchmark preset"


@dataclass(kw_only=True)
class ClassifyOptions(ModelOptions):
    """Options of `rclip-hf classify`."""

    images: list[str] = field(metadata=flag_help("Image files or folders (scanned recursively)", nargs="+"))
    labels: list[str] | None = field(default=None, metadata=flag_help("Class names (or use --preset)"))
    preset: str | None = field(default=None, metadata=flag_help(
        "Benchmark preset with class names and templates, e.g. aid"))
    templates: list[str] | None = field(default=None, metadata=flag_help(
        "Templates with {} (or 'paper' / 'ensemble'); default: the preset's or the paper's"))
    top_k: int = field(default=5, metadata=flag_help("Labels shown per image"))
    batch_size: int = field(default=32, metadata=flag_help("Images per batch"))
    bands: str | None = field(default=None, metadata=flag_help(BANDS_HELP))


def run_classify(argv: list[str]) -> int:
    """`rclip-hf classify`: ranked labels with probabilities for each image."""
    from ..inference.classify import classify, resolve_labels
    from ..inference.windows import parse_bands

    options = parse_options(ClassifyOptions, argv, prog="rclip-hf classify", description=HELP)
    parse_bands(options.bands)  # a bad --bands is refused before the model loads
    if (options.labels is None) == (options.preset is None):
        raise ValueError("give exactly one of --labels (class names) or --preset (e.g. aid, eurosat)")
    labels = options.preset if options.preset is not None else options.labels
    templates = options.templates[0] if options.templates and len(options.templates) == 1 else options.templates
    resolve_labels(labels, templates)  # reject an unknown preset or a bad template before loading the model
    images = expand_images(options.images)
    model, processor = load_model_for(options)
    top_k = min(options.top_k, len(resolve_labels(labels, templates)[0]))
    ranked = classify(images, labels, templates, model=model, processor=processor, top_k=top_k,
                      batch_size=options.batch_size, bands=parse_bands(options.bands))
    rows = [{"image": str(image), "rank": rank, "label": hit["label"], "score": hit["score"]}
            for image, hits in zip(images, ranked) for rank, hit in enumerate(hits, start=1)]
    emit(rows, options.format)
    return 0
