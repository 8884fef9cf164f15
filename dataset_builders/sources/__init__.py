"""Source readers, one per original dataset format, registered by format name (``--source FORMAT=PATH``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataset_builders.records import Record, Skipped
from dataset_builders.sources.au_air import AuAirReader
from dataset_builders.sources.base import Item, Loaded, SourceReader
from dataset_builders.sources.captions import CaptionsReader
from dataset_builders.sources.carpk import CarpkReader
from dataset_builders.sources.csvboxes import CsvReader
from dataset_builders.sources.dota import DotaReader
from dataset_builders.sources.hrsc import HrscReader
from dataset_builders.sources.isprs import PotsdamReader, VaihingenReader
from dataset_builders.sources.levir import LevirReader
from dataset_builders.sources.loveda import LovedaReader
from dataset_builders.sources.masks import IsaidReader
from dataset_builders.sources.stanford_drone import StanfordDroneReader
from dataset_builders.sources.visdrone import VisDroneReader
from dataset_builders.sources.voc import DiorReader, GenericVocReader, HrrsdReader, RsodReader

__all__ = ["READERS", "Item", "Loaded", "SourceReader", "get_reader", "read_source"]

#: format name -> reader class
READERS: dict[str, type[SourceReader]] = {
    reader.name: reader
    for reader in (DotaReader, IsaidReader, DiorReader, HrrsdReader, RsodReader, GenericVocReader, HrscReader,
                   LevirReader, VisDroneReader, AuAirReader, CarpkReader, StanfordDroneReader, LovedaReader,
                   PotsdamReader, VaihingenReader, CaptionsReader, CsvReader)
}


def get_reader(name: str, root: Path | str, **options: Any) -> SourceReader:
    """The reader of format ``name`` for the data at ``root``; ValueError listing the formats when unknown."""
    if name not in READERS:
        raise ValueError(f"unknown source format {name!r}; known formats: {', '.join(sorted(READERS))}")
    return READERS[name](root, **options)


def read_source(name: str, root: Path | str, **options: Any) -> tuple[list[Record], list[Skipped]]:
    """All records of a source and everything skipped on the way (skipped images and annotation notes)."""
    records: list[Record] = []
    skipped: list[Skipped] = []
    for entry in get_reader(name, root, **options).read():
        (records if isinstance(entry, Record) else skipped).append(entry)
    return records, skipped
