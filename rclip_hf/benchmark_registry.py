"""The benchmarks rclip-hf knows, in one registry: name -> task, display name, place in the paper's tables, class
folders and citation. The evaluation runner, the benchmark builders, the zero-shot presets and the model cards all
read it.

`display_name` is the name in the paper's tables and in reports; `full_name` the dataset's own name, shown on its
Hub card (the same unless given). `class_folders` are a classification benchmark's class folder names in `sorted()` order, the `ClassLabel` order
`dataset_builders.build_benchmarks` writes; `paper_order` is the column (zero-shot, Table III) or row (retrieval,
Table II) of the benchmark in the RemoteCLIP paper, None when the paper has no number for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: BibTeX of the RemoteCLIP paper, as given in the authors' repository (github.com/ChenDelong1999/RemoteCLIP):
#: the one citation of the model cards, the `evaluate` metrics and RemoteCount.
REMOTECLIP_BIBTEX = """@article{remoteclip,
  author       = {Fan Liu and
                  Delong Chen and
                  Zhangqingyun Guan and
                  Xiaocong Zhou and
                  Jiale Zhu and
                  Qiaolin Ye and
                  Liyong Fu and
                  Jun Zhou},
  title        = {RemoteCLIP: {A} Vision Language Foundation Model for Remote Sensing},
  journal      = {{IEEE} Transactions on Geoscience and Remote Sensing},
  volume       = {62},
  pages        = {1--16},
  year         = {2024},
  url          = {https://doi.org/10.1109/TGRS.2024.3390838},
  doi          = {10.1109/TGRS.2024.3390838},
}"""

#: The RemoteCLIP paper as a one-line reference.
REMOTECLIP_CITATION = ('Liu et al., "RemoteCLIP: A Vision Language Foundation Model for Remote Sensing", '
                       "IEEE TGRS 62, 2024 (arXiv 2306.11029)")

Task = Literal["retrieval", "zero_shot_classification", "counting"]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its registry `name` (the results-JSON and dataset-folder name) and what is known of it."""

    name: str
    task: Task
    display_name: str
    paper_order: int | None = None
    class_folders: tuple[str, ...] = ()
    citation: str = ""
    full_name: str = ""

    def __post_init__(self) -> None:
        if not self.full_name:
            object.__setattr__(self, "full_name", self.display_name)


_EUROSAT_FOLDERS = (
        "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
        "Residential", "River", "SeaLake",
    )
_UCMERCED_FOLDERS = (
        "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential",
        "forest", "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark",
        "overpass", "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt",
    )
_AID_FOLDERS = (
        "Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church", "Commercial",
        "DenseResidential", "Desert", "Farmland", "Forest", "Industrial", "Meadow", "MediumResidential", "Mountain",
        "Park", "Parking", "Playground", "Pond", "Port", "RailwayStation", "Resort", "River", "School",
        "SparseResidential", "Square", "Stadium", "StorageTanks", "Viaduct",
    )
_RESISC45_FOLDERS = (
        "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral", "church",
        "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert", "forest", "freeway",
        "golf_course", "ground_track_field", "harbor", "industrial_area", "intersection", "island", "lake",
        "meadow", "medium_residential", "mobile_home_park", "mountain", "overpass", "palace", "parking_lot",
        "railway", "railway_station", "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship",
        "snowberg", "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
        "thermal_power_station", "wetland",
    )
_RSI_CB128_FOLDERS = (
        "airplane", "airport_runway", "artificial_grassland", "avenue", "bare_land", "bridge", "city_avenue",
        "city_building", "city_green_tree", "city_road", "coastline", "container", "crossroads", "dam", "desert",
        "dry_farm", "forest", "fork_road", "green_farmland", "highway", "hirst", "lakeshore", "mangrove", "marina",
        "mountain", "mountain_road", "natural_grassland", "overpass", "parkinglot", "pipeline", "rail", "residents",
        "river", "river_protection_forest", "sandbeach", "sapling", "sea", "shrubwood", "snow_mountain",
        "sparse_forest", "storage_room", "stream", "tower", "town", "turning_circle",
    )
_RSI_CB256_FOLDERS = (
        "airplane", "airport_runway", "artificial_grassland", "avenue", "bare_land", "bridge", "city_building",
        "coastline", "container", "crossroads", "dam", "desert", "dry_farm", "forest", "green_farmland", "highway",
        "hirst", "lakeshore", "mangrove", "marina", "mountain", "parkinglot", "pipeline", "residents", "river",
        "river_protection_forest", "sandbeach", "sapling", "sea", "shrubwood", "snow_mountain", "sparse_forest",
        "storage_room", "stream", "town",
    )
_WHU_EARTH_FOLDERS = (
        "agriculture", "commercial", "harbor", "idle_land", "industrial", "meadow", "overpass", "park", "pond",
        "residential", "river", "water",
    )
_MLRSNET_FOLDERS = (
        "airplane", "airport", "bareland", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral",
        "cloud", "commercial_area", "dense_residential_area", "desert", "eroded_farmland", "farmland", "forest",
        "freeway", "golf_course", "ground_track_field", "harbor&port", "industrial_area", "intersection", "island",
        "lake", "meadow", "mobile_home_park", "mountain", "overpass", "park", "parking_lot", "parkway", "railway",
        "railway_station", "river", "roundabout", "shipping_yard", "snowberg", "sparse_residential_area", "stadium",
        "storage_tank", "swimmimg_pool", "tennis_court", "terrace", "transmission_tower", "vegetable_greenhouse",
        "wetland", "wind_turbine",
    )
_PATTERNNET_FOLDERS = (
        "airplane", "baseball_field", "basketball_court", "beach", "bridge", "cemetery", "chaparral",
        "christmas_tree_farm", "closed_road", "coastal_mansion", "crosswalk", "dense_residential", "ferry_terminal",
        "football_field", "forest", "freeway", "golf_course", "harbor", "intersection", "mobile_home_park",
        "nursing_home", "oil_gas_field", "oil_well", "overpass", "parking_lot", "parking_space", "railway", "river",
        "runway", "runway_marking", "shipping_yard", "solar_panel", "sparse_residential", "storage_tank",
        "swimming_pool", "tennis_court", "transformer_station", "wastewater_treatment_plant",
    )
_RS2800_FOLDERS = (
        "aGrass", "bField", "cIndustry", "dRiverLake", "eForest", "fResident", "gParking",
    )
_OPTIMAL31_FOLDERS = (
        "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral", "church",
        "circular_farmland", "commercial_area", "dense_residential", "desert", "forest", "freeway", "golf_course",
        "ground_track_field", "harbor", "industrial_area", "intersection", "island", "lake", "meadow",
        "medium_residential", "mobile_home_park", "mountain", "overpass", "parking_lot", "railway",
        "rectangular_farmland", "roundabout", "runway",
    )
_RSC11_FOLDERS = (
        "dense_forest", "grassland", "harbor", "high_buildings", "low_buildings", "overpass", "railway",
        "residential_area", "roads", "sparse_forest", "storage_tanks",
    )
_WHU_RS19_FOLDERS = (
        "Airport", "Beach", "Bridge", "Commercial", "Desert", "Farmland", "Forest", "Industrial", "Meadow",
        "Mountain", "Park", "Parking", "Pond", "Port", "Residential", "River", "Viaduct", "footballField",
        "railwayStation",
    )

BENCHMARKS: dict[str, Benchmark] = {benchmark.name: benchmark for benchmark in (
    Benchmark("rsitmd", "retrieval", "RSITMD", paper_order=0,
              citation="Yuan et al., Exploring a Fine-Grained Multiscale Method for Cross-Modal Remote Sensing Image Retrieval, IEEE TGRS 2022"),
    Benchmark("rsicd", "retrieval", "RSICD", paper_order=1,
              citation="Lu et al., Exploring Models and Data for Remote Sensing Image Caption Generation, IEEE TGRS 2017"),
    Benchmark("ucm", "retrieval", "UCM-captions", paper_order=2,
              full_name="UCM-Captions",
              citation="Qu et al., Deep Semantic Understanding of High Resolution Remote Sensing Image, CITS 2016"),
    Benchmark("rsi_cb128", "zero_shot_classification", "RSI-CB128", paper_order=0, class_folders=_RSI_CB128_FOLDERS,
              citation="Li et al., RSI-CB: A Large-Scale Remote Sensing Image Classification Benchmark Using Crowdsourced Data, Sensors 2020"),
    Benchmark("rsi_cb256", "zero_shot_classification", "RSI-CB256", paper_order=1, class_folders=_RSI_CB256_FOLDERS,
              citation="Li et al., RSI-CB: A Large-Scale Remote Sensing Image Classification Benchmark Using Crowdsourced Data, Sensors 2020"),
    Benchmark("whu_earth", "zero_shot_classification", "WHU-earth", paper_order=2, class_folders=_WHU_EARTH_FOLDERS,
              citation="Zhao et al., Dirichlet-Derived Multiple Topic Scene Classification Model for High Spatial Resolution Remote Sensing Imagery, IEEE TGRS 2016 (SIRI-WHU)"),
    Benchmark("eurosat", "zero_shot_classification", "EuroSAT", paper_order=3, class_folders=_EUROSAT_FOLDERS,
              citation="Helber et al., EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover Classification, IEEE JSTARS 2019"),
    Benchmark("mlrsnet", "zero_shot_classification", "MLRSNet", paper_order=4, class_folders=_MLRSNET_FOLDERS,
              citation="Qi et al., MLRSNet: A Multi-Label High Spatial Resolution Remote Sensing Dataset for Semantic Scene Understanding, ISPRS J. 2020"),
    Benchmark("patternnet", "zero_shot_classification", "PatternNet", paper_order=5, class_folders=_PATTERNNET_FOLDERS,
              citation="Zhou et al., PatternNet: A Benchmark Dataset for Performance Evaluation of Remote Sensing Image Retrieval, ISPRS J. 2018"),
    Benchmark("resisc45", "zero_shot_classification", "RESISC45", paper_order=6, class_folders=_RESISC45_FOLDERS,
              full_name="NWPU-RESISC45",
              citation="Cheng et al., Remote Sensing Image Scene Classification: Benchmark and State of the Art, Proceedings of the IEEE 2017"),
    Benchmark("aid", "zero_shot_classification", "AID", paper_order=7, class_folders=_AID_FOLDERS,
              citation="Xia et al., AID: A Benchmark Data Set for Performance Evaluation of Aerial Scene Classification, IEEE TGRS 2017"),
    Benchmark("rs2800", "zero_shot_classification", "RS2800", paper_order=8, class_folders=_RS2800_FOLDERS,
              citation="Zou et al., Deep Learning Based Feature Selection for Remote Sensing Scene Classification, IEEE GRSL 2015 (RSSCN7)"),
    Benchmark("optimal31", "zero_shot_classification", "OPTIMAL-31", paper_order=9, class_folders=_OPTIMAL31_FOLDERS,
              citation="Wang et al., Scene Classification With Recurrent Attention of VHR Remote Sensing Images, IEEE TGRS 2019"),
    Benchmark("rsc11", "zero_shot_classification", "RSC11", paper_order=10, class_folders=_RSC11_FOLDERS,
              citation="Zhao et al., Feature Significance-Based Multibag-of-Visual-Words Model for Remote Sensing Image Scene Classification, JARS 2016"),
    Benchmark("whu_rs19", "zero_shot_classification", "WHU-RS19", paper_order=11, class_folders=_WHU_RS19_FOLDERS,
              citation="Dai and Yang, Satellite Image Classification via Two-Layer Sparse Coding With Biased Image Representation, IEEE GRSL 2011"),
    Benchmark("ucmerced", "zero_shot_classification", "UC Merced", class_folders=_UCMERCED_FOLDERS,
              full_name="UC Merced Land Use",
              citation="Yang and Newsam, Bag-of-Visual-Words and Spatial Extensions for Land-Use Classification, ACM SIGSPATIAL GIS 2010"),
    Benchmark("rsscn7", "zero_shot_classification", "RSSCN7", class_folders=_RS2800_FOLDERS,
              citation="Zou et al., Deep Learning Based Feature Selection for Remote Sensing Scene Classification, IEEE GRSL 2015"),
    Benchmark("aid150", "zero_shot_classification", "AID (150 px sample)", class_folders=_AID_FOLDERS,
              full_name="AID (150-image subset)",
              citation="Xia et al., AID: A Benchmark Data Set for Performance Evaluation of Aerial Scene Classification, IEEE TGRS 2017"),
    Benchmark("remotecount", "counting", "RemoteCount",
              citation=REMOTECLIP_CITATION),
)}
"""Every known benchmark by name."""


def names_for(task: Task) -> tuple[str, ...]:
    """Registry names of one task: the paper's table order first, then the others in registry order."""
    chosen = [benchmark for benchmark in BENCHMARKS.values() if benchmark.task == task]
    in_paper = sorted((b for b in chosen if b.paper_order is not None), key=lambda b: b.paper_order)
    return tuple(b.name for b in in_paper) + tuple(b.name for b in chosen if b.paper_order is None)


def paper_order(task: Task) -> tuple[str, ...]:
    """The benchmarks of one of the paper's tables (Table II: "retrieval", Table III: "zero_shot_classification")."""
    return tuple(name for name in names_for(task) if BENCHMARKS[name].paper_order is not None)


#: Name of a benchmark's Hub dataset repo, as `build_benchmarks --push-to-hub OWNER/rs-{name}` publishes it.
BENCHMARK_REPO_NAME = "rs-{name}"


def benchmark_repo_id(name: str, owner: str | None) -> str:
    """Hub dataset id of benchmark `name` published under `owner` (`OWNER/rs-{name}`; without owner, the name)."""
    repo = BENCHMARK_REPO_NAME.format(name=name)
    return f"{owner}/{repo}" if owner else repo


def benchmark_of_repo_id(repo_id: str) -> str:
    """The benchmark name of a Hub dataset id from `benchmark_repo_id` (other ids as they are)."""
    prefix, _, suffix = BENCHMARK_REPO_NAME.partition("{name}")
    repo = repo_id.split("/")[-1]
    return repo[len(prefix):len(repo) - len(suffix)] if repo.startswith(prefix) and repo.endswith(suffix) else repo_id


def display_name(name: str) -> str:
    """Display name of a benchmark (`rsitmd` -> `RSITMD`); unknown names as they are."""
    benchmark = BENCHMARKS.get(name)
    return benchmark.display_name if benchmark else name


def sort_paper_first(names: list[str] | tuple[str, ...]) -> list[str]:
    """`names` with the known ones in registry order (the paper's tables first) and unknown ones after, as given."""
    order = {name: position for position, name in enumerate(BENCHMARKS)}
    known = sorted((name for name in names if name in order), key=order.__getitem__)
    return known + [name for name in names if name not in order]


__all__ = ["BENCHMARKS", "BENCHMARK_REPO_NAME", "REMOTECLIP_BIBTEX", "REMOTECLIP_CITATION", "Benchmark", "Task", "benchmark_of_repo_id", "benchmark_repo_id", "display_name", "names_for", "paper_order", "sort_paper_first"]
