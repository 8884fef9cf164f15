"""Box tables in CSV (``image_path,xmin,ymin,xmax,ymax,label``), the layout of the NEON / DeepForest samples."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from dataset_builders.records import Skipped
from dataset_builders.sources.base import (
    Item,
    Loaded,
    SourceReader,
    files_matching,
    parse_floats,
    read_annotation_text,
    sized_collector,
)

CSV_HEADER = ["image_path", "xmin", "ymin", "xmax", "ymax", "label"]


class CsvReader(SourceReader):
    """CSV box tables: PATH is one ``.csv`` file or a folder whose ``*.csv`` files are read (files without the
    header ``image_path,xmin,ymin,xmax,ymax,label`` are skipped and recorded); image paths are relative to the
    CSV's folder; the rows of one image are grouped (file order kept)."""

    name = "csv"
    license = "as the annotated images' own licence (NEON tree crowns: open data, DeepForest MIT)"
    citation = "Weinstein et al., DeepForest: A Python package for RGB deep learning tree crown delineation, MEE 2020"
    layout = "PATH.csv or DIR/*.csv with header image_path,xmin,ymin,xmax,ymax,label"

    def scan(self) -> Iterator[Item | Skipped]:
        tables = [self.root] if self.root.is_file() else files_matching(self.root, "*.csv")
        if not tables:
            raise FileNotFoundError(f"csv: no .csv file at {self.root} (expected {self.layout})")
        for table in tables:
            rows: dict[str, list[tuple[int, list[str]]]] = {}
            text, decoding = read_annotation_text(table)
            if decoding is not None:
                yield self.skip(table, decoding)
            reader = csv.reader(io.StringIO(text, newline=""))
            header = [name.strip() for name in next(reader, [])]
            if header != CSV_HEADER:
                yield self.skip(table, f"not a box table: header {header} is not {CSV_HEADER}", 1)
                continue
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                rows.setdefault(row[0].strip(), []).append((reader.line_num, row))
            for name, image_rows in rows.items():
                image = self.inside(table.parent, name, table, image_rows[0][0])
                if isinstance(image, Skipped):
                    yield image
                elif not image.is_file():
                    yield self.skip(table, f"rows for a missing image {name!r}", image_rows[0][0])
                else:
                    yield Item(image_path=image, annotation_path=table, payload=image_rows,
                               provenance={"annotation": table.name})

    def load(self, item: Item) -> Loaded:
        collector = sized_collector(self, item)
        if isinstance(collector, Loaded):
            return collector
        for line, row in item.payload:
            if len(row) != len(CSV_HEADER):
                collector.note(f"malformed row dropped: expected {len(CSV_HEADER)} fields, got {len(row)}: {row}", line)
                continue
            try:
                coords = parse_floats(row[1:5], item.annotation_path, line)
            except ValueError as error:
                collector.note(f"malformed row dropped: {error}", line)
                continue
            collector.add(row[5].strip(), *coords, line)
        return collector.loaded(item)
