"""The labels of `rclip-hf explore`: one table per label set inside the index folder, written atomically.

The table `labels-<NAME>.parquet` holds one row per labelled window: `id` (the item id in the index), `label`
(`positive` or `negative`), `label_set` (NAME) and `time` (UTC, when the label was last set). Every change rewrites
it through a temporary file renamed over the old one, so a killed server leaves the previous or the new table, never
half of one. This module is the only place that knows where labels are stored.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UserError

Label = Literal["positive", "negative"]
LABELS = ("positive", "negative")
DEFAULT_LABEL_SET = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCHEMA = pa.schema([("id", pa.string()), ("label", pa.string()), ("label_set", pa.string()),
                     ("time", pa.timestamp("us", tz="UTC"))])


def labels_path(index_directory: str | Path, label_set: str) -> Path:
    """The label table of `label_set` in the index folder; `UserError` for a name that is not a plain word."""
    if not _NAME.match(label_set):
        raise UserError(f"--labels {label_set!r}", "not a label-set name",
                        "use letters, digits, '_', '.' and '-' (at most 64, starting with a letter or digit)")
    return Path(index_directory) / f"labels-{label_set}.parquet"


class LabelStore:
    """The labels of one label set: id -> (label, time), reloaded from the index folder and saved on every change."""

    def __init__(self, index_directory: str | Path, label_set: str = DEFAULT_LABEL_SET):
        self.label_set = label_set
        self.path = labels_path(index_directory, label_set)
        self._lock = threading.Lock()
        self._labels: dict[str, tuple[str, datetime]] = {}
        if self.path.is_file():
            table = pq.read_table(self.path).to_pylist()
            self._labels = {row["id"]: (row["label"], row["time"]) for row in table}

    def get(self) -> dict[str, str]:
        """id -> label."""
        with self._lock:
            return {item_id: label for item_id, (label, _) in self._labels.items()}

    def rows(self) -> list[dict[str, object]]:
        """The table's rows: id, label, label_set, time (ISO 8601)."""
        with self._lock:
            return [{"id": item_id, "label": label, "label_set": self.label_set, "time": time.isoformat()}
                    for item_id, (label, time) in self._labels.items()]

    def set(self, item_id: str, label: Label | None) -> None:
        """Label `item_id` (None: clear its label) and save the table."""
        if label is not None and label not in LABELS:
            raise ValueError(f"label {label!r}: use one of {', '.join(LABELS)} (or null to clear)")
        with self._lock:
            if label is None:
                self._labels.pop(item_id, None)
            else:
                self._labels[item_id] = (label, datetime.now(timezone.utc))
            self._save()

    def _save(self) -> None:
        ids = list(self._labels)
        table = pa.table({"id": ids, "label": [self._labels[i][0] for i in ids],
                          "label_set": [self.label_set] * len(ids), "time": [self._labels[i][1] for i in ids]},
                         schema=_SCHEMA)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        pq.write_table(table, temporary)
        os.replace(temporary, self.path)


__all__ = ["DEFAULT_LABEL_SET", "LABELS", "LabelStore", "labels_path"]
