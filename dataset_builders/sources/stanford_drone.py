"""Stanford Drone Dataset (campus UAV videos): sampled video frames with their boxes."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from dataset_builders.records import Skipped
from dataset_builders.sources.base import (
    Item,
    Loaded,
    SourceReader,
    parse_floats,
    read_annotation_text,
    sized_collector,
)

DEFAULT_FRAMES_DIR = Path(tempfile.gettempdir()) / "rclip_hf_stanford_drone_frames"


def extract_frame(video: Path, frame: int, target: Path) -> None:
    """Write frame number ``frame`` of a video as a JPEG at ``target`` (kept when already extracted)."""
    import cv2

    if target.is_file():
        return
    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok:
        raise ValueError(f"{video}: cannot decode frame {frame}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.jpg")
    if not cv2.imwrite(str(partial), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise ValueError(f"{target}: cannot write the extracted frame")
    partial.replace(target)


class StanfordDroneReader(SourceReader):
    """Stanford Drone: ``DIR/annotations/<scene>/video<N>/annotations.txt`` (lines ``track xmin ymin xmax ymax
    frame lost occluded generated "label"``) + ``DIR/videos/<scene>/video<N>/video.mov``. Every
    ``frame_stride``-th frame (default 300, 10 s at 30 fps) with a visible box is extracted once with OpenCV to
    ``frames_dir`` (default: a folder in the system temp dir) as ``<scene>/<video>/<frame>.jpg``; boxes flagged
    ``lost`` (out of view) are not used and counted in a note."""

    name = "stanford_drone"
    license = "Stanford Drone Dataset: CC BY-NC-SA 3.0 (https://cvgl.stanford.edu/projects/uav_data/)"
    citation = "Robicquet et al., Learning Social Etiquette: Human Trajectory Prediction in Crowded Scenes, ECCV 2016"
    layout = "DIR/annotations/<scene>/video<N>/annotations.txt + DIR/videos/<scene>/video<N>/video.mov"

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("frame_stride", "frames_dir")

    def roots(self) -> tuple[Path, ...]:
        return (*super().roots(), self.frames_dir())

    def frames_dir(self) -> Path:
        """Where the sampled frames are extracted (``frames_dir`` option)."""
        return Path(self.options.get("frames_dir", DEFAULT_FRAMES_DIR))

    def scan(self) -> Iterator[Item | Skipped]:
        tables = sorted((self.root / "annotations").glob("*/*/annotations.txt"))
        if not tables:
            raise FileNotFoundError(f"stanford_drone: no annotations/<scene>/<video>/annotations.txt under {self.root}")
        stride = int(self.options.get("frame_stride", 300))
        frames_dir = self.frames_dir()
        for table in tables:
            scene, video_name = table.parent.parent.name, table.parent.name
            video = self.root / "videos" / scene / video_name / "video.mov"
            if not video.is_file():
                yield self.skip(table, f"annotation file without a video: {video} not found")
                continue
            frames: dict[int, list[tuple[int, list[str]]]] = {}
            text, decoding = read_annotation_text(table)
            if decoding is not None:
                yield self.skip(table, decoding)
            for number, raw in enumerate(text.splitlines(), start=1):
                fields = raw.split()
                if not fields:
                    continue
                if len(fields) != 10 or not fields[5].isdigit():
                    yield self.skip(table, f"malformed line dropped: expected 'track xmin ymin xmax ymax frame lost "
                                           f"occluded generated label', got {raw!r}", number)
                    continue
                if int(fields[5]) % stride == 0:
                    frames.setdefault(int(fields[5]), []).append((number, fields))
            for frame, rows in sorted(frames.items()):
                yield Item(image_path=frames_dir / scene / video_name / f"{frame:06d}.jpg", annotation_path=table,
                           payload=(video, frame, rows),
                           provenance={"annotation": f"{scene}/{video_name}/annotations.txt", "frame": str(frame)})

    def load(self, item: Item) -> Loaded:
        video, frame, rows = item.payload
        try:
            extract_frame(video, frame, item.image_path)
        except ValueError as error:
            return Loaded(skipped=self.skip(video, str(error)))
        collector = sized_collector(self, item)
        if isinstance(collector, Loaded):
            return collector
        lost = 0
        for number, fields in rows:
            if fields[6] == "1":
                lost += 1
                continue
            label = fields[9].strip('"')
            try:
                coords = parse_floats(fields[1:5], item.annotation_path, number)
            except ValueError as error:
                collector.note(f"malformed line dropped: {error}", number)
                continue
            collector.add(label, *coords, number)
        if lost:
            collector.note(f"frame {frame}: {lost} box(es) flagged lost (out of view) not used", None)
        return collector.loaded(item)
