"""`rclip-hf explore` at scale: search round trip, train + score, tiles and memory of the real server, each beside
its baseline measured in the same run.

- Index: `--size` windows (default 1M) written through the index API (`EmbeddingIndex.add` / `commit`): the windows
  of a real COG (NEON OSBS_029 from ../shared/data, made a COG with rio-cogeo, 100 px windows with their real
  geometry) plus synthetic windows of 1,000 pixel-space scenes; embeddings are clustered unit vectors (D=512,
  1,000 Gaussian clusters, as real embeddings are), owned by a small random-weight model with 512-d projections.
  Then `EmbeddingIndex.build_ann()`, as `rclip-hf index` does for an index of `ANN_MIN_ITEMS` items or more (at
  1M: IVF-HNSW-SQ, so the search figures are of ANN search, as a real 1M-window index would answer).
- Server: `rclip-hf explore --port 0` in its own process, over HTTP (httpx).
- Search: POST /api/search (text, k=50), median of `--repeats`, vs `rclip_hf.inference.search` called directly.
- Train + score: POST /api/train with 5 positive and 5 negative labels (scores all windows), vs scikit-learn's
  LogisticRegression fit + a matrix product over the embeddings already in memory.
- Tiles: GET of web-mercator tiles of the COG, median over the tiles of two zooms, vs rio-tiler's `Reader.tile`
  + `render` called directly on the same tiles.
- Memory: the server's resident set (VmRSS) at the end and its peak over the whole run (VmHWM).

    python benchmarks/explore.py                    # 1M windows (about 2 GiB of embeddings on disk)
    python benchmarks/explore.py --size 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rclip_hf.arguments import ArgumentParser

DIM = 512
NUM_CLUSTERS = 1000
NUM_SCENES = 1000
WINDOW = 100
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "explore-benchmark-token"
GOALS = {"search": 150.0, "train": 3.0, "tile": 50.0, "tile_ratio": 1.3, "rss": 2048.0}


def make_model(folder: Path) -> None:
    """A random-weight RemoteCLIP with 512-d projections (small towers: the text query costs little)."""
    import torch

    from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, build_processor

    torch.manual_seed(0)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 1}
    model = RemoteCLIPModel(RemoteCLIPConfig(text_config=tower, vision_config={**tower, "image_size": 32,
                                                                               "patch_size": 16},
                                             projection_dim=DIM)).eval()
    model.save_pretrained(folder)
    build_processor(image_size=32).save_pretrained(folder)


def make_cog(source: Path, target: Path) -> Path:
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    cog_translate(str(source), str(target), cog_profiles.get("deflate"), quiet=True)
    return target


def write_index(folder: Path, model_dir: Path, cog: Path, size: int) -> tuple[float, float]:
    """The COG's windows and `size - len(COG windows)` synthetic ones through `EmbeddingIndex`, then its ANN index
    as `rclip-hf index` builds it (`build_ann_if_wanted(index, "auto")`); (seconds writing, seconds building ANN)."""
    import torch
    from tqdm.auto import tqdm

    from rclip_hf.inference import EmbeddingIndex, load_model
    from rclip_hf.inference.scenes import window_id, window_record
    from rclip_hf.inference.search import build_ann_if_wanted
    from rclip_hf.inference.windows import PixelWindow, open_scene

    model, _ = load_model(model_dir)
    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(NUM_CLUSTERS, DIM, generator=generator), dim=-1)

    def clustered(count: int) -> torch.Tensor:
        labels = torch.randint(NUM_CLUSTERS, (count,), generator=generator)
        noise = torch.randn(count, DIM, generator=generator) / DIM**0.5
        return torch.nn.functional.normalize(centres[labels] + 0.6 * noise, dim=-1)

    start = time.perf_counter()
    index = EmbeddingIndex.open_or_create(folder, model, source="benchmark", scenes=True)
    with open_scene(cog) as scene:
        windows = [PixelWindow(left, top, min(WINDOW, scene.width - left), min(WINDOW, scene.height - top))
                   for top in range(0, scene.height, WINDOW) for left in range(0, scene.width, WINDOW)]
        records = [window_record(scene, window) for window in windows]
    index.add([window_id(str(cog), window) for window in windows], [str(cog)] * len(windows), [-1] * len(windows),
              clustered(len(windows)), extra=records)
    remaining = size - len(windows)
    per_scene = -(-remaining // NUM_SCENES)
    side = int(per_scene**0.5) + 1
    progress = tqdm(total=remaining, desc="synthetic windows", unit="window")
    for block_start in range(0, remaining, 65536):
        count = min(65536, remaining - block_start)
        numbers = range(block_start, block_start + count)
        scenes = [f"synthetic/scene-{number // per_scene:04d}.png" for number in numbers]
        boxes = [PixelWindow(WINDOW * (number % per_scene % side), WINDOW * (number % per_scene // side), WINDOW,
                             WINDOW) for number in numbers]
        extra = [{"left": box.left, "top": box.top, "width": box.width, "height": box.height} for box in boxes]
        index.add([window_id(scene, box) for scene, box in zip(scenes, boxes)], scenes, [-1] * count,
                  clustered(count), extra=extra)
        index.commit()
        progress.update(count)
    index.commit()
    progress.close()
    written = time.perf_counter()
    build_ann_if_wanted(index, "auto")
    return written - start, time.perf_counter() - written


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def median_ms(call, repeats: int) -> float:
    call()  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def main() -> None:
    """Build the index, start the server, measure, print the table."""
    import httpx
    import numpy as np
    from morecantile import tms
    from rio_tiler.io import Reader

    from rclip_hf.inference import EmbeddingIndex, load_model, search
    from rclip_hf.inference.index import is_index_folder

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="windows in the index")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--keep", type=str, default=None, help="work in this folder and keep it (default: temporary)")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="explore-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        model_dir, index_dir = root / "model", root / "windows.index"
        if not is_index_folder(index_dir):
            make_model(model_dir)
            cog = make_cog(DATA / "neon_trees" / "OSBS_029.tif", root / "osbs_029.cog.tif")
            write_s, ann_s = write_index(index_dir, model_dir, cog, args.size)
            print(f"wrote {args.size:,} windows through the index API in {write_s:.1f} s, ANN index "
                  f"(build_ann) in {ann_s:.1f} s")
        cog = root / "osbs_029.cog.tif"
        index = EmbeddingIndex.open(index_dir)
        print(f"search backend: {'ANN (IVF-HNSW-SQ)' if index.has_ann() else 'exact'} over {len(index):,} windows")
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "rclip_hf.cli", "explore", "--index", str(index_dir),
                                   "--model", str(model_dir), "--port", "0", "--token", TOKEN],
                                  stdout=subprocess.PIPE, stderr=(root / "server.log").open("w"), text=True,
                                  env=environment)
        url = next((line.split()[1] for line in server.stdout if line.startswith("open http")), None)
        if url is None:
            raise SystemExit(f"rclip-hf explore did not start: {(root / 'server.log').read_text()[-2000:]}")
        client = httpx.Client(base_url=url.split("/?token=")[0], headers={"Authorization": f"token {TOKEN}"},
                              timeout=600)
        client.get("/api/info").raise_for_status()
        startup_s = time.perf_counter() - start

        query = {"text": "a parking lot with cars", "k": 50}
        api_search = median_ms(lambda: client.post("/api/search", json=query).raise_for_status(), args.repeats)
        model, processor = load_model(model_dir)
        direct_search = median_ms(lambda: search(index, query["text"], k=50, model=model, processor=processor),
                                  args.repeats)

        ids = index.ids()
        hits = client.post("/api/search", json=query).json()["hits"]
        labelled = {hit["id"]: "positive" for hit in hits[:5]} | {ids[i]: "negative" for i in range(-5, 0)}
        for item_id, label in labelled.items():
            client.post("/api/labels", json={"id": item_id, "label": label}).raise_for_status()
        train_s = median_ms(lambda: client.post("/api/train").raise_for_status(), max(1, args.repeats // 5)) / 1000
        embeddings = np.concatenate([part.numpy() for _, part in index.shard_embeddings()])  # (N, D) in memory
        rows = [ids.index(item_id) for item_id in labelled]

        def fit_and_score() -> None:
            from sklearn.linear_model import LogisticRegression

            fitted = LogisticRegression(class_weight="balanced", max_iter=1000).fit(
                embeddings[rows], [label == "positive" for label in labelled.values()])
            1 / (1 + np.exp(-(embeddings @ fitted.coef_[0] + fitted.intercept_[0])))

        baseline_train_s = median_ms(fit_and_score, max(1, args.repeats // 5)) / 1000

        scene = next(scene for scene in client.get("/api/scenes").json() if scene["space"] == "lonlat")
        minx, miny, maxx, maxy = scene["bounds"]
        tiles = [tile for zoom in (19, 20) for tile in tms.get("WebMercatorQuad").tiles(minx, miny, maxx, maxy, [zoom])]
        api_tile = statistics.median(median_ms(lambda tile=tile: client.get(
            f"/api/scenes/{scene['id']}/tiles/{tile.z}/{tile.x}/{tile.y}.png").raise_for_status(), args.repeats)
            for tile in tiles)

        def direct(tile) -> bytes:
            with Reader(cog) as source:
                return source.tile(tile.x, tile.y, tile.z, indexes=(1, 2, 3)).render(img_format="PNG")

        direct_tile = statistics.median(median_ms(lambda tile=tile: direct(tile), args.repeats) for tile in tiles)
        rss, peak = rss_mib(server.pid)

        print(f"\n{len(index):,} windows (D={DIM}; {len(tiles)} COG tiles at zooms 19-20), server start-up "
              f"{startup_s:.1f} s, medians of {args.repeats}")
        print("figure | explore | baseline | ratio | goal")
        print("--- | --- | --- | --- | ---")
        print(f"search round trip (API, k=50) | {api_search:.1f} ms | search() direct {direct_search:.1f} ms | "
              f"{api_search / direct_search:.2f}x | <= {GOALS['search']:.0f} ms")
        print(f"train + score all windows | {train_s:.2f} s | sklearn + matmul in memory {baseline_train_s:.2f} s | "
              f"{train_s / baseline_train_s:.2f}x | <= {GOALS['train']:.0f} s")
        print(f"tile p50 | {api_tile:.1f} ms | rio-tiler direct {direct_tile:.1f} ms | {api_tile / direct_tile:.2f}x | "
              f"<= {GOALS['tile']:.0f} ms and <= {GOALS['tile_ratio']}x")
        print(f"server resident memory, end and peak | {rss:.0f} MiB, peak {peak:.0f} MiB | - | - | "
              f"<= {GOALS['rss']:.0f} MiB, peak included")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
