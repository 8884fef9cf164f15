"""The labels of `rclip-hf explore`: the LanceDB table `labels` of the index's own database, beside its items (in a
local folder or in object storage alike).

The table holds one row per labelled window and label set: `id` (the item id in the index), `label` (`positive` or
`negative`), `label_set` (`--labels NAME`) and `time` (UTC, when the label was last set); (`id`, `label_set`) is its
key. Every change is one Lance commit (an upsert by the key; a delete clears a label), so a killed server leaves the
label set as it was before or after the change, never half of one. Label files of the earlier layout
(`labels-NAME.parquet` in a local index folder) are moved into the table when the index is next opened. This module
is the only place that knows where labels are stored.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UserError
from ..inference import EmbeddingIndex
from ..inference.index import is_local, lance_errors

Label = Literal["positive", "negative"]
LABELS = ("positive", "negative")
DEFAULT_LABEL_SET = "default"
LABELS_TABLE = "labels"
#: The table's key, in the order of its primary-key positions.
KEY = ("id", "label_set")
#: Fragments (one per change) above which the table is compacted when a label set is opened.
COMPACT_FRAGMENTS = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False,
                              metadata={"lance-schema:unenforced-primary-key:position": "1"}),
                     pa.field("label", pa.string()),
                     pa.field("label_set", pa.string(), nullable=False,
                              metadata={"lance-schema:unenforced-primary-key:position": "2"}),
                     pa.field("time", pa.timestamp("us", tz="UTC"))])
logger = logging.getLogger(__name__)


def check_label_set(name: str) -> str:
    """`name` when it is a label-set name (a plain word); `UserError` otherwise."""
    if not _NAME.match(name):
        raise UserError(f"--labels {name!r}", "not a label-set name",
                        "use letters, digits, '_', '.' and '-' (at most 64, starting with a letter or digit)")
    return name


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LabelStore:
    """The labels of one label set: id -> (label, time), read from the index's `labels` table and written back on
    every change. The table is created by the first label, so opening a read-only index writes nothing."""

    def __init__(self, index: EmbeddingIndex, label_set: str = DEFAULT_LABEL_SET):
        self.label_set = check_label_set(label_set)
        self._index = index
        self._lock = threading.Lock()
        self._table = index.open_table(LABELS_TABLE)
        if is_local(index.uri):
            self._move_label_files(Path(index.uri.removeprefix("file://")))
        self._labels: dict[str, tuple[str, datetime]] = {}
        if self._table is not None:
            self._compact()
            with lance_errors(index.uri):
                rows = (self._table.search().where(f"label_set = {_sql(self.label_set)}").limit(None)
                        .select(["id", "label", "time"]).to_arrow().to_pylist())
            self._labels = {row["id"]: (row["label"], row["time"]) for row in rows}

    def get(self) -> dict[str, str]:
        """id -> label."""
        with self._lock:
            return {item_id: label for item_id, (label, _) in self._labels.items()}

    def rows(self) -> list[dict[str, object]]:
        """The label set's rows: id, label, label_set, time (ISO 8601)."""
        with self._lock:
            return [{"id": item_id, "label": label, "label_set": self.label_set, "time": time.isoformat()}
                    for item_id, (label, time) in self._labels.items()]

    def set(self, item_id: str, label: Label | None) -> None:
        """Label `item_id` (None: clear its label), committed to the table before it returns."""
        if label is not None and label not in LABELS:
            raise ValueError(f"label {label!r}: use one of {', '.join(LABELS)} (or null to clear)")
        with self._lock, lance_errors(self._index.uri):
            if label is None:
                if self._table is not None:
                    self._table.delete(f"id = {_sql(item_id)} AND label_set = {_sql(self.label_set)}")
                self._labels.pop(item_id, None)
            else:
                time = datetime.now(timezone.utc)
                self._upsert(pa.table({"id": [item_id], "label": [label], "label_set": [self.label_set],
                                       "time": [time]}, schema=_SCHEMA), replace=True)
                self._labels[item_id] = (label, time)

    def _upsert(self, rows: pa.Table, replace: bool) -> None:
        """Commit `rows` by the key: rows of keys already in the table replace theirs when `replace`, else are kept
        out."""
        if self._table is None:
            self._table = self._index.open_table(LABELS_TABLE, _SCHEMA)
        merge = self._table.merge_insert(list(KEY))
        (merge.when_matched_update_all() if replace else merge).when_not_matched_insert_all().execute(rows)

    def _compact(self) -> None:
        """Merge the table's small fragments (one per change) once there are many; a failure (e.g. read-only
        storage) leaves the table as it is, and is logged."""
        try:
            if self._table.stats()["fragment_stats"]["num_fragments"] > COMPACT_FRAGMENTS:
                self._table.optimize()
        except (OSError, RuntimeError, ValueError) as error:
            logger.warning("labels of %s: the table was not compacted (%s)", self._index.uri, error)

    def _move_label_files(self, folder: Path) -> None:
        """Move the label files of the earlier layout (`labels-NAME.parquet`) into the table, then delete them; a
        label the table already holds is kept (it was set later)."""
        files = sorted(file for file in folder.glob("labels-*.parquet")
                       if _NAME.match(file.stem.removeprefix("labels-")))
        if not files:
            return
        tables = [_label_file(file) for file in files]
        with lance_errors(self._index.uri):
            self._upsert(pa.concat_tables(tables), replace=False)
        for file, table in zip(files, tables):
            file.unlink()
            logger.info("moved the %d labels of %s into the index's table %r", table.num_rows, file, LABELS_TABLE)


def _label_file(path: Path) -> pa.Table:
    """The rows of a label file of the earlier layout, labelled with the set its name gives."""
    try:
        table = pq.read_table(path, columns=["id", "label", "time"])
    except (OSError, ValueError, pa.ArrowException) as error:
        raise UserError(str(path), f"not a label file of rclip-hf explore ({error})",
                        "move it out of the index folder") from None
    label_set = [path.stem.removeprefix("labels-")] * table.num_rows
    return pa.table({"id": table["id"], "label": table["label"], "label_set": label_set,
                     "time": table["time"].cast(_SCHEMA.field("time").type)}, schema=_SCHEMA)


__all__ = ["DEFAULT_LABEL_SET", "LABELS", "LABELS_TABLE", "LabelStore", "check_label_set"]
