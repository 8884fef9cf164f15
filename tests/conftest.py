"""Shared fixtures: the real remote-sensing samples in ../shared/data and small helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RCLIP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real sample data (``../shared/data``); skips outside CI when absent, fails in CI."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    message = (
        f"real sample data not found at {SHARED_DATA}: put the project's shared/ folder beside the "
        "checkout or set RCLIP_SHARED_DATA"
    )
    if _in_ci():
        pytest.fail(message + " (CI=true: these tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def datasets_cache_in_basetemp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Points the ``datasets`` Arrow cache (and that of subprocesses) into pytest's temporary folder, so the suite
    never grows ``~/.cache/huggingface/datasets``: every ``load_dataset`` of a fresh test folder adds a cache entry."""
    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_CACHE", str(cache))
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        yield cache
