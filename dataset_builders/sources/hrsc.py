"""HRSC2016 ship detection in its release XML (``HRSC_Image`` / ``HRSC_Objects``)."""

from __future__ import annotations

from collections.abc import Iterator

from dataset_builders.records import Skipped
from dataset_builders.sources.base import BoxCollector, Item, files_matching, images_in, pair_by_stem
from dataset_builders.sources.xmlfile import XmlFile, XmlReader

SPLIT_DIRS = ("FullDataSet", "Train", "Test", ".")


class HrscReader(XmlReader):
    """HRSC2016: ``DIR/{FullDataSet,Train,Test}/AllImages/<id>.bmp`` + ``.../Annotations/<id>.xml`` (or the two
    folders directly under DIR); each ``HRSC_Object``'s horizontal ``box_xmin..box_ymax`` becomes a "ship" box
    (its ``Class_ID`` is kept in the provenance)."""

    name = "hrsc"
    license = "HRSC2016: academic research use only"
    citation = "Liu et al., A High Resolution Optical Satellite Image Dataset for Ship Recognition and Some New Baselines, ICPRAM 2017"
    layout = "DIR/[FullDataSet|Train|Test/]AllImages/<id>.bmp + DIR/[...]/Annotations/<id>.xml"

    def scan(self) -> Iterator[Item | Skipped]:
        folders = [self.root / name for name in SPLIT_DIRS if (self.root / name / "Annotations").is_dir()
                   or (self.root / name / "AllImages").is_dir()]
        if not folders:
            raise FileNotFoundError(f"hrsc: no Annotations/ or AllImages/ under {self.root} (expected {self.layout})")
        for folder in folders:
            annotations = {path.stem: path for path in files_matching(folder / "Annotations", "*.xml")}
            yield from pair_by_stem(self, images_in(folder / "AllImages"), annotations,
                                    {"split": folder.name if folder != self.root else ""})

    def add_objects(self, xml: XmlFile, collector: BoxCollector, item: Item) -> None:
        class_ids = []
        for obj in xml.root.iter("HRSC_Object"):
            try:
                coords = [xml.number(obj, tag) for tag in ("box_xmin", "box_ymin", "box_xmax", "box_ymax")]
            except ValueError as error:
                collector.note(f"malformed object dropped: {error}", xml.line(obj))
                continue
            class_id = obj.find("Class_ID")
            class_ids.append((class_id.text or "").strip() if class_id is not None else "")
            collector.add("ship", *coords, xml.line(obj))
        item.provenance["class_ids"] = ",".join(class_ids)
