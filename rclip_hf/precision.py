"""One precision vocabulary for training, evaluation and inference: `float32`, `bfloat16`, `float16` (torch's names).

Inference's `--dtype` loads the weights in that type; evaluation's `--dtype` encodes under autocast to it; training's
`--mixed_precision` runs accelerate's AMP in it. accelerate's own spellings (`no`, `bf16`, `fp16`, as `accelerate
launch --mixed_precision` takes them) are accepted everywhere as aliases.
"""

from __future__ import annotations

import torch

from .errors import UserError

#: The names, as `--dtype` takes them.
PRECISIONS = ("float32", "bfloat16", "float16")
#: accelerate's spellings (and fp32) -> the name.
ALIASES = {"no": "float32", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_ACCELERATE = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}


def precision_name(value: str, flag: str = "--dtype") -> str:
    """`value` as one of `PRECISIONS` (an alias translated); raises `UserError` naming `flag` for anything else."""
    name = ALIASES.get(value, value)
    if name not in PRECISIONS:
        raise UserError(f"{flag} {value}", f"choose one of {', '.join(PRECISIONS)}",
                        f"or accelerate's {', '.join(ALIASES)}")
    return name


def torch_dtype(value: str, flag: str = "--dtype") -> torch.dtype:
    """The `torch.dtype` of a precision name or alias."""
    return getattr(torch, precision_name(value, flag))


def accelerate_mixed_precision(value: str, flag: str = "--mixed_precision") -> str:
    """accelerate's `mixed_precision` value (`no`, `bf16`, `fp16`) of a precision name or alias."""
    return _ACCELERATE[precision_name(value, flag)]


__all__ = ["ALIASES", "PRECISIONS", "accelerate_mixed_precision", "precision_name", "torch_dtype"]
