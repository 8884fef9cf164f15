"""Search index at scale: build rate on real images, and query latency / peak memory for 10k, 100k, 1M stored
embeddings, exact (chunked, shard by shard) vs FAISS (IVFFlat, nlist ~ sqrt(N)), measured in one run.

- Build: `build_index` over real RSSCN7 images with a random-weight ViT-B/32 (full size; weights do not change
  the cost) vs the baseline `encode_images` of the same images already in memory (ratio = index overhead).
- Store: clustered synthetic unit vectors (D=512, 1,000 Gaussian clusters: real embeddings are clustered, uniform
  random ones would make any inverted-file index look bad) written through `EmbeddingIndex.add`.
- Query: 32 queries near stored items, k=10; latency per batch of queries, median of `--repeats`; FAISS recall@10
  against the exact result; peak memory (growth of the resident set during the phase, sampled every 2 ms).

    python benchmarks/search_scale.py                       # 10k / 100k / 1M, prints the table
    python benchmarks/search_scale.py --sizes 10000 100000 --build-images 64
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
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
    """Child process: write `size` clustered embeddings, then time exact and FAISS queries."""
    import torch

    from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel
    from rclip_hf.inference.index import EmbeddingIndex

    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(NUM_CLUSTERS, DIM, generator=generator), dim=-1)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 1}
    owner = RemoteCLIPModel(RemoteCLIPConfig(text_config=tower, vision_config={**tower, "image_size": 32,
                                                                                 "patch_size": 16},
                                             projection_dim=DIM))  # only names the index's model (D = 512)
    index = EmbeddingIndex.open_or_create(Path(root) / f"synthetic-{size}", owner)
    picks = set(torch.randperm(size, generator=generator)[:NUM_QUERIES].tolist())
    picked = []
    start = time.perf_counter()
    for block_start in range(0, size, 65536):
        count = min(65536, size - block_start)
        labels = torch.randint(NUM_CLUSTERS, (count,), generator=generator)
        noise = torch.randn(count, DIM, generator=generator) / DIM**0.5
        block = torch.nn.functional.normalize(centres[labels] + 0.6 * noise, dim=-1)  # (count, D)
        picked += [block[i - block_start] for i in range(block_start, block_start + count) if i in picks]
        index.add([str(i) for i in range(block_start, block_start + count)], [""] * count,
                  list(range(block_start, block_start + count)), block)
        index.commit(shard_size=16384)
    write_s = time.perf_counter() - start
    noise = torch.randn(len(picked), DIM, generator=generator) / DIM**0.5
    queries = torch.nn.functional.normalize(torch.stack(picked) + 0.3 * noise, dim=-1)  # (Q, D)
    del block, noise, labels
    row = {"size": size, "write_s": write_s}

    def timed(backend: str) -> tuple[float, torch.Tensor, float]:
        with PeakRss() as memory:
            index.search_embeddings(queries, K, backend=backend)  # warm-up (page cache, FAISS file read)
            timings, positions = [], None
            for _ in range(repeats):
                begin = time.perf_counter()
                _, positions = index.search_embeddings(queries, K, backend=backend)
                timings.append(time.perf_counter() - begin)
        return statistics.median(timings) * 1000, positions, memory.growth_mib

    row["exact_ms"], exact, row["exact_mib"] = timed("exact")
    start = time.perf_counter()
    with PeakRss() as memory:
        index.build_faiss()
    row["faiss_build_s"], row["faiss_build_mib"] = time.perf_counter() - start, memory.growth_mib
    row["faiss_ms"], approx, row["faiss_mib"] = timed("faiss")
    row["faiss_recall"] = sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), approx.tolist())) / exact.numel()
    queue.put(row)


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--build-images", type=int, default=128, help="real images for the build rate")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="search-scale-"))
    try:
        folder = root / "images"
        for path in sorted((DATA / "rsscn7").rglob("*.jpg"))[: args.build_images]:
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / path.parent.name / path.name)
        build = _in_child(measure_build, args.build_images, str(folder), str(root / "real.index"))
        print(f"index build, {build['images']} real 400x400 RSSCN7 images, random-weight ViT-B/32, batch 32:")
        print(f"  build_index {build['build_img_s']:.1f} img/s vs encode_images in memory "
              f"{build['encode_img_s']:.1f} img/s (ratio {build['build_img_s'] / build['encode_img_s']:.2f})\n")
        rows = []
        for size in args.sizes:
            rows.append(_in_child(measure_store, size, str(root), args.repeats))
            shutil.rmtree(root / f"synthetic-{size}")
        print(f"query: {NUM_QUERIES} queries, k={K}, D={DIM}; median of {args.repeats}; exact = chunked_topk shard by "
              "shard (16,384 per shard); FAISS = IVFFlat nlist=sqrt(N), nprobe=32; MiB = peak RSS growth in the phase")
        header = ("stored", "write s", "exact ms", "exact MiB", "FAISS ms", "FAISS MiB", "speed-up",
                  "FAISS recall@10", "FAISS build s", "FAISS build MiB")
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
        for row in rows:
            print(" | ".join([f"{row['size']:,}", f"{row['write_s']:.1f}", f"{row['exact_ms']:.1f}",
                              f"{row['exact_mib']:.0f}", f"{row['faiss_ms']:.2f}", f"{row['faiss_mib']:.0f}",
                              f"{row['exact_ms'] / row['faiss_ms']:.1f}x", f"{row['faiss_recall']:.3f}",
                              f"{row['faiss_build_s']:.1f}", f"{row['faiss_build_mib']:.0f}"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
