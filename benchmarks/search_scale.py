"""Search index at scale: build rate on real images, and for clustered synthetic embeddings written through the
index API, side by side: Lance flat (the index's exact search over batches of the LanceDB table), Lance ANN
(IVF-HNSW-SQ), and the two searches of the format before LanceDB as baselines measured in the same run: its exact
search (`chunked_topk` over its float32 safetensors shards: held in memory up to 4 GiB, above that read in turn) and
its FAISS IVFFlat side file (nlist ~ sqrt(N), nprobe 32; run only where all vectors fit in 4 GiB, as it holds them
all in memory).

- Build: `build_index` over real RSSCN7 images with a random-weight ViT-B/32 (full size; weights do not change
  the cost), against the same build by the code of the format before LanceDB (`git archive 48cd3b5^`, run in a
  process of its own) and `encode_images` of the same images already in memory.
- Store: clustered synthetic unit vectors (D=512, 1,000 Gaussian clusters: real embeddings are clustered, uniform
  random ones would make any inverted-file index look bad) written through `EmbeddingIndex.add`/`commit`, 65,536 a
  commit, with a longitude/latitude box per item such that the bbox prefilter keeps 1 % of them.
- Figures per size: write rate (items/s), disk (MiB), query p50/p99 per query (k=10, 32 queries, `--repeats`
  passes; above 4 GiB of vectors the full scans are timed on 4 queries, one pass), with and without the 1 % bbox
  prefilter, recall@10 against exact, peak RSS growth of each phase; the ANN searches run in a fresh process that
  opens the index as `rclip-hf search` does, whose peak RSS (VmHWM) is printed, and their first pass (Lance's
  cache of ANN partitions still empty, as in a one-shot `rclip-hf search`) is timed apart; and float16 against float32
  embeddings on the first 1M vectors (recall@10 of float16 exact search, queries whose top 11 holds a tie, disk).

    python benchmarks/search_scale.py                       # 1M and 10M, prints each size's table as it ends
    python benchmarks/search_scale.py --sizes 10000 100000 --build-images 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rclip_hf.arguments import ArgumentParser

DIM = 512
NUM_CLUSTERS = 1000
NUM_QUERIES = 32
K = 10
SHARD = 65536  # items per write (one commit) and per old-format shard
IN_MEMORY_BYTES = 4 * 2**30  # above: the old shards are read in turn, not held, and FAISS IVFFlat (all in memory) is not run
SCAN_QUERIES_LARGE = 4  # queries timed one at a time by the full-scan searches above IN_MEMORY_BYTES (one pass)
FLOAT16_SAMPLE = 1_000_000  # rows of the float16 / float32 comparison
OLD_FORMAT = "48cd3b5^"  # the last commit of the format before LanceDB (git revision)
OLD_BUILD = """
import json, sys, time, torch
import rclip_hf
from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, build_processor
from rclip_hf.inference.search import build_index
torch.manual_seed(0)
model, processor = RemoteCLIPModel(RemoteCLIPConfig.from_preset("ViT-B-32")).eval(), build_processor(224)
start = time.perf_counter()
report = build_index(sys.argv[1], sys.argv[2], model, processor, batch_size=32)
print(json.dumps({"images": report.added, "build_img_s": report.added / (time.perf_counter() - start),
                  "package": rclip_hf.__file__}))
"""
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class PeakRss:
    """Context manager sampling this process's resident memory (VmRSS) every 2 ms; `.growth_mib` = peak - start."""

    def __enter__(self) -> PeakRss:  # noqa: PYI034
        self.start = self.peak = _current_rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _current_rss_mib())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _current_rss_mib())
        self.growth_mib = self.peak - self.start


def _current_rss_mib() -> float:
    return _status_mib("VmRSS")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark's memory figures need Linux)")


def _fresh_model():
    import torch

    from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel, build_processor

    torch.manual_seed(0)
    return RemoteCLIPModel(RemoteCLIPConfig.from_preset("ViT-B-32")).eval(), build_processor(224)


