"""RemoteCLIP processor: open_clip's eval image transform and CLIP tokenizer, built offline.

This file is also shipped, unchanged, beside the weights of ResNet folders (`trust_remote_code=True`): it imports
only transformers (and ftfy when installed: without it, captions are not repaired for mojibake, as open_clip does).
"""

from __future__ import annotations

import gzip
import html
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from transformers import CLIPImageProcessorPil, CLIPProcessor, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode  # a hook: see rclip_hf._compat
from transformers.image_utils import PILImageResampling, is_pil_image, to_numpy_array
from transformers.tokenization_utils_base import TruncationStrategy

try:
    import ftfy
except ImportError:  # remote code in a Python without ftfy: open_clip's cleaning minus the mojibake repair
    ftfy = None

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

#: Context length of every CLIP text tower (77 tokens including the start and end tokens).
CONTEXT_LENGTH = 77
#: Number of BPE merges used by OpenAI CLIP (the file holds more).
NUM_MERGES = 49152 - 256 - 2
BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"


@lru_cache(maxsize=1)
def clip_bpe_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (49,408 tokens) and merge list, read from the BPE file shipped with rclip_hf."""
    with resources.files("rclip_hf.assets").joinpath(BPE_VOCAB_FILE).open("rb") as handle:
        lines = gzip.decompress(handle.read()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [token + "</w>" for token in tokens]
    tokens += ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def clean_caption(text: str) -> str:
    """open_clip's text cleaning: ftfy repair, HTML unescape (twice), whitespace collapse, lower case."""
    text = ftfy.fix_text(text) if ftfy is not None else text
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class RemoteCLIPTokenizer(CLIPTokenizer):
    """
    CLIP BPE tokenizer giving the same ids as `open_clip.tokenize`: text is cleaned like open_clip
    ([`clean_caption`]) and always truncated to `model_max_length` (77) tokens with the end token kept,
    since the text tower cannot read more.
    """

    def __init__(self, *args: Any, model_max_length: int = CONTEXT_LENGTH, **kwargs: Any):
        super().__init__(*args, model_max_length=model_max_length, **kwargs)

    def _encode_plus(self, text, text_pair=None, truncation_strategy=TruncationStrategy.DO_NOT_TRUNCATE,
                     max_length=None, is_split_into_words=False, **kwargs):
        if not is_split_into_words:
            text = _clean_any(text)
            text_pair = _clean_any(text_pair)
        if truncation_strategy == TruncationStrategy.DO_NOT_TRUNCATE:  # the text tower reads at most 77 tokens
            truncation_strategy = TruncationStrategy.LONGEST_FIRST
            max_length = min(max_length or self.model_max_length, self.model_max_length)
        return super()._encode_plus(text, text_pair=text_pair, truncation_strategy=truncation_strategy,
                                    max_length=max_length, is_split_into_words=is_split_into_words, **kwargs)


def _clean_any(text: str | list[str] | None) -> str | list[str] | None:
    if isinstance(text, str):
        return clean_caption(text)
    if isinstance(text, (list, tuple)):
        return [clean_caption(item) if isinstance(item, str) else item for item in text]
    return text


def open_clip_rgb(image: Image.Image, shortest_edge: int | None = None,
                  crop_size: tuple[int, int] | None = None) -> Image.Image:
    """open_clip's eval transform of a PIL image up to the tensor: resize, centre crop, then `convert("RGB")`.

    As in open_clip (torchvision `Resize`, `CenterCrop`, then `convert("RGB")`), the resize (bicubic, shorter side
    to `shortest_edge`, longer side floored) and the crop (offsets rounded) run in the image's own mode, and the
    conversion comes last: alpha is dropped, not composited; PIL resizes RGBA with premultiplied alpha, P and 1
    images with nearest neighbour, I;16 in 16 bits before clipping. `crop_size` is (height, width).
    """
    if shortest_edge is not None:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = shortest_edge, int(shortest_edge * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, resample=PILImageResampling.BICUBIC)
    if crop_size is not None:
        (width, height), (crop_height, crop_width) = image.size, crop_size
        if width >= crop_width and height >= crop_height and (width, height) != (crop_width, crop_height):
            top, left = round((height - crop_height) / 2.0), round((width - crop_width) / 2.0)
            image = image.crop((left, top, left + crop_width, top + crop_height))
    return image.convert("RGB")


