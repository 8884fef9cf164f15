"""Writes the tiny hand-made samples of the source formats in tests/data/<format>/ (seeded, 64x64 images).

Run from the repository root: ``.venv/bin/python tests/data/make_source_samples.py``. The annotation files
are written literally below, in each source's own release format; images are seeded noise so re-running
gives the same bytes. Formats with a real sample in ../shared/data (DOTA, iSAID, DIOR, NEON csv/VOC) are
tested on it instead; this adds the others, a caption JSON, and the bad inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import rasterio
from PIL import Image

ROOT = Path(__file__).resolve().parent
SIZE = 64


def noise(seed: int, channels: int = 3) -> np.ndarray:
    """Seeded (64, 64, channels) uint8 noise with a smooth gradient, distinct per seed (distinct p-Hashes)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(8, 8, channels), dtype=np.uint8)
    return cv2.resize(base, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC).reshape(SIZE, SIZE, channels)


def save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze()).save(path, **kwargs)


def text(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def captions() -> None:
    folder = ROOT / "captions"
    for seed, name in enumerate(["airport_1.png", "beach_2.png", "farm_3.png", "river_4.png"], start=100):
        save(folder / "images" / name, noise(seed))
    data = {"dataset": "rsitmd", "images": [
        {"filename": "airport_1.png", "imgid": 0, "split": "train", "sentences": [
            {"raw": "Many planes are parked at the airport.", "tokens": []},
            {"raw": "An airport with several planes.", "tokens": []},
            {"raw": "Planes parked next to a terminal.", "tokens": []},
            {"raw": "A large airport with runways.", "tokens": []},
            {"raw": "Some planes near a building.", "tokens": []},
            {"raw": "A sixth caption that is not used.", "tokens": []}]},
        {"filename": "beach_2.png", "imgid": 1, "split": "val", "sentences": [
            {"raw": "A beach next to the sea.", "tokens": []}, {"raw": "  ", "tokens": []},
            {"raw": "Yellow sand and blue water.", "tokens": []}]},
        {"filename": "farm_3.png", "imgid": 2, "split": "test", "sentences": [
            {"raw": "Green farmland in rectangles.", "tokens": []}, {"raw": "Fields of crops.", "tokens": []}]},
        {"filename": "river_4.png", "imgid": 3, "split": "train", "sentences": [{"raw": "", "tokens": []}]},
        {"filename": "missing_5.png", "imgid": 4, "split": "train", "sentences": [{"raw": "Gone.", "tokens": []}]},
    ]}
    text(folder / "dataset_rsitmd.json", json.dumps(data, indent=1))


def hrsc() -> None:
    folder = ROOT / "hrsc" / "FullDataSet"
    save(folder / "AllImages" / "100000001.bmp", noise(1))
    objects = "".join(f"""
    <HRSC_Object>
      <Object_ID>10000000{i}</Object_ID>
      <Class_ID>100000013</Class_ID>
      <difficult>0</difficult>
      <box_xmin>{x0}</box_xmin>
      <box_ymin>{y0}</box_ymin>
      <box_xmax>{x1}</box_xmax>
      <box_ymax>{y1}</box_ymax>
      <mbox_cx>0</mbox_cx>
    </HRSC_Object>""" for i, (x0, y0, x1, y1) in enumerate([(4, 6, 20, 30), (40, 10, 70, 20)]))
    for name in ("100000001", "100000002"):
        text(folder / "Annotations" / f"{name}.xml", f"""<HRSC_Image>
  <Img_ID>{name}</Img_ID>
  <Img_FileName>{name}</Img_FileName>
  <Img_FileFmt>bmp</Img_FileFmt>
  <Img_SizeWidth>64</Img_SizeWidth>
  <Img_SizeHeight>64</Img_SizeHeight>
  <HRSC_Objects>{objects}
  </HRSC_Objects>
</HRSC_Image>
""")


def levir() -> None:
    folder = ROOT / "levir" / "imageWithLabel"
    save(folder / "10.jpg", noise(2), quality=95)
    text(folder / "10.txt", "1 10 12 30 28\n3 40 40 60 62\n")
    save(folder / "11.jpg", noise(3), quality=95)
    text(folder / "11.txt", "2 5 5 25 25\n7 1 1 9 9\n2 5 5\n")


def visdrone() -> None:
    folder = ROOT / "visdrone"
    save(folder / "images" / "0000001_00001_d_0000001.jpg", noise(4), quality=95)
    text(folder / "annotations" / "0000001_00001_d_0000001.txt",
         "5,6,20,15,1,4,0,0\n30,30,10,10,0,0,0,0\n40,40,20,30,1,1,0,1,\n")


def au_air() -> None:
    folder = ROOT / "au_air"
    for seed, name in enumerate(["frame_0001.jpg", "frame_0002.jpg", "frame_0003.jpg"], start=5):
        save(folder / "images" / name, noise(seed), quality=95)
    data = {"info": {"description": "AUAIR 2019 Dataset"}, "categories":
            ["Human", "Car", "Truck", "Van", "Motorbike", "Bicycle", "Bus", "Trailer"], "annotations": [
                {"image_name": "frame_0001.jpg", "image_width:": 64, "image_height": 64,
                 "bbox": [{"top": 10, "left": 12, "height": 10, "width": 20, "class": 1},
                          {"top": 40, "left": 40, "height": 8, "width": 8, "class": 0}]},
                {"image_name": "frame_0002.jpg", "image_width:": 64, "image_height": 64,
                 "bbox": [{"top": 5, "left": 5, "height": 10, "width": 10, "class": 99},
                          {"top": 20, "left": 20, "height": 0, "width": 10, "class": 2}]},
                {"image_name": "frame_9999.jpg", "image_width:": 64, "image_height": 64, "bbox": []}]}
    text(folder / "annotations.json", json.dumps(data))


def carpk() -> None:
    folder = ROOT / "carpk" / "data"
    save(folder / "Images" / "20160331_NTU_00001.png", noise(8))
    text(folder / "Annotations" / "20160331_NTU_00001.txt", "1 1 20 20 1\n30 30 30 50 1\n50 50 80 90 1\n")


def stanford_drone() -> None:
    folder = ROOT / "stanford_drone"
    video = folder / "videos" / "little" / "video0" / "video.mov"
    video.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (SIZE, 48))
    for frame in range(6):
        writer.write(np.ascontiguousarray(noise(20 + frame)[:48]))
    writer.release()
    text(folder / "annotations" / "little" / "video0" / "annotations.txt",
         '0 10 10 20 30 0 0 0 0 "Pedestrian"\n'
         '1 30 5 50 20 0 0 0 0 "Biker"\n'
         '0 11 11 21 31 1 0 0 0 "Pedestrian"\n'
         '1 31 6 51 21 1 1 0 0 "Biker"\n'
         '0 12 12 22 32 2 0 0 1 "Pedestrian"\n'
         '0 12 12 22 32 4 0 1 0 "Pedestrian"\n'
         'broken line\n')