def measure_build(num_images: int, folder: str, out: str, queue) -> None:
    """Child process: img/s of build_index vs encode_images on the same real images."""
    import torch
    from PIL import Image

    from rclip_hf.embeddings import encode_images
    from rclip_hf.inference.search import build_index

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, processor = _fresh_model()
    paths = sorted(Path(folder).rglob("*.jpg"))[:num_images]
    images = [Image.open(path).convert("RGB") for path in paths]
    encode_images(model, processor, images[:8], batch_size=8, show_progress=False)  # warm-up
    start = time.perf_counter()
    encode_images(model, processor, images, batch_size=32, show_progress=False)
    baseline = len(images) / (time.perf_counter() - start)
    start = time.perf_counter()
    report = build_index(folder, out, model, processor, batch_size=32)
    rate = report.added / (time.perf_counter() - start)
    queue.put({"images": report.added, "build_img_s": rate, "encode_img_s": baseline})


def measure_old_build(folder: Path, out: Path, code: Path) -> dict:
    """The same build with the code of the format before LanceDB (`git archive OLD_FORMAT`), in a process of its own."""
    repo = Path(__file__).resolve().parents[1]
    code.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", OLD_FORMAT, "rclip_hf"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    result = subprocess.run([sys.executable, "-c", OLD_BUILD, str(folder), str(out)], check=True, text=True, cwd=code,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(code)})
    row = json.loads(result.stdout.strip().splitlines()[-1])
    if not row["package"].startswith(str(code)):
        raise RuntimeError(f"the old build imported {row['package']}, not the code under {code}")
    return row


