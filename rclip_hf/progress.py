"""Progress bars for the long loops a user waits on, one rule for all of them: a bar is off when huggingface_hub's
switch says so (`HF_HUB_DISABLE_PROGRESS_BARS=1`, or `huggingface_hub.utils.disable_progress_bars()`) or tqdm's
own (`TQDM_DISABLE=1`), whatever the caller asked for."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from huggingface_hub.utils import are_progress_bars_disabled
from tqdm.auto import tqdm

_ON = ("1", "true", "yes", "on")


def progress_disabled() -> bool:
    """Whether the user turned progress bars off (`HF_HUB_DISABLE_PROGRESS_BARS`, `TQDM_DISABLE`, or
    huggingface_hub's `disable_progress_bars()`)."""
    switched_off = any(os.environ.get(name, "").strip().lower() in _ON
                       for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"))
    return switched_off or are_progress_bars_disabled()


def progress_bar(iterable: Iterable[Any] | None = None, *, disable: bool | None = False, **kwargs: Any) -> tqdm:
    """`tqdm.auto.tqdm(iterable, **kwargs)`, off when `disable` or when the user turned bars off; give `total`
    when `iterable` has no length, so that the bar says how far there is to go."""
    return tqdm(iterable, disable=True if progress_disabled() else disable, **kwargs)


__all__ = ["progress_bar", "progress_disabled"]
