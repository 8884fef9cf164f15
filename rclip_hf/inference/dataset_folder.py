"""Reading a Hugging Face dataset given as a source: a folder of data files (Parquet/Arrow, as `load_dataset` reads
them), a folder written by `save_to_disk`, or a Hub dataset id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UserError, dataset_not_found
from ..loading import HUB_ID

#: Dataset rows read at a time by `numbered_rows`.
ROW_BATCH = 256


def load_dataset_folder(folder: str | Path, split: str) -> Any:
    """The `split` of the dataset in `folder` as a `datasets.Dataset`: through `load_from_disk` for a folder written
    by `save_to_disk` (a saved single `Dataset` is its one split), else through `load_dataset`. ValueError naming
    the folder when it cannot be read or has no such split."""
    import datasets

    folder = Path(folder)
    try:
        if not ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()):
            return datasets.load_dataset(str(folder), split=split)
        saved = datasets.load_from_disk(str(folder))
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise ValueError(f"no split {split!r} (splits: {', '.join(saved)}): give --split")
            return saved[split]
        return saved
    except (OSError, ValueError) as error:
        raise ValueError(f"dataset {folder}: {error}") from None


def is_hub_dataset_id(source: str | Path) -> bool:
    """Whether `source` names a Hub dataset (`owner/name`, as a string) rather than a local path: none exists."""
    return isinstance(source, str) and HUB_ID.match(source) is not None and not Path(source).exists()


def load_hub_dataset(repo_id: str, split: str) -> Any:
    """The `split` of the Hub dataset `repo_id` through `load_dataset` (a cached copy loads offline); `UserError`
    naming `--source` for an id that cannot be loaded or a split it does not have."""
    import datasets

    try:
        return datasets.load_dataset(repo_id, split=split)
    except OSError as error:  # not on the Hub, not cached offline, no access
        raise dataset_not_found("--source", repo_id, error) from None
    except ValueError as error:  # e.g. an unknown split
        raise UserError(f"--source {repo_id}", str(error), "check --split") from None


def numbered_rows(dataset: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, {column: value}) of every row of a `datasets.Dataset`, read `ROW_BATCH` rows at a time."""
    for number, batch in enumerate(dataset.iter(batch_size=ROW_BATCH)):
        for offset, values in enumerate(zip(*batch.values())):
            yield number * ROW_BATCH + offset, dict(zip(batch, values))