def measure_store(size: int, root: str, repeats: int, queue) -> None:
    """Child process: write `size` clustered embeddings through the index API (and as the old format's shards), then
    time the searches; ANN search is timed in a fresh process of its own (`measure_ann`), whose peak RSS is the
    figure a user's searching process reaches."""
    import torch
    from safetensors.torch import save_file

    from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel
    from rclip_hf.inference.index import EmbeddingIndex
    from rclip_hf.topk import chunked_topk, topk_lowest_index

    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(NUM_CLUSTERS, DIM, generator=generator), dim=-1)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 1}
    owner = RemoteCLIPModel(RemoteCLIPConfig(text_config=tower, vision_config={**tower, "image_size": 32,
                                                                                 "patch_size": 16},
                                             projection_dim=DIM))  # only names the index's model (D = 512)
    folder = Path(root) / f"synthetic-{size}"
    old_folder = Path(root) / f"old-{size}"
    old_folder.mkdir()
    index = EmbeddingIndex.open_or_create(folder, owner, scenes=True)
    picks = set(torch.randperm(size, generator=generator)[:NUM_QUERIES].tolist())
    in_memory = size * DIM * 4 <= IN_MEMORY_BYTES
    picked, blocks, shards = [], [], []
    write_s = 0.0
    for block_start in range(0, size, SHARD):
        count = min(SHARD, size - block_start)
        labels = torch.randint(NUM_CLUSTERS, (count,), generator=generator)
        noise = torch.randn(count, DIM, generator=generator) / DIM**0.5
        block = torch.nn.functional.normalize(centres[labels] + 0.6 * noise, dim=-1)  # (count, D)
        picked += [block[i - block_start] for i in range(block_start, block_start + count) if i in picks]
        if in_memory or block_start < FLOAT16_SAMPLE:
            blocks.append(block)
        shards.append((block_start, old_folder / f"shard-{len(shards):05d}.safetensors"))
        save_file({"embeddings": block}, str(shards[-1][1]))
        ids = range(block_start, block_start + count)
        boxes = [{"bbox": {"xmin": float(i % 100), "ymin": 0.0, "xmax": i % 100 + 0.5, "ymax": 1.0}} for i in ids]
        start = time.perf_counter()
        index.add([str(i) for i in ids], [""] * count, list(ids), block, extra=boxes)
        index.commit()
        write_s += time.perf_counter() - start
    gallery = torch.cat(blocks)  # (N, D) in memory when it fits, else the first FLOAT16_SAMPLE rows
    noise = torch.randn(len(picked), DIM, generator=generator) / DIM**0.5
    queries = torch.nn.functional.normalize(torch.stack(picked) + 0.3 * noise, dim=-1)  # (Q, D)
    save_file({"queries": queries}, str(Path(root) / "queries.safetensors"))
    scan_queries = NUM_QUERIES if in_memory else SCAN_QUERIES_LARGE
    scan_repeats = repeats if in_memory else 1
    row = {"size": size, "lance_write_items_s": size / write_s, "lance_mib": _mib(folder),
           "old_mib": _mib(old_folder), "scan_queries": scan_queries, "scan_repeats": scan_repeats,
           "in_memory": in_memory}
    _note(size, f"written: {row['lance_write_items_s']:,.0f} items/s, Lance {row['lance_mib']:.0f} MiB, old shards "
          f"{row['old_mib']:.0f} MiB")
    allowed = torch.from_numpy(index.numeric_column("xmin") < 0.75)  # 1 % of the items

    def timed(name: str, search, count: int = NUM_QUERIES, passes: int = repeats) -> torch.Tensor:
        with PeakRss() as memory:
            result = search()  # all queries at once; also the warm-up (page cache, index files)
            _note(size, f"{name}: all {NUM_QUERIES} queries at once, warm-up done")
            timings = []
            for _ in range(passes):
                for query in queries[:count]:
                    begin = time.perf_counter()
                    search(query[None])
                    timings.append(time.perf_counter() - begin)
        _percentiles(row, name, timings)
        row[f"{name}_mib"] = memory.growth_mib
        _note(size, f"{name}: p50 {row[name + '_p50_ms']:.1f} ms, p99 {row[name + '_p99_ms']:.1f} ms over "
              f"{len(timings)} queries, +{memory.growth_mib:.0f} MiB")
        return result

    def old_exact(q: torch.Tensor = queries) -> torch.Tensor:
        """The old format's exact search: `chunked_topk` over its float32 shards, in memory when they fit, else
        each shard read in turn (memory-mapped safetensors)."""
        if in_memory:
            return chunked_topk(q, gallery, K)[1]
        from safetensors import safe_open

        best_scores, best_positions = [], []
        for offset, path in shards:
            with safe_open(str(path), "pt") as shard:
                scores, positions = chunked_topk(q, shard.get_tensor("embeddings"), K)
            best_scores.append(scores)
            best_positions.append(positions + offset)
        _, columns = topk_lowest_index(torch.cat(best_scores, dim=1), K)
        return torch.cat(best_positions, dim=1).gather(1, columns)

    order = torch.from_numpy(np.array(index.ids(), dtype=np.int64))  # table position -> generation number
    # The truth first, in one scan each, so that the ANN figures (the goals) come before the slow full-scan timings.
    start = time.perf_counter()
    exact = index.search_embeddings(queries, K, backend="exact")[1]
    exact_box = index.search_embeddings(queries, K, backend="exact", allowed=allowed)[1]
    _note(size, f"exact top {K} of the {NUM_QUERIES} queries, one scan with and one without the bbox filter: "
          f"{time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    with PeakRss() as memory:
        index.build_ann()
    row["lance_ann_build_s"], row["lance_ann_build_mib"] = time.perf_counter() - start, memory.growth_mib
    row["lance_ann_mib_disk"] = _mib(folder)
    _note(size, f"ANN built: {row['lance_ann_build_s']:.1f} s, +{memory.growth_mib:.0f} MiB, "
          f"{row['lance_ann_mib_disk']:.0f} MiB on disk with it")
    ann = _in_child(measure_ann, str(folder), str(Path(root) / "queries.safetensors"), repeats)
    for name in ("lance_ann", "lance_ann_bbox", "lance_auto_bbox"):
        row.update({key: value for key, value in ann.items() if key.startswith(name + "_")})
        truth = exact if name == "lance_ann" else exact_box
        found = torch.from_numpy(ann[name])
        row[f"{name}_recall"] = _recall(torch.where(found >= 0, order[found.clamp(min=0)], -1), order[truth])
        _note(size, f"{name}: p50 {row[name + '_p50_ms']:.1f} ms, p99 {row[name + '_p99_ms']:.1f} ms (first pass "
              f"p50 {row[name + '_first_p50_ms']:.1f} ms), recall@{K} "
              f"{row[name + '_recall']:.3f}")
    row["ann_search_peak_rss_mib"] = ann["peak_rss_mib"]
    _note(size, f"peak RSS of the searching process: {ann['peak_rss_mib']:.0f} MiB")
    timed("lance_flat", lambda q=queries: index.search_embeddings(q, K, backend="exact")[1], scan_queries,
          scan_repeats)
    timed("lance_flat_bbox", lambda q=queries: index.search_embeddings(q, K, backend="exact", allowed=allowed)[1])
    old = timed("old_exact", old_exact, scan_queries, scan_repeats)
    row["old_exact_recall"] = _recall(old, order[exact])
    if in_memory:
        import faiss

        start = time.perf_counter()
        nlist = max(1, int(size ** 0.5))
        faiss_index = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        faiss_index.train(gallery[torch.randperm(size, generator=generator)[:64 * nlist]].numpy())
        faiss_index.add(gallery.numpy())
        faiss_index.nprobe = 32
        row["faiss_build_s"] = time.perf_counter() - start
        row["faiss_recall"] = _recall(timed("faiss", lambda q=queries: torch.from_numpy(
            faiss_index.search(q.numpy(), K)[1])), order[exact])
    # float16 embeddings: exact search over the rounded gallery (its first FLOAT16_SAMPLE rows) against float32
    half = gallery.half().float()
    top16 = (queries @ half.T).topk(K + 1, dim=1).values
    row["float16_rows"] = len(gallery)
    row["float16_recall"] = _recall((queries @ half.T).topk(K, dim=1).indices,
                                    (queries @ gallery.T).topk(K, dim=1).indices)
    row["float16_tie_queries"] = int((top16[:, 1:] == top16[:, :-1]).any(1).sum())
    top32 = (queries @ gallery.T).topk(K + 1, dim=1).values
    row["float32_tie_queries"] = int((top32[:, 1:] == top32[:, :-1]).any(1).sum())
    queue.put(row)


def measure_ann(folder: str, queries_file: str, repeats: int, queue) -> None:
    """Child process: open the index as `rclip-hf search` does and time its ANN searches, with and without the 1 %
    bbox prefilter; reports the positions found and this process's peak RSS (VmHWM)."""
    import torch
    from safetensors.torch import load_file

    from rclip_hf.inference.index import EmbeddingIndex
    from rclip_hf.inference.search import bbox_filter

    queries = load_file(queries_file)["queries"]
    index = EmbeddingIndex.open(folder)
    where = bbox_filter((0.0, 0.0, 0.25, 1.0))
    allowed = torch.from_numpy(index.numeric_column("xmin") < 0.75)
    row = {}
    for name, search in [("lance_ann", lambda q: index.search_embeddings(q, K, backend="ann")[1]),
                         ("lance_ann_bbox", lambda q: index.search_embeddings(q, K, backend="ann", where=where)[1]),
                         ("lance_auto_bbox", lambda q: index.search_embeddings(q, K, allowed=allowed,
                                                                               where=where)[1])]:
        passes = []  # (repeats + 1, Q) seconds; the first pass is also the warm-up: Lance's partition cache starts empty
        for _ in range(repeats + 1):
            found, timings = [], []
            for query in queries:
                begin = time.perf_counter()
                found.append(search(query[None]))
                timings.append(time.perf_counter() - begin)
            passes.append(timings)
        row[name] = torch.cat(found).numpy()  # numpy: sent by value
        _percentiles(row, f"{name}_first", passes[0])
        _percentiles(row, name, [seconds for timings in passes[1:] for seconds in timings])
        row[f"{name}_mib"] = float("nan")  # one process: its peak is reported once, below
    row["peak_rss_mib"] = _status_mib("VmHWM")
    queue.put(row)


def _note(size: int, text: str) -> None:
    """One phase's figures as soon as they are measured (a long run keeps what it measured)."""
    print(f"[{size:,} vectors, {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _percentiles(row: dict, name: str, timings: list[float]) -> None:
    timings = sorted(timings)
    row[f"{name}_p50_ms"] = timings[len(timings) // 2] * 1000
    row[f"{name}_p99_ms"] = timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1000


def _recall(found, truth) -> float:
    """Recall@10 of `found` (Q, K) against `truth` (Q, K), both as generation numbers (-1: a missing hit)."""
    return sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist())) / truth.numel()


def _mib(path: Path) -> float:
    files = [path] if path.is_file() else [file for file in path.rglob("*") if file.is_file()]
    return sum(file.stat().st_size for file in files) / 2**20


def _in_child(target, *args):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    """Run the measurements and print the table."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--build-images", type=int, default=128, help="real images for the build rate")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="search-scale-"))
    try:
        folder = root / "images"
        for path in sorted((DATA / "rsscn7").rglob("*.jpg"))[: args.build_images]:
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / path.parent.name / path.name)
        if args.build_images:
            build = _in_child(measure_build, args.build_images, str(folder), str(root / "real.index"))
            old = measure_old_build(folder, root / "old.index", root / "old-code")
            print(f"index build, {build['images']} real 400x400 RSSCN7 images, random-weight ViT-B/32, batch 32:")
            print(f"  build_index {build['build_img_s']:.1f} img/s; the format before LanceDB ({OLD_FORMAT}) "
                  f"{old['build_img_s']:.1f} img/s (ratio {build['build_img_s'] / old['build_img_s']:.2f}); "
                  f"encode_images in memory {build['encode_img_s']:.1f} img/s\n", flush=True)
        print(f"query: {NUM_QUERIES} queries one at a time, k={K}, D={DIM}, {args.repeats} passes; bbox = a prefilter "
              "keeping 1 % of the items; MiB = peak RSS growth of the phase; recall@10 against Lance flat", flush=True)
        for size in args.sizes:
            row = _in_child(measure_store, size, str(root), args.repeats)
            shutil.rmtree(root / f"synthetic-{size}")
            shutil.rmtree(root / f"old-{size}")
            _print_row(row, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _print_row(row: dict, repeats: int) -> None:
    scans = ("" if row["in_memory"] else f"; full scans (Lance flat, old exact) timed on {row['scan_queries']} "
             f"queries, {row['scan_repeats']} pass, and the old shards read in turn (memory-mapped)")
    faiss = (f"FAISS build {row['faiss_build_s']:.1f} s" if "faiss_build_s" in row else
             f"FAISS IVFFlat not run: it holds every vector in memory ({row['size'] * DIM * 4 / 2**30:.1f} GiB)")
    print(f"\n{row['size']:,} vectors: write {row['lance_write_items_s']:,.0f} items/s; disk Lance "
          f"{row['lance_mib']:.0f} MiB ({row['lance_ann_mib_disk']:.0f} with the ANN index), old shards "
          f"{row['old_mib']:.0f} MiB; ANN build {row['lance_ann_build_s']:.1f} s (+{row['lance_ann_build_mib']:.0f} "
          f"MiB); {faiss}{scans}")
    print(f"peak RSS of a fresh process that opens the index and answers the ANN searches below "
          f"({repeats} passes): {row['ann_search_peak_rss_mib']:.0f} MiB")
    header = ("search", "p50 ms", "p99 ms", "first pass p50 ms", "MiB", "recall@10")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, label in [("lance_flat", "Lance flat"), ("lance_flat_bbox", "Lance flat, bbox"),
                        ("lance_ann", "Lance ANN"), ("lance_ann_bbox", "Lance ANN, bbox"),
                        ("lance_auto_bbox", "Lance auto, bbox (exact over the 1 %)"),
                        ("old_exact", "old exact"), ("faiss", "old FAISS IVFFlat")]:
        if f"{name}_p50_ms" in row:
            first = f"{row[name + '_first_p50_ms']:.2f}" if f"{name}_first_p50_ms" in row else ""
            print(" | ".join([label, f"{row[name + '_p50_ms']:.2f}", f"{row[name + '_p99_ms']:.2f}", first,
                              f"{row[name + '_mib']:.0f}", f"{row.get(name + '_recall', 1.0):.3f}"]))
    print(f"float16 embeddings ({row['float16_rows']:,} rows): recall@10 {row['float16_recall']:.3f} against "
          f"float32; queries with a tie in the top 11: float16 {row['float16_tie_queries']}, float32 "
          f"{row['float32_tie_queries']} of {NUM_QUERIES}; disk half of float32", flush=True)


if __name__ == "__main__":
    main()
