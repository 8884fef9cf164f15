"""How the subcommands print their results: an aligned table, CSV or JSON, to stdout or to an `--output` file."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from .options import OutputFormat


def emit(rows: list[dict[str, Any]], output_format: OutputFormat, document: Any = None) -> None:
    """Print `rows` as an aligned table or CSV, or `document` (default: the rows) as JSON."""
    if output_format == "json":
        print(json.dumps(rows if document is None else document, indent=2, default=str))
        return
    if not rows:
        return
    columns = list(rows[0])
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        print(buffer.getvalue(), end="")
        return
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip())
    print("  ".join("-" * width for width in widths))
    for line in cells:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def printed_to(path: str | None) -> Iterator[None]:
    """Send what is printed inside to the file at `path` (when given) instead of stdout."""
    if path is None:
        yield
        return
    from ..staging import replaced_file

    with replaced_file(path) as handle, io.TextIOWrapper(handle, encoding="utf-8") as text, \
            contextlib.redirect_stdout(text):
        yield
