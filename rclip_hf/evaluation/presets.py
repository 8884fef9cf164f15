"""Prompt templates and clean class names for the zero-shot benchmarks of the RemoteCLIP paper (+ local ones).

Benchmark datasets label images with a ``ClassLabel`` whose names are the source's folder names
(``"DenseResidential"``, ``"aGrass"``, ``"storagetanks"``); prompts need readable names. ``FOLDER_NAMES``
lists each source's folders in ``sorted()`` order (the ClassLabel order the benchmark builders use),
``class_names_for`` maps whatever names a dataset actually carries, so a different order or an extra
folder still gets a sensible prompt (unknown folders are cleaned generically, with a warning).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Literal

logger = logging.getLogger(__name__)

PAPER_TEMPLATE = "a satellite photo of {}."
"""The single template of the paper's zero-shot table (Table III)."""

REMOTE_SENSING_TEMPLATES: tuple[str, ...] = (
    "a satellite photo of {}.",
    "a satellite image of {}.",
    "an aerial photo of {}.",
    "an aerial image of {}.",
    "a remote sensing image of {}.",
    "an overhead view of {}.",
    "a top-down view of {}.",
    "a high-resolution satellite image of {}.",
    "a bird's eye view of {}.",
    "a low-resolution satellite photo of {}.",
)
"""A remote-sensing template set for prompt ensembling (``--templates ensemble``)."""

TemplateSet = Literal["paper", "ensemble"]

FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "eurosat": ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                "PermanentCrop", "Residential", "River", "SeaLake"),
    "ucmerced": ("agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
                 "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
                 "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
                 "sparseresidential", "storagetanks", "tenniscourt"),
    "aid": ("Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church", "Commercial",
            "DenseResidential", "Desert", "Farmland", "Forest", "Industrial", "Meadow", "MediumResidential",
            "Mountain", "Park", "Parking", "Playground", "Pond", "Port", "RailwayStation", "Resort", "River",
            "School", "SparseResidential", "Square", "Stadium", "StorageTanks", "Viaduct"),
    "resisc45": ("airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral",
                 "church", "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert",
                 "forest", "freeway", "golf_course", "ground_track_field", "harbor", "industrial_area",
                 "intersection", "island", "lake", "meadow", "medium_residential", "mobile_home_park",
                 "mountain", "overpass", "palace", "parking_lot", "railway", "railway_station",
                 "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship", "snowberg",
                 "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
                 "thermal_power_station", "wetland"),
    "rsi_cb128": ("airplane", "airport_runway", "artificial_grassland", "avenue", "bare_land", "bridge",
                  "city_avenue", "city_building", "city_green_tree", "city_road", "coastline", "container",
                  "crossroads", "dam", "desert", "dry_farm", "forest", "fork_road", "green_farmland",
                  "highway", "hirst", "lakeshore", "mangrove", "marina", "mountain", "mountain_road",
                  "natural_grassland", "overpass", "parkinglot", "pipeline", "rail", "residents", "river",
                  "river_protection_forest", "sandbeach", "sapling", "sea", "shrubwood", "snow_mountain",
                  "sparse_forest", "storage_room", "stream", "tower", "town", "turning_circle"),
    "rsi_cb256": ("airplane", "airport_runway", "artificial_grassland", "avenue", "bare_land", "bridge",
                  "city_building", "coastline", "container", "crossroads", "dam", "desert", "dry_farm",
                  "forest", "green_farmland", "highway", "hirst", "lakeshore", "mangrove", "marina",
                  "mountain", "parkinglot", "pipeline", "residents", "river", "river_protection_forest",
                  "sandbeach", "sapling", "sea", "shrubwood", "snow_mountain", "sparse_forest",
                  "storage_room", "stream", "town"),
    "whu_earth": ("agriculture", "commercial", "harbor", "idle_land", "industrial", "meadow", "overpass",
                  "park", "pond", "residential", "river", "water"),
    "mlrsnet": ("airplane", "airport", "bareland", "baseball_diamond", "basketball_court", "beach", "bridge",
                "chaparral", "cloud", "commercial_area", "dense_residential_area", "desert", "eroded_farmland",
                "farmland", "forest", "freeway", "golf_course", "ground_track_field", "harbor&port",
                "industrial_area", "intersection", "island", "lake", "meadow", "mobile_home_park", "mountain",
                "overpass", "park", "parking_lot", "parkway", "railway", "railway_station", "river",
                "roundabout", "shipping_yard", "snowberg", "sparse_residential_area", "stadium",
                "storage_tank", "swimmimg_pool", "tennis_court", "terrace", "transmission_tower",
                "vegetable_greenhouse", "wetland", "wind_turbine"),
    "patternnet": ("airplane", "baseball_field", "basketball_court", "beach", "bridge", "cemetery", "chaparral",
                   "christmas_tree_farm", "closed_road", "coastal_mansion", "crosswalk", "dense_residential",
                   "ferry_terminal", "football_field", "forest", "freeway", "golf_course", "harbor",
                   "intersection", "mobile_home_park", "nursing_home", "oil_gas_field", "oil_well", "overpass",
                   "parking_lot", "parking_space", "railway", "river", "runway", "runway_marking",
                   "shipping_yard", "solar_panel", "sparse_residential", "storage_tank", "swimming_pool",
                   "tennis_court", "transformer_station", "wastewater_treatment_plant"),
    "rs2800": ("aGrass", "bField", "cIndustry", "dRiverLake", "eForest", "fResident", "gParking"),
    "optimal31": ("airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral",
                  "church", "circular_farmland", "commercial_area", "dense_residential", "desert", "forest",
                  "freeway", "golf_course", "ground_track_field", "harbor", "industrial_area", "intersection",
                  "island", "lake", "meadow", "medium_residential", "mobile_home_park", "mountain", "overpass",
                  "parking_lot", "railway", "rectangular_farmland", "roundabout", "runway"),
    "rsc11": ("dense_forest", "grassland", "harbor", "high_buildings", "low_buildings", "overpass", "railway",
              "residential_area", "roads", "sparse_forest", "storage_tanks"),
    "whu_rs19": ("Airport", "Beach", "Bridge", "Commercial", "Desert", "Farmland", "Forest", "Industrial",
                 "Meadow", "Mountain", "Park", "Parking", "Pond", "Port", "Residential", "River", "Viaduct",
                 "footballField", "railwayStation"),
}
FOLDER_NAMES["rsscn7"] = FOLDER_NAMES["rs2800"]  # RS2800 is RSSCN7 (7 classes x 400 images)
FOLDER_NAMES["aid150"] = FOLDER_NAMES["aid"]  # the local downscaled AID sample

