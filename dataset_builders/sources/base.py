"""What every source reader shares: the reader interface, work items, box checks and image/label pairing."""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from dataset_builders.records import Box, Record, Skipped
from dataset_builders.sources.images import decoded_whole
from rclip_hf.images import IMAGE_SUFFIXES, ImageReadError, image_size, printable_path

#: Class names that may enter captions: a letter or digit, then up to 63 letters, digits, spaces or ``_ - . , ' ( ) & +``
SAFE_CLASS_NAME = re.compile(r"[^\W_][\w .,'()&+-]{0,63}")
#: Annotation text is UTF-8 (a BOM is dropped); a file that is not is decoded with this, and the fallback recorded
FALLBACK_ENCODING = "latin-1"


def path_inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` when it stays inside ``folder`` once resolved (no ``..``, absolute path or symlink out),
    else None: a name read from an annotation or caption file never reaches files outside its dataset."""
    if not name or Path(name).is_absolute():
        return None
    candidate = folder / name
    return candidate if resolves_inside(folder, candidate) else None


def resolves_inside(folder: Path, path: Path) -> bool:
    """Whether ``path`` stays inside ``folder`` once symlinks and ``..`` are resolved (False for a symlink loop)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _resolved(path: Path) -> Path | None:
    """``path`` with symlinks and ``..`` resolved; None for a symlink loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def _link_target(path: Path) -> str:
    """Where a path that leaves its folder leads (its resolved target), for messages."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return "a symlink loop"


def read_annotation_text(path: Path) -> tuple[str, str | None]:
    """(text, note): UTF-8 (BOM dropped), else decoded as ``FALLBACK_ENCODING`` with a note saying so."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        return data.decode(FALLBACK_ENCODING), (f"not UTF-8 (byte {error.start}: {data[error.start]:#04x}), "
                                                f"decoded as {FALLBACK_ENCODING}")


def read_json_file(path: Path) -> tuple[Any, str | None]:
    """(parsed JSON, decoding note) of an annotation file; ValueError naming the file, line and column if malformed."""
    text, note = read_annotation_text(path)
    try:
        return json.loads(text), note
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON: {error.msg} (column {error.colno})") from None


@dataclass
class Item:
    """One image found by a reader's scan, with what its ``load`` needs (picklable, sent to workers)."""

    image_path: Path
    annotation_path: Path | None = None
    payload: Any = None  # annotations already parsed during the scan (single-file formats)
    provenance: dict[str, str] = field(default_factory=dict)
    size: tuple[int, int] | None = None  # (width, height) when the caller already decoded the image
    window: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1): the item is this crop of the image file

    def image_size(self) -> tuple[int, int]:
        """(width, height): the known size, the window's, else read from the image header."""
        if self.size is not None:
            return self.size
        if self.window is not None:
            x0, y0, x1, y1 = self.window
            return x1 - x0, y1 - y0
        return image_size(self.image_path)


@dataclass
class Loaded:
    """Result of loading one item: a record, or the reason the image was skipped; plus annotation notes."""

    record: Record | None = None
    skipped: Skipped | None = None
    notes: list[Skipped] = field(default_factory=list)  # annotations clipped or dropped from this image


class SourceReader(ABC):
    """Reads one dataset in its own release layout: ``scan`` lists images cheaply, ``load`` parses one."""

    name: ClassVar[str]
    license: ClassVar[str] = "research use only (see the dataset's terms)"
    citation: ClassVar[str] = ""
    layout: ClassVar[str] = ""  # the accepted folder layout, for error messages and the dataset card

    def __init__(self, root: Path | str, **options: Any) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"{self.name}: source path {self.root} does not exist (expected {self.layout})")
        unknown = set(options) - set(self.option_names())
        if unknown:
            raise ValueError(
                f"{self.name}: unknown reader option(s) {sorted(unknown)}; allowed: {sorted(self.option_names())}"
            )
        self.options = options

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Names of the keyword options this reader accepts (set per source in the corpus YAML)."""
        return ()

    @abstractmethod
    def scan(self) -> Iterator[Item | Skipped]:
        """List the images of the source (and the files that cannot become one, as Skipped), sorted."""

    @abstractmethod
    def load(self, item: Item) -> Loaded:
        """Parse one image's annotations into a Record (runs in worker processes)."""

    def skip(self, path: Path | str, reason: str, line: int | None = None) -> Skipped:
        """A Skipped of this source."""
        return Skipped(path=str(path), reason=reason, line=line, source=self.name)

    def inside(self, folder: Path, name: str, where: Path | str, line: int | None = None) -> Path | Skipped:
        """``folder / name`` for a name read at ``where`` (file, line), or a Skipped when it leaves ``folder``."""
        path = path_inside(folder, name)
        if path is None:
            return self.skip(where, f"path {name!r} leaves the source folder {folder}: row skipped", line)
        return path

    def roots(self) -> tuple[Path, ...]:
        """The folders this source's files may come from: the source folder (a file's folder), and for readers that
        extract files themselves, the folder they extract to."""
        return (self.root if self.root.is_dir() else self.root.parent,)

    def checked_scan(self) -> Iterator[Item | Skipped]:
        """``scan``, with every item whose image or annotation file resolves outside the source (a symlink out of
        it), or whose file name is not UTF-8, turned into a Skipped saying so: nothing outside the dataset enters
        a corpus, and every name in the report can be written."""
        roots = [root.resolve() for root in self.roots()]
        for item in self.scan():
            if isinstance(item, Skipped):
                yield replace(item, path=printable_path(item.path))
            else:
                yield self._refusal(item, roots) or item

    def _refusal(self, item: Item, roots: list[Path]) -> Skipped | None:
        """Why ``checked_scan`` does not read ``item`` (its files must resolve inside one of ``roots``), or None."""
        for path in (item.image_path, item.annotation_path):
            if path is None:
                continue
            if printable_path(path) != str(path):
                return self.skip(printable_path(path), "the file name is not valid UTF-8 (it cannot be stored in "
                                 "the corpus): rename the file to read it")
            resolved = _resolved(path)
            if resolved is None or not any(resolved.is_relative_to(root) for root in roots):
                return self.skip(path, f"leaves the source folder {self.roots()[0]} (a symlink to "
                                       f"{_link_target(path)}): not read")
        return None

    def read(self) -> Iterator[Record | Skipped]:
        """Scan and load serially: every record, every skipped image and every annotation note."""
        try:
            for item in self.checked_scan():
                if isinstance(item, Skipped):
                    yield item
                    continue
                loaded = self.load(item)
                yield from loaded.notes
                yield loaded.skipped if loaded.record is None else loaded.record
        finally:
            decoded_whole.cache_clear()  # the last large tile (or mask) read in windows

    def new_record(self, item: Item, boxes: list[Box] | None = None, captions: list[str] | None = None,
                   size: tuple[int, int] | None = None) -> Record:
        """A Record for an item; the size is read from the image header when not given."""
        width, height = size if size is not None else item.image_size()
        return Record(image_path=item.image_path, width=width, height=height, source=self.name,
                      boxes=boxes or [], captions=captions or [], provenance=dict(item.provenance))


class BoxCollector:
    """Turns raw corner coordinates into checked, clipped Boxes, recording every clip and drop."""

    def __init__(self, reader: SourceReader, annotation: Path, width: int, height: int) -> None:
        self.reader, self.annotation, self.width, self.height = reader, annotation, width, height
        self.boxes: list[Box] = []
        self.notes: list[Skipped] = []

    def note(self, reason: str, line: int | None, where: str = "") -> None:
        """Record an annotation problem at a line (or ``where``, e.g. a JSON entry) of the annotation file."""
        self.notes.append(self.reader.skip(self.annotation, f"{where}: {reason}" if where else reason, line))

    def add(self, label: str, x_min: float, y_min: float, x_max: float, y_max: float, line: int | None,
            where: str = "") -> None:
        """Add a horizontal box: rejects non-finite, inverted and zero-area boxes; clips to the image."""
        coords = (x_min, y_min, x_max, y_max)
        if not (math.isfinite(x_min) and math.isfinite(y_min) and math.isfinite(x_max) and math.isfinite(y_max)):
            self.note(f"dropped box {label!r}: non-finite coordinate in {coords}", line, where)
            return
        if not label.strip():
            self.note(f"dropped box {coords}: empty class name", line, where)
            return
        if _is_number(label):
            self.note(f"dropped box {coords}: class name {label!r} is a number, not a name (a misplaced column?)",
                      line, where)
            return
        if not SAFE_CLASS_NAME.fullmatch(label):
            self.note(f"dropped box {coords}: class name {label!r} is not a plain name ({SAFE_CLASS_NAME.pattern})",
                      line, where)
            return
        if x_min > x_max or y_min > y_max:
            self.note(f"dropped box {label!r}: inverted corners {coords}", line, where)
            return
        if x_min == x_max or y_min == y_max:
            self.note(f"dropped box {label!r}: zero-area box {coords}", line, where)
            return
        clipped = (max(x_min, 0.0), max(y_min, 0.0), min(x_max, float(self.width)), min(y_max, float(self.height)))
        if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
            self.note(f"dropped box {label!r}: {coords} lies wholly outside the {self.width}x{self.height} image", line, where)
            return
        if clipped != coords:
            self.note(f"clipped box {label!r}: {coords} -> {clipped} to the {self.width}x{self.height} image", line, where)
        self.boxes.append(Box(label, float(clipped[0]), float(clipped[1]), float(clipped[2]), float(clipped[3])))

    def add_polygon(self, label: str, xs: Iterable[float], ys: Iterable[float], line: int | None) -> None:
        """Add the horizontal box enclosing a polygon (oriented box corners)."""
        xs, ys = list(xs), list(ys)
        if not all(math.isfinite(value) for value in (*xs, *ys)):  # min/max would pass a nan that is not first
            self.note(f"dropped box {label!r}: non-finite coordinate in {[*zip(xs, ys)]}", line)
            return
        self.add(label, min(xs), min(ys), max(xs), max(ys), line)

    def loaded(self, item: Item) -> Loaded:
        """The Loaded result for the item with the collected boxes (size as given to the collector)."""
        record = self.reader.new_record(item, boxes=self.boxes, size=(self.width, self.height))
        return Loaded(record=record, notes=self.notes)


def patch_windows(width: int, height: int, patch_size: int) -> list[tuple[int, int, int, int]]:
    """Crops ``(x0, y0, x1, y1)`` of a ``width`` x ``height`` image into ``patch_size`` squares, row by row, as
    mmsegmentation's ISPRS converters cut them: side by side from 0, the last of a row (column) moved back to
    end at the border; a side not longer than ``patch_size`` is one crop of the whole side."""
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1 pixel, got {patch_size}")

    def starts(length: int) -> list[int]:
        if length <= patch_size:
            return [0]
        found = list(range(0, length - patch_size + 1, patch_size))
        return found if found[-1] + patch_size == length else [*found, length - patch_size]

    return [(x, y, min(x + patch_size, width), min(y + patch_size, height))
            for y in starts(height) for x in starts(width)]


def sized_collector(reader: SourceReader, item: Item) -> BoxCollector | Loaded:
    """A BoxCollector for an item sized from its image header, or a Loaded skip when the header is unreadable."""
    try:
        width, height = item.image_size()
    except ImageReadError as error:
        return Loaded(skipped=reader.skip(item.image_path, str(error)))
    annotation = item.annotation_path if item.annotation_path is not None else item.image_path
    return BoxCollector(reader, annotation, width, height)


def parse_floats(tokens: Sequence[str], path: Path, line: int) -> list[float]:
    """Parse number tokens; raises ValueError naming the file, line and token when one is not a number."""
    try:
        return [float(token) for token in tokens]
    except ValueError:
        bad = next(token for token in tokens if not _is_number(token))
        raise ValueError(f"{path}:{line}: {bad!r} is not a number") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def files_matching(folder: Path, pattern: str) -> list[Path]:
    """``sorted(folder.glob(pattern))`` for a pattern of one path component, sorted by name: the same order
    for the files of one folder, without comparing Path objects (slow on folders of 100k files)."""
    return sorted(folder.glob(pattern), key=_name)


def _name(path: Path) -> str:
    return path.name


def images_in(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, exclude: tuple[str, ...] = ()) -> dict[str, Path]:
    """Images of a folder by stem (sorted), skipping names ending with any of ``exclude``."""
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.iterdir(), key=_name)
            if path.suffix.lower() in suffixes and not path.stem.endswith(exclude)}


def pair_by_stem(reader: SourceReader, images: Mapping[str, Path], labels: Mapping[str, Path],
                 provenance: Mapping[str, str] | None = None) -> Iterator[Item | Skipped]:
    """Items for stems with both an image and a label; Skipped for images without labels and vice versa."""
    for stem in sorted(set(images) | set(labels)):
        image, label = images.get(stem), labels.get(stem)
        if image is None:
            yield reader.skip(label, f"annotation file without an image (no image named {stem!r})")
        elif label is None:
            yield reader.skip(image, f"image without an annotation file (no label named {stem!r})")
        else:
            yield Item(image_path=image, annotation_path=label, provenance={**(provenance or {}), "annotation": label.name})
