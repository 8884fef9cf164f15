"""XML parsing that keeps each element's line number (for skip reasons that name file and line)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import xml.parsers.expat
from abc import abstractmethod
from pathlib import Path

from dataset_builders.sources.base import BoxCollector, Item, Loaded, SourceReader, sized_collector


class XmlFile:
    """A parsed XML annotation file: ``root`` plus ``line(element)``; malformed XML raises ValueError with file:line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: dict[int, int] = {}
        builder = ET.TreeBuilder()
        parser = xml.parsers.expat.ParserCreate()

        def start(tag: str, attributes: dict[str, str]) -> None:
            self._lines[id(builder.start(tag, attributes))] = parser.CurrentLineNumber

        parser.StartElementHandler = start
        parser.EndElementHandler = builder.end
        parser.CharacterDataHandler = builder.data
        try:
            parser.Parse(path.read_bytes(), True)
        except xml.parsers.expat.ExpatError as error:
            raise ValueError(f"{path}:{error.lineno}: malformed XML: {xml.parsers.expat.ErrorString(error.code)}") from None
        self.root = builder.close()

    def line(self, element: ET.Element) -> int | None:
        """Line of an element's start tag."""
        return self._lines.get(id(element))

    def text(self, element: ET.Element, tag: str) -> str:
        """Stripped text of a required child; raises ValueError naming file, line and tag when missing."""
        child = element.find(tag)
        if child is None or child.text is None or not child.text.strip():
            raise ValueError(f"{self.path}:{self.line(element)}: <{element.tag}> has no <{tag}>")
        return child.text.strip()

    def number(self, element: ET.Element, tag: str) -> float:
        """A required numeric child; raises ValueError naming file, line, tag and value when not a number."""
        value = self.text(element, tag)
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{self.path}:{self.line(element)}: <{tag}> is {value!r}, not a number") from None


class XmlReader(SourceReader):
    """Base of sources with one XML annotation file per image: ``load`` sizes the image, parses the XML (a
    malformed file skips the image, named with its line) and lets ``add_objects`` fill the boxes."""

    @abstractmethod
    def add_objects(self, xml: XmlFile, collector: BoxCollector, item: Item) -> None:
        """Add the boxes of a parsed annotation file to the collector (notes for bad objects)."""

    def load(self, item: Item) -> Loaded:
        collector = sized_collector(self, item)
        if isinstance(collector, Loaded):
            return collector
        try:
            xml = XmlFile(item.annotation_path)
        except ValueError as error:
            return Loaded(skipped=self.skip(item.annotation_path, str(error)))
        self.add_objects(xml, collector, item)
        return collector.loaded(item)