# Folder names whose generic cleaning (split camelCase / underscores, lower case) reads badly.
_OVERRIDES: dict[str, str] = {
    "AnnualCrop": "annual crop land", "HerbaceousVegetation": "herbaceous vegetation land",
    "PermanentCrop": "permanent crop land", "Industrial": "industrial buildings", "Pasture": "pasture land",
    "Residential": "residential buildings", "SeaLake": "sea or lake", "Highway": "highway or road",
    "baseballdiamond": "baseball diamond", "denseresidential": "dense residential area",
    "golfcourse": "golf course", "mediumresidential": "medium residential area",
    "mobilehomepark": "mobile home park", "parkinglot": "parking lot", "sparseresidential": "sparse residential area",
    "storagetanks": "storage tanks", "tenniscourt": "tennis court", "BareLand": "bare land",
    "Center": "city center", "Parking": "parking lot", "hirst": "hillside", "residents": "residential area",
    "sandbeach": "sand beach", "harbor&port": "harbor and port", "swimmimg_pool": "swimming pool",
    "idle_land": "idle land", "water": "water area", "footballField": "football field",
    "railwayStation": "railway station", "aGrass": "grass land", "bField": "farm field",
    "cIndustry": "industrial area", "dRiverLake": "river or lake", "eForest": "forest",
    "fResident": "residential area", "gParking": "parking lot",
}


def clean_class_name(folder_name: str) -> str:
    """A readable class name from a folder name: known overrides, else split camelCase/underscores, lower case."""
    if folder_name in _OVERRIDES:
        return _OVERRIDES[folder_name]
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", folder_name)
    return re.sub(r"[\s_\-]+", " ", spaced).strip().lower()


BENCHMARK_PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (tuple(clean_class_name(folder) for folder in folders), (PAPER_TEMPLATE,))
    for name, folders in FOLDER_NAMES.items()
}
"""``BENCHMARK_PRESETS[name] -> (clean class names in ClassLabel order, templates)`` with the paper's template."""


def templates_for(template_set: TemplateSet) -> tuple[str, ...]:
    """The paper's single template (``"paper"``) or the remote-sensing set (``"ensemble"``)."""
    if template_set == "paper":
        return (PAPER_TEMPLATE,)
    if template_set == "ensemble":
        return REMOTE_SENSING_TEMPLATES
    raise ValueError(f"templates: {template_set!r} is not a template set; expected 'paper' or 'ensemble'")


def class_names_for(benchmark: str, label_names: Sequence[str]) -> list[str]:
    """Clean prompt names for a dataset's ClassLabel names, in the same order.

    Folders not in ``FOLDER_NAMES[benchmark]`` (or any folder of an unknown benchmark) are cleaned generically
    and reported with a warning, never dropped.
    """
    known = set(FOLDER_NAMES.get(benchmark, ()))
    unknown = [name for name in label_names if name not in known]
    if unknown:
        logger.warning(
            "presets: %d class folder(s) of %r have no preset, cleaned generically: %s",
            len(unknown), benchmark, ", ".join(f"{name!r}->{clean_class_name(name)!r}" for name in unknown),
        )
    return [clean_class_name(name) for name in label_names]
