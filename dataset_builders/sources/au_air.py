"""AU-AIR (UAV traffic frames) in its release JSON (``annotations.json``)."""

from __future__ import annotations

from collections.abc import Iterator

from dataset_builders.records import Skipped
from dataset_builders.sources.base import (
    Item,
    Loaded,
    SourceReader,
    files_matching,
    read_json_file,
    sized_collector,
)

DEFAULT_CATEGORIES = ("Human", "Car", "Truck", "Van", "Motorbike", "Bicycle", "Bus", "Trailer")


class AuAirReader(SourceReader):
    """AU-AIR: ``DIR/annotations.json`` (``annotations[].image_name``, ``bbox[]`` of ``top, left, height, width,
    class``, ``categories``) + ``DIR/images/<image_name>``. Problems are located as ``annotations[i].bbox[j]``
    (JSON has no useful line numbers: the release file is one line)."""

    name = "au_air"
    license = "AU-AIR: CC BY 4.0 (https://bozcani.github.io/auairdataset)"
    citation = "Bozcan and Kayacan, AU-AIR: A Multi-modal Unmanned Aerial Vehicle Dataset for Low Altitude Traffic Surveillance, ICRA 2020"
    layout = "DIR/annotations.json + DIR/images/<image_name>"

    def scan(self) -> Iterator[Item | Skipped]:
        json_path = self.root / "annotations.json"
        if not json_path.is_file():
            raise FileNotFoundError(f"au_air: {json_path} not found (expected {self.layout})")
        data, note = read_json_file(json_path)
        if note is not None:
            yield self.skip(json_path, note)
        categories = data.get("categories") or list(DEFAULT_CATEGORIES)
        listed = set()
        for index, entry in enumerate(data.get("annotations", [])):
            name = entry.get("image_name") if isinstance(entry, dict) else None
            where = f"{json_path}#annotations[{index}]"
            if not isinstance(name, str):
                yield self.skip(where, "entry has no 'image_name'")
                continue
            listed.add(name)
            image = self.inside(self.root / "images", name, where)
            if isinstance(image, Skipped):
                yield image
            elif not image.is_file():
                yield self.skip(where, f"annotation without an image: {image} not found")
            else:
                yield Item(image_path=image, annotation_path=json_path,
                           payload=(index, entry.get("bbox", []), categories),
                           provenance={"annotation": json_path.name, "entry": str(index)})
        for image in files_matching(self.root / "images", "*"):
            if image.name not in listed:
                yield self.skip(image, "image without an annotation entry in annotations.json")

    def load(self, item: Item) -> Loaded:
        collector = sized_collector(self, item)
        if isinstance(collector, Loaded):
            return collector
        index, boxes, categories = item.payload
        for number, box in enumerate(boxes):
            where = f"annotations[{index}].bbox[{number}]"
            try:
                left, top = float(box["left"]), float(box["top"])
                width, height = float(box["width"]), float(box["height"])
                label = categories[int(box["class"])]
            except (KeyError, TypeError, ValueError, IndexError) as error:
                collector.note(f"malformed box dropped ({type(error).__name__}: {error}; classes "
                               f"0..{len(categories) - 1})", None, where)
                continue
            collector.add(label, left, top, left + width, top + height, None, where)
        return collector.loaded(item)
