"""Hub dataset ids without the Hub: a dataset folder put in the `datasets` cache as `load_dataset(repo_id)` leaves
it after a download, and the switches that make `datasets` and `huggingface_hub` read only that cache."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest


def cache_as_hub_dataset(folder: Path, repo_id: str) -> None:
    """Put the dataset of `folder` (Parquet shards named `SPLIT-...parquet`) in the datasets cache as
    `load_dataset(repo_id)` leaves it after a download (OWNER___NAME/default/0.0.0/HASH, prepared by the same
    Parquet builder), so that it loads offline."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    owner, name = repo_id.split("/")
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    data_files = {path.name.split("-")[0]: str(path) for path in folder.glob("*.parquet")}
    Parquet(cache_dir=str(cache), dataset_name=name, config_id="default", data_files=data_files,
            hash="0000offline").download_and_prepare()  # a builder given repo_id insists on hf:// data files
    (cache / name).rename(cache / f"{owner}___{name}")


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """`HF_DATASETS_OFFLINE=1`, as `datasets` and `huggingface_hub` read it once imported."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
