"""Search index at scale: build rate on real images, and for clustered synthetic embeddings written through the
index API, side by side: Lance flat (the index's exact search over batches of the LanceDB table), Lance ANN
(IVF-HNSW-SQ), and the two searches of the format before LanceDB as baselines measured in the same run: its exact
search (`chunked_topk` over float32 safetensors shards held in memory) and its FAISS IVFFlat side file
(nlist ~ sqrt(N), nprobe 32).

- Build: `build_index` over real RSSCN7 images with a random-weight ViT-B/32 (full size; weights do not change
  the cost) vs the baseline `encode_images` of the same images already in memory (ratio = index overhead).
- Store: clustered synthetic unit vectors (D=512, 1,000 Gaussian clusters: real embeddings are clustered, uniform
  random ones would make any inverted-file index look bad) written through `EmbeddingIndex.add`/`commit`, with a
  longitude/latitude box per item such that the bbox prefilter keeps 1 % of them.
- Figures per size: write rate (items/s), disk (MiB), query p50/p99 per query (k=10, 32 queries, `--repeats`
  passes), with and without the 1 % bbox prefilter, recall@10 against exact, peak RSS growth of each phase; and
  float16 against float32 embeddings (recall@10 of float16 exact search, queries whose top 11 holds a tie, disk).

    python benchmarks/search_scale.py                       # 100k and 1M, prints the table
    python benchmarks/search_scale.py --sizes 10000 100000 --build-images 0
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import threading
import time
from pathlib import Path

from rclip_hf.arguments import ArgumentParser

DIM = 512
NUM_CLUSTERS = 1000
NUM_QUERIES = 32
K = 10
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
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark's memory figures need Linux)")


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


def measure_store(size: int, root: str, repeats: int, queue) -> None:
    """Child process: write `size` clustered embeddings through the index API, then time the four searches."""
    import torch
    from safetensors.torch import save_file

    from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel
    from rclip_hf.inference.index import EmbeddingIndex
    from rclip_hf.inference.search import bbox_filter
    from rclip_hf.topk import chunked_topk

    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(NUM_CLUSTERS, DIM, generator=generator), dim=-1)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 1}
    owner = RemoteCLIPModel(RemoteCLIPConfig(text_config=tower, vision_config={**tower, "image_size": 32,
                                                                                 "patch_size": 16},
                                             projection_dim=DIM))  # only names the index's model (D = 512)
    folder = Path(root) / f"synthetic-{size}"
    index = EmbeddingIndex.open_or_create(folder, owner, scenes=True)
    picks = set(torch.randperm(size, generator=generator)[:NUM_QUERIES].tolist())
    picked, blocks = [], []
    write_s = 0.0
    for block_start in range(0, size, 65536):
        count = min(65536, size - block_start)
        labels = torch.randint(NUM_CLUSTERS, (count,), generator=generator)
        noise = torch.randn(count, DIM, generator=generator) / DIM**0.5
        block = torch.nn.functional.normalize(centres[labels] + 0.6 * noise, dim=-1)  # (count, D)
        picked += [block[i - block_start] for i in range(block_start, block_start + count) if i in picks]
        blocks.append(block)
        ids = range(block_start, block_start + count)
        boxes = [{"bbox": {"xmin": float(i % 100), "ymin": 0.0, "xmax": i % 100 + 0.5, "ymax": 1.0}} for i in ids]
        start = time.perf_counter()
        index.add([str(i) for i in ids], [""] * count, list(ids), block, extra=boxes)
        index.commit()
        write_s += time.perf_counter() - start
    gallery = torch.cat(blocks)  # (N, D): the old format's shards, in memory
    noise = torch.randn(len(picked), DIM, generator=generator) / DIM**0.5
    queries = torch.nn.functional.normalize(torch.stack(picked) + 0.3 * noise, dim=-1)  # (Q, D)
    row = {"size": size, "lance_write_items_s": size / write_s, "lance_mib": _mib(folder)}
    save_file({"embeddings": gallery}, str(Path(root) / "old.safetensors"))
    row["old_mib"] = _mib(Path(root) / "old.safetensors")
    allowed = torch.from_numpy(index.numeric_column("xmin") < 0.75)  # 1 % of the items
    where = bbox_filter((0.0, 0.0, 0.25, 1.0))

    def timed(name: str, search) -> torch.Tensor:
        with PeakRss() as memory:
            search()  # warm-up (page cache, index files)
            timings = []
            for _ in range(repeats):
                for query in queries:
                    begin = time.perf_counter()
                    search(query[None])
                    timings.append(time.perf_counter() - begin)
        timings.sort()
        row[f"{name}_p50_ms"] = timings[len(timings) // 2] * 1000
        row[f"{name}_p99_ms"] = timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1000
        row[f"{name}_mib"] = memory.growth_mib
        return search()  # all queries at once

    order = torch.tensor([int(item_id) for item_id in index.ids()])  # table position -> generation number

    def recall(found: torch.Tensor, truth: torch.Tensor, found_in_table: bool = True) -> float:
        """Recall@10 of `found` against Lance flat's `truth`, both as generation numbers (the table's order is not
        the order of writing: upserts)."""
        found = torch.where(found >= 0, order[found.clamp(min=0)], -1) if found_in_table else found
        truth = order[truth]
        return sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist())) / truth.numel()

    exact = timed("lance_flat", lambda q=queries: index.search_embeddings(q, K, backend="exact")[1])
    exact_box = timed("lance_flat_bbox", lambda q=queries: index.search_embeddings(q, K, backend="exact",
                                                                                    allowed=allowed)[1])
    old = timed("old_exact", lambda q=queries: chunked_topk(q, gallery, K)[1])
    row["old_exact_recall"] = recall(old, exact, found_in_table=False)
    start = time.perf_counter()
    with PeakRss() as memory:
        index.build_ann()
    row["lance_ann_build_s"], row["lance_ann_build_mib"] = time.perf_counter() - start, memory.growth_mib
    row["lance_ann_mib_disk"] = _mib(folder)
    row["lance_ann_recall"] = recall(timed("lance_ann", lambda q=queries: index.search_embeddings(
        q, K, backend="ann")[1]), exact)
    row["lance_ann_bbox_recall"] = recall(timed("lance_ann_bbox", lambda q=queries: index.search_embeddings(
        q, K, backend="ann", where=where)[1]), exact_box)
    row["lance_auto_bbox_recall"] = recall(timed("lance_auto_bbox", lambda q=queries: index.search_embeddings(
        q, K, allowed=allowed, where=where)[1]), exact_box)
    import faiss

    start = time.perf_counter()
    nlist = max(1, int(size ** 0.5))
    faiss_index = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist, faiss.METRIC_INNER_PRODUCT)
    faiss_index.train(gallery[torch.randperm(size, generator=generator)[:64 * nlist]].numpy())
    faiss_index.add(gallery.numpy())
    faiss_index.nprobe = 32
    row["faiss_build_s"] = time.perf_counter() - start
    row["faiss_recall"] = recall(timed("faiss", lambda q=queries: torch.from_numpy(
        faiss_index.search(q.numpy(), K)[1])), exact, found_in_table=False)
    # float16 embeddings: exact search over the rounded gallery against float32
    half = gallery.half().float()
    top16 = (queries @ half.T).topk(K + 1, dim=1).values
    row["float16_recall"] = sum(len(set(a) & set(b)) for a, b in zip(
        (queries @ half.T).topk(K, dim=1).indices.tolist(), (queries @ gallery.T).topk(K, dim=1).indices.tolist())) / (
        NUM_QUERIES * K)
    row["float16_tie_queries"] = int((top16[:, 1:] == top16[:, :-1]).any(1).sum())
    top32 = (queries @ gallery.T).topk(K + 1, dim=1).values
    row["float32_tie_queries"] = int((top32[:, 1:] == top32[:, :-1]).any(1).sum())
    queue.put(row)


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--build-images", type=int, default=128, help="real images for the build rate")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="search-scale-"))
    try:
        folder = root / "images"
        for path in sorted((DATA / "rsscn7").rglob("*.jpg"))[: args.build_images]:
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / path.parent.name / path.name)
        build = _in_child(measure_build, args.build_images, str(folder), str(root / "real.index")) if (
            args.build_images) else None
        if build:
            print(f"index build, {build['images']} real 400x400 RSSCN7 images, random-weight ViT-B/32, batch 32:")
            print(f"  build_index {build['build_img_s']:.1f} img/s vs encode_images in memory "
                  f"{build['encode_img_s']:.1f} img/s (ratio {build['build_img_s'] / build['encode_img_s']:.2f})\n")
        rows = []
        for size in args.sizes:
            rows.append(_in_child(measure_store, size, str(root), args.repeats))
            shutil.rmtree(root / f"synthetic-{size}")
        print(f"query: {NUM_QUERIES} queries one at a time, k={K}, D={DIM}, {args.repeats} passes; bbox = a prefilter "
              "keeping 1 % of the items; MiB = peak RSS growth of the phase; recall@10 against Lance flat")
        for row in rows:
            print(f"\n{row['size']:,} vectors: write {row['lance_write_items_s']:,.0f} items/s; disk Lance "
                  f"{row['lance_mib']:.0f} MiB ({row['lance_ann_mib_disk']:.0f} with the ANN index), old shards "
                  f"{row['old_mib']:.0f} MiB; ANN build {row['lance_ann_build_s']:.1f} s "
                  f"(+{row['lance_ann_build_mib']:.0f} MiB), FAISS build {row['faiss_build_s']:.1f} s")
            header = ("search", "p50 ms", "p99 ms", "MiB", "recall@10")
            print(" | ".join(header))
            print(" | ".join("---" for _ in header))
            for name, label, recall in [("lance_flat", "Lance flat", 1.0), ("lance_flat_bbox", "Lance flat, bbox", 1.0),
                                        ("lance_ann", "Lance ANN", row["lance_ann_recall"]),
                                        ("lance_ann_bbox", "Lance ANN, bbox", row["lance_ann_bbox_recall"]),
                                        ("lance_auto_bbox", "Lance auto, bbox (exact over the 1 %)",
                                         row["lance_auto_bbox_recall"]),
                                        ("old_exact", "old exact (in memory)", row["old_exact_recall"]),
                                        ("faiss", "old FAISS IVFFlat", row["faiss_recall"])]:
                print(" | ".join([label, f"{row[name + '_p50_ms']:.2f}", f"{row[name + '_p99_ms']:.2f}",
                                  f"{row[name + '_mib']:.0f}", f"{recall:.3f}"]))
            print(f"float16 embeddings: recall@10 {row['float16_recall']:.3f} against float32; queries with a tie in "
                  f"the top 11: float16 {row['float16_tie_queries']}, float32 {row['float32_tie_queries']} of "
                  f"{NUM_QUERIES}; disk half of float32")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
