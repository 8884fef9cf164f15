"""Pascal-VOC XML sources: DIOR (horizontal and oriented boxes), HRRSD, RSOD and any VOC folder (NEON trees)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from dataset_builders.records import Skipped
from dataset_builders.sources.base import (
    BoxCollector,
    Item,
    files_matching,
    images_in,
    pair_by_stem,
    path_inside,
)
from dataset_builders.sources.xmlfile import XmlFile, XmlReader

CORNER_TAGS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
               "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")


def rotated_corners(cx: float, cy: float, w: float, h: float, angle: float) -> tuple[list[float], list[float]]:
    """Corners (xs, ys) of a box of centre (cx, cy), size (w, h), rotated by ``angle`` radians."""
    cos, sin = math.cos(angle), math.sin(angle)
    offsets = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return [cx + dx * cos - dy * sin for dx, dy in offsets], [cy + dx * sin + dy * cos for dx, dy in offsets]


def add_voc_object(xml: XmlFile, obj: ET.Element, collector: BoxCollector) -> None:
    """Add one ``<object>``: ``<bndbox>`` (xmin..ymax), ``<robndbox>`` with DIOR-R corners or roLabelImg
    ``cx cy w h angle``; raises ValueError naming file and line when none of them is complete."""
    label = xml.text(obj, "name")
    line = xml.line(obj)
    box = obj.find("bndbox")
    if box is not None:
        collector.add(label, *(xml.number(box, tag) for tag in ("xmin", "ymin", "xmax", "ymax")), line)
        return
    rotated = obj.find("robndbox")
    if rotated is None:
        raise ValueError(f"{xml.path}:{line}: <object> {label!r} has neither <bndbox> nor <robndbox>")
    if rotated.find("x_left_top") is not None:
        coords = [xml.number(rotated, tag) for tag in CORNER_TAGS]
        collector.add_polygon(label, coords[0::2], coords[1::2], line)
    else:
        xs, ys = rotated_corners(*(xml.number(rotated, tag) for tag in ("cx", "cy", "w", "h", "angle")))
        collector.add_polygon(label, xs, ys, line)


class VocReader(XmlReader):
    """Base of VOC-XML sources: one XML per image, objects with horizontal or oriented boxes.
    Subclasses give the folders (glob patterns relative to DIR) where images and XMLs live; earlier
    annotation folders win when an image has XMLs in several (DIOR's horizontal before oriented)."""

    image_dirs: ClassVar[tuple[str, ...]]
    annotation_dirs: ClassVar[tuple[str, ...]]

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("include_difficult",)

    def scan(self) -> Iterator[Item | Skipped]:
        images: dict[str, Path] = {}
        for pattern in self.image_dirs:
            for folder in sorted(self.root.glob(pattern)):
                images.update(images_in(folder))
        annotations: dict[str, Path] = {}
        for pattern in reversed(self.annotation_dirs):
            for folder in sorted(self.root.glob(pattern)):
                annotations.update({path.stem: path for path in files_matching(folder, "*.xml")})
        if not images and not annotations:
            raise FileNotFoundError(f"{self.name}: no images or XML files under {self.root} (expected {self.layout})")
        yield from pair_by_stem(self, images, annotations)

    def add_objects(self, xml: XmlFile, collector: BoxCollector, item: Item) -> None:
        size = xml.root.find("size")
        if size is not None and size.find("width") is not None:
            try:
                declared = (int(xml.number(size, "width")), int(xml.number(size, "height")))
            except ValueError as error:
                collector.note(f"<size> ignored: {error}", xml.line(size))
            else:
                if declared != (collector.width, collector.height):
                    collector.note(f"<size> says {declared[0]}x{declared[1]} but the image is "
                                   f"{collector.width}x{collector.height}; the image size is used", xml.line(size))
        include_difficult = self.options.get("include_difficult", True)
        for obj in xml.root.iter("object"):
            difficult = obj.find("difficult")
            if not include_difficult and difficult is not None and (difficult.text or "").strip() == "1":
                collector.note("difficult object dropped (include_difficult=False)", xml.line(obj))
                continue
            try:
                add_voc_object(xml, obj, collector)
            except ValueError as error:
                collector.note(f"malformed object dropped: {error}", xml.line(obj))


class DiorReader(VocReader):
    """DIOR / DIOR-R: ``DIR/JPEGImages[-trainval|-test]/<id>.jpg`` + ``DIR/Annotations/[Horizontal Bounding
    Boxes|Oriented Bounding Boxes]/<id>.xml`` (horizontal preferred when both exist)."""

    name = "dior"
    license = "DIOR: academic research use only (http://www.escience.cn/people/gongcheng/DIOR.html)"
    citation = "Li et al., Object detection in optical remote sensing images: A survey and a new benchmark, ISPRS 2020"
    layout = "DIR/JPEGImages*/<id>.jpg + DIR/Annotations/{Horizontal,Oriented} Bounding Boxes/<id>.xml"
    image_dirs = ("JPEGImages", "JPEGImages-trainval", "JPEGImages-test")
    annotation_dirs = ("Annotations/Horizontal Bounding Boxes", "Annotations/Oriented Bounding Boxes", "Annotations")


class HrrsdReader(VocReader):
    """HRRSD: ``DIR/[OPT2017/]JPEGImages/<id>.jpg`` + ``DIR/[OPT2017/]Annotations/<id>.xml``."""

    name = "hrrsd"
    license = "HRRSD: academic research use only (https://github.com/CrazyStoneonRoad/TGRS-HRRSD-Dataset)"
    citation = "Zhang et al., Hierarchical and Robust Convolutional Neural Network for Very High-Resolution Remote Sensing Object Detection, TGRS 2019"
    layout = "DIR/[OPT2017/]JPEGImages/<id>.jpg + DIR/[OPT2017/]Annotations/<id>.xml"
    image_dirs = ("JPEGImages", "OPT2017/JPEGImages")
    annotation_dirs = ("Annotations", "OPT2017/Annotations")


class RsodReader(VocReader):
    """RSOD: ``DIR/<class>/JPEGImages/<id>.jpg`` + ``DIR/<class>/Annotation/xml/<id>.xml`` for the classes
    aircraft, oiltank, overpass, playground."""

    name = "rsod"
    license = "RSOD: academic research use only (https://github.com/RSIA-LIESMARS-WHU/RSOD-Dataset-)"
    citation = "Long et al., Accurate Object Localization in Remote Sensing Images Based on CNN, TGRS 2017"
    layout = "DIR/<class>/JPEGImages/<id>.jpg + DIR/<class>/Annotation/xml/<id>.xml"
    image_dirs = ("*/JPEGImages",)
    annotation_dirs = ("*/Annotation/xml",)


class GenericVocReader(VocReader):
    """Any folder of VOC XMLs (e.g. the NEON tree crowns): each ``*.xml`` under DIR names its image in
    ``<filename>``, looked up beside the XML or in a sibling ``JPEGImages/`` folder."""

    name = "voc"
    license = "as the annotated images' own licence"
    layout = "DIR/**/<name>.xml with <filename> beside it or in ../JPEGImages/"

    def scan(self) -> Iterator[Item | Skipped]:
        xml_paths = sorted(self.root.rglob("*.xml"))
        if not xml_paths:
            raise FileNotFoundError(f"voc: no XML file under {self.root} (expected {self.layout})")
        for path in xml_paths:
            try:
                xml = XmlFile(path)
                filename = xml.text(xml.root, "filename")
            except ValueError as error:
                yield self.skip(path, str(error))
                continue
            candidates = [found for folder in (path.parent, path.parent.parent / "JPEGImages")
                          if (found := path_inside(folder, filename)) is not None]
            if not candidates:
                yield self.skip(path, f"<filename> {filename!r} leaves the annotation's folder: file skipped",
                                xml.line(xml.root.find("filename")))
                continue
            image = next((candidate for candidate in candidates if candidate.is_file()), None)
            if image is None:
                yield self.skip(path, f"annotation file without an image: <filename> {filename!r} not found at "
                                      f"{', '.join(str(candidate) for candidate in candidates)}")
                continue
            yield Item(image_path=image, annotation_path=path, provenance={"annotation": path.name})
