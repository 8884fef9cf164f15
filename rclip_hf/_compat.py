"""Every place rclip-hf relies on a private or version-sensitive behaviour of a pinned library, in one module.

Each hook names the version it was checked against (the pins of `requirements/constraints.txt`);
`tests/test_compat.py` exercises each one and fails, naming the hook, when an upgrade changes what it relies on.

| hook                          | library (checked)        | relies on                                                    |
|-------------------------------|--------------------------|--------------------------------------------------------------|
| `prefer_pil_image_processor`  | transformers 5.23.0      | `image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS` (a private list) |
| `TOKENIZER_ENCODE_HOOK`       | transformers 5.23.0      | every `__call__`/`encode` of a tokenizer goes through `_encode_plus` |
| `bytes_to_unicode`            | transformers 5.23.0      | `convert_slow_tokenizer.bytes_to_unicode` (GPT-2/CLIP byte map; `processing_remoteclip` imports it from transformers itself, as the remote code it ships as may import only transformers) |
| `projected_features`          | transformers 5.23.0      | `get_image_features`/`get_text_features` return an output whose `pooler_output` is the projection |
| `dataset_info_yaml`           | datasets 5.2.0           | `DatasetInfo._to_yaml_dict()` (the card's `dataset_info`)     |
| `get_parquet_column_options`  | datasets 5.2.0           | `arrow_writer.get_parquet_column_options` (Parquet options as datasets writes them) |
| `known_task_ids`              | datasets 5.2.0           | `utils.metadata.known_task_ids` (the Hub's task categories)   |
| `DefaultsHelpFormatter`       | Python 3.11 argparse     | `ArgumentDefaultsHelpFormatter._get_help_string`              |
"""

from __future__ import annotations

import argparse
from typing import Any

from torch import Tensor
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.auto import image_processing_auto
from transformers.tokenization_utils_base import TruncationStrategy

TRANSFORMERS_CHECKED = "5.23.0"
DATASETS_CHECKED = "5.2.0"
PYTHON_CHECKED = "3.11"

#: The tokenizer method `RemoteCLIPTokenizer` (which ships as remote code, so it cannot import this module) overrides to clean and truncate every text (transformers 5.23.0:
#: `__call__`, `encode` and batches all call it, once per text or pair).
TOKENIZER_ENCODE_HOOK = "_encode_plus"


def prefer_pil_image_processor(class_name: str) -> None:
    """Make `AutoImageProcessor` build `class_name` with its PIL backend (transformers 5.23.0 otherwise prefers a
    torchvision backend when torchvision is installed, and warns when the class has none)."""
    if class_name not in image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS:
        image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS.append(class_name)


def projected_features(output: Any) -> Tensor:
    """The projected embedding (batch, projection_dim) of `get_image_features` / `get_text_features`: the
    `pooler_output` of the output object transformers 5.23.0 returns, or the tensor older versions returned."""
    return output if isinstance(output, Tensor) else output.pooler_output


def dataset_info_yaml(features: Any, **info: Any) -> dict[str, Any]:
    """The `dataset_info` block of a dataset card for `features` and other `DatasetInfo` fields (`splits`,
    `download_size`, ...) (datasets 5.2.0: `DatasetInfo._to_yaml_dict`)."""
    import datasets

    return datasets.DatasetInfo(features=features, **info)._to_yaml_dict()


#: Names re-exported from `datasets` (datasets 5.2.0), imported on first use: `import rclip_hf` needs no `datasets`.
_FROM_DATASETS = {"get_parquet_column_options": "datasets.arrow_writer", "known_task_ids": "datasets.utils.metadata"}


def __getattr__(name: str) -> Any:
    if name in _FROM_DATASETS:
        import importlib

        return getattr(importlib.import_module(_FROM_DATASETS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only to options that have a default and do not state one already (argparse of
    Python 3.11: `_get_help_string` is the formatter's documented extension point, by name only)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or action.default in (None, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


__all__ = ["DATASETS_CHECKED", "PYTHON_CHECKED", "TOKENIZER_ENCODE_HOOK", "TRANSFORMERS_CHECKED",
           "DefaultsHelpFormatter", "TruncationStrategy", "bytes_to_unicode", "dataset_info_yaml",
           "prefer_pil_image_processor", "projected_features"]  # + the lazy `_FROM_DATASETS` names