class RemoteCLIPImageProcessor(CLIPImageProcessorPil):
    """open_clip's eval transform on PIL images: bicubic resize of the shorter side, centre crop, OpenAI mean/std.

    A named PIL-backend class so that `AutoImageProcessor` reloads exactly this transform (not the torchvision one).
    Details follow torchvision (what open_clip uses) rather than transformers' defaults: PIL images are resized and
    cropped in their own mode and only then lose their alpha channel ([`open_clip_rgb`]) instead of being composited
    on white, and the centre crop's offset is rounded (`round((size - crop) / 2)`) instead of floored, which moves
    odd margins by one pixel.
    """

    def _preprocess_image_like_inputs(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs [`open_clip_rgb`] on PIL inputs first (the array steps after it then keep their size)."""
        if kwargs.get("do_convert_rgb"):
            size, crop = kwargs.get("size"), kwargs.get("crop_size")
            shortest_edge = size.shortest_edge if kwargs.get("do_resize") and size is not None else None
            crop_size = (crop.height, crop.width) if kwargs.get("do_center_crop") and crop is not None else None
            images = [open_clip_rgb(image, shortest_edge, crop_size) if is_pil_image(image) else image
                      for image in self._prepare_images_structure(images)]
        return super()._preprocess_image_like_inputs(images, *args, **kwargs)

    def center_crop(self, image: np.ndarray, size: Any, **kwargs: Any) -> np.ndarray:
        """Centre crop of a (channels, height, width) array with torchvision's offset rounding."""
        height, width = image.shape[-2:]
        if height < size.height or width < size.width:  # padding case: same as transformers
            return super().center_crop(image, size, **kwargs)
        top = round((height - size.height) / 2.0)
        left = round((width - size.width) / 2.0)
        return image[..., top : top + size.height, left : left + size.width]

    def convert_to_rgb(self, image: Any, input_data_format: Any = None) -> np.ndarray:
        """(H, W, 3) uint8 array; PIL images are converted with `Image.convert("RGB")`, dropping alpha."""
        if is_pil_image(image):
            return to_numpy_array(image.convert("RGB"))
        return super().convert_to_rgb(image, input_data_format=input_data_format)


#: Class names written to the processor files of a folder without remote code: plain transformers CLIP loads them.
PLAIN_CLASS_NAMES = {"processor": "CLIPProcessor", "image_processor": "CLIPImageProcessor", "tokenizer": "CLIPTokenizer"}
#: Class names and `auto_map` entries of a remote-code folder (its `config.json` has `auto_map`).
REMOTE_CLASS_NAMES = {"processor": "RemoteCLIPProcessor", "image_processor": "RemoteCLIPImageProcessor",
                      "tokenizer": "RemoteCLIPTokenizer"}
PROCESSOR_FILE, TOKENIZER_FILE, CONFIG_FILE = "processor_config.json", "tokenizer_config.json", "config.json"


class RemoteCLIPProcessor(CLIPProcessor):
    """CLIP processor pairing a [`RemoteCLIPImageProcessor`] with a [`RemoteCLIPTokenizer`].

    `from_pretrained` builds these two classes from any CLIP folder (so plain-CLIP folders get open_clip's exact
    transform). `save_pretrained` names the classes for the folder it writes to: plain `CLIPProcessor` names when
    the folder's `config.json` has no `auto_map` (ViT folders, which plain transformers loads), the RemoteCLIP
    names with `auto_map` entries to `processing_remoteclip.py` when it has (ResNet folders); save the model first.
    """

    text_kwargs: ClassVar[dict[str, Any]] = {"truncation": True}  # at most 77 tokens, as the tokenizer does on its own

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> RemoteCLIPProcessor:
        """The processor of a RemoteCLIP or plain CLIP folder (or Hub id), as RemoteCLIP classes."""
        kwargs.pop("trust_remote_code", None)
        image_processor = RemoteCLIPImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        tokenizer = RemoteCLIPTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls(image_processor=image_processor, tokenizer=tokenizer)

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> list[str]:
        """Save the processor files, naming plain CLIP or remote-code classes as the folder's `config.json` asks."""
        if push_to_hub:
            raise ValueError("upload with `rclip-hf push` (the upload allow-list), not save_pretrained(push_to_hub=True)")
        files = super().save_pretrained(save_directory, **kwargs)
        name_processor_classes(save_directory)
        return files


def name_processor_classes(folder: str | os.PathLike) -> bool:
    """Rewrite the class names in `folder`'s processor files for its model (see [`RemoteCLIPProcessor`]); returns
    True when the folder is a remote-code one."""
    folder = Path(folder)
    config_file = folder / CONFIG_FILE
    remote = config_file.is_file() and "auto_map" in json.loads(config_file.read_text(encoding="utf-8"))
    names = REMOTE_CLASS_NAMES if remote else PLAIN_CLASS_NAMES
    processor = json.loads((folder / PROCESSOR_FILE).read_text(encoding="utf-8"))
    processor["processor_class"] = names["processor"]
    processor["image_processor"]["image_processor_type"] = names["image_processor"]
    tokenizer = json.loads((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))
    tokenizer.update(processor_class=names["processor"], tokenizer_class=names["tokenizer"])
    for entry in (processor, processor["image_processor"], tokenizer):
        entry.pop("auto_map", None)
    if remote:
        processor["auto_map"] = {"AutoProcessor": "processing_remoteclip.RemoteCLIPProcessor"}
        processor["image_processor"]["auto_map"] = {
            "AutoImageProcessor": "processing_remoteclip.RemoteCLIPImageProcessor"}
        tokenizer["auto_map"] = {"AutoTokenizer": [None, "processing_remoteclip.RemoteCLIPTokenizer"]}
    for name, content in ((PROCESSOR_FILE, processor), (TOKENIZER_FILE, tokenizer)):
        (folder / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return remote


def build_tokenizer() -> RemoteCLIPTokenizer:
    """The CLIP tokenizer from the BPE vocabulary bundled with rclip_hf (no network)."""
    vocab, merges = clip_bpe_vocabulary()
    return RemoteCLIPTokenizer(vocab=vocab, merges=merges)


def build_image_processor(image_size: int = 224) -> RemoteCLIPImageProcessor:
    """The image processor for `image_size` x `image_size` model inputs."""
    return RemoteCLIPImageProcessor(size={"shortest_edge": image_size},
                                 crop_size={"height": image_size, "width": image_size})


def build_processor(image_size: int = 224) -> RemoteCLIPProcessor:
    """A complete RemoteCLIP processor for models with `image_size` x `image_size` inputs."""
    return RemoteCLIPProcessor(image_processor=build_image_processor(image_size), tokenizer=build_tokenizer())


__all__ = ["RemoteCLIPImageProcessor", "RemoteCLIPProcessor", "RemoteCLIPTokenizer", "build_image_processor",
           "build_processor", "build_tokenizer", "clean_caption", "clip_bpe_vocabulary", "name_processor_classes",
           "open_clip_rgb"]
