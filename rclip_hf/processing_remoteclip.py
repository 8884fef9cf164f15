"""RemoteCLIP processor: open_clip's eval image transform and CLIP tokenizer, built offline."""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar

import ftfy
import numpy as np
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPProcessor, CLIPTokenizer
from transformers.tokenization_utils_base import TruncationStrategy

#: Context length of every CLIP text tower (77 tokens including the start and end tokens).
CONTEXT_LENGTH = 77
#: Number of BPE merges used by OpenAI CLIP (the file holds more).
NUM_MERGES = 49152 - 256 - 2
BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, characters)))


@lru_cache(maxsize=1)
def clip_bpe_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (49,408 tokens) and merge list, read from the BPE file shipped with rclip_hf."""
    with resources.files("rclip_hf.assets").joinpath(BPE_VOCAB_FILE).open("rb") as handle:
        lines = gzip.decompress(handle.read()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    tokens = list(_bytes_to_unicode().values())
    tokens = tokens + [token + "</w>" for token in tokens]
    tokens += ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def clean_caption(text: str) -> str:
    """open_clip's text cleaning: ftfy repair, HTML unescape (twice), whitespace collapse, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
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


class RemoteCLIPImageProcessor(CLIPImageProcessorPil):
    """open_clip's eval transform on PIL images: bicubic resize of the shorter side, centre crop, OpenAI mean/std.

    A named PIL-backend class so that `AutoImageProcessor` reloads exactly this transform (not the torchvision one).
    Two details follow torchvision (what open_clip uses) rather than transformers' defaults: images with an alpha
    channel lose it (`convert("RGB")`) instead of being composited on white, and the centre crop's offset is
    rounded (`round((size - crop) / 2)`) instead of floored, which moves odd margins by one pixel.
    """

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
        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"))
        return super().convert_to_rgb(image, input_data_format=input_data_format)


class RemoteCLIPProcessor(CLIPProcessor):
    """CLIP processor pairing a [`RemoteCLIPImageProcessor`] with a [`RemoteCLIPTokenizer`]."""

    text_kwargs: ClassVar[dict[str, Any]] = {"truncation": True}  # at most 77 tokens, as the tokenizer does on its own


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


__all__ = ["RemoteCLIPImageProcessor", "RemoteCLIPProcessor", "RemoteCLIPTokenizer", "build_image_processor", "build_processor",
           "build_tokenizer", "clean_caption", "clip_bpe_vocabulary"]