def loveda() -> None:
    folder = ROOT / "loveda" / "Train"
    mask = np.ones((SIZE, SIZE), dtype=np.uint8)  # 1 = background
    mask[4:20, 6:30] = 2  # building: x 6..29, y 4..19
    mask[40:60, 40:50] = 4  # water: x 40..49, y 40..59
    mask[0:2, 62:64] = 0  # no-data corner
    save(folder / "Urban" / "images_png" / "1366.png", noise(9))
    save(folder / "Urban" / "masks_png" / "1366.png", mask)
    save(folder / "Rural" / "images_png" / "0.png", noise(10))
    save(folder / "Rural" / "masks_png" / "0.png", np.ones((SIZE, SIZE), dtype=np.uint8))


def isprs() -> None:
    mask = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)  # impervious surfaces (white)
    mask[5:25, 5:25] = (0, 0, 255)  # building
    mask[40:44, 50:58] = (255, 255, 0)  # car
    mask[60:64, 0:4] = (10, 20, 30)  # a colour outside the palette
    for folder, image_name, label_name, seed in (
            (ROOT / "potsdam", "2_Ortho_RGB/top_potsdam_2_10_RGB.tif", "5_Labels_all/top_potsdam_2_10_label.tif", 11),
            (ROOT / "vaihingen", "top/top_mosaic_09cm_area1.tif", "gts_for_participants/top_mosaic_09cm_area1.tif", 12)):
        save(folder / image_name, noise(seed))
        save(folder / label_name, mask)


def voc() -> None:
    def xml(filename: str, objects: str) -> str:
        return (f"<annotation>\n  <filename>{filename}</filename>\n  <size>\n    <width>64</width>\n"
                f"    <height>64</height>\n    <depth>3</depth>\n  </size>{objects}\n</annotation>\n")

    def obj(name: str, box: tuple[int, int, int, int]) -> str:
        return (f"\n  <object>\n    <name>{name}</name>\n    <difficult>0</difficult>\n    <bndbox>\n"
                f"      <xmin>{box[0]}</xmin>\n      <ymin>{box[1]}</ymin>\n      <xmax>{box[2]}</xmax>\n"
                f"      <ymax>{box[3]}</ymax>\n    </bndbox>\n  </object>")

    save(ROOT / "hrrsd" / "OPT2017" / "JPEGImages" / "00001.jpg", noise(13), quality=95)
    text(ROOT / "hrrsd" / "OPT2017" / "Annotations" / "00001.xml",
         xml("00001.jpg", obj("bridge", (2, 3, 40, 20)) + obj("crossroad", (10, 30, 30, 60))))
    save(ROOT / "rsod" / "aircraft" / "JPEGImages" / "aircraft_1.jpg", noise(14), quality=95)
    text(ROOT / "rsod" / "aircraft" / "Annotation" / "xml" / "aircraft_1.xml",
         xml("aircraft_1.jpg", obj("aircraft", (5, 5, 15, 15)) + obj("aircraft", (20, 20, 20, 30))
             + "\n  <object>\n    <name>aircraft</name>\n  </object>"))
    save(ROOT / "rsod" / "oiltank" / "JPEGImages" / "oiltank_1.jpg", noise(15), quality=95)
    text(ROOT / "rsod" / "oiltank" / "Annotation" / "xml" / "oiltank_1.xml", "<annotation><object><name>oiltank")


def bad_images() -> None:
    folder = ROOT / "bad_images"
    save(folder / "rgba.png", np.dstack([noise(30), np.full((SIZE, SIZE, 1), 128, np.uint8)]))
    save(folder / "gray.png", noise(31, channels=1))
    gray16 = (noise(32, channels=1).astype(np.uint16) * 16 + 100).squeeze()  # values 100..4180
    Image.fromarray(gray16).save(folder / "gray16.png")
    bands = np.stack([noise(33 + band, channels=1).squeeze().astype(np.uint16) * 8 for band in range(5)])
    with rasterio.open(folder / "multiband.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=5,
                       dtype="uint16") as dataset:
        dataset.write(bands)
    good = folder / "good.png"
    save(good, noise(38))
    (folder / "truncated.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (folder / "corrupt.jpg").write_bytes(np.random.default_rng(39).integers(0, 256, 500, dtype=np.uint8).tobytes())


if __name__ == "__main__":
    for writer in (captions, hrsc, levir, visdrone, au_air, carpk, stanford_drone, loveda, isprs, voc, bad_images):
        writer()
