"""ShardWriter: image cells from bytes or files, row groups bounded by rows and bytes, content-addressed names."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import xxhash

from dataset_builders.hf_folder import ImageFile, ShardWriter

FEATURES = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})


def image_file(tmp_path: Path, name: str, size: int) -> ImageFile:
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    return ImageFile(str(path), f"source/{name}", size)


def test_cells_from_files_bytes_and_nulls_are_stored_exactly(tmp_path: Path) -> None:
    first, second = image_file(tmp_path, "a.png", 1000), image_file(tmp_path, "b.jpg", 77)
    rows = [{"image": first, "label": 0}, {"image": {"bytes": b"raw", "path": "c.png"}, "label": 1},
            {"image": {"bytes": None, "path": "only/a/path.png"}, "label": 2}, {"image": None, "label": 3},
            {"image": second, "label": 4}]
    writer = ShardWriter(tmp_path / "out", "train", FEATURES, rows_per_batch=3)
    for row in rows:
        writer.write(row)
    (shard,) = writer.close()
    stored = pq.read_table(shard).to_pylist()
    assert [row["label"] for row in stored] == [0, 1, 2, 3, 4]
    assert stored[0]["image"] == {"bytes": Path(first.file).read_bytes(), "path": "source/a.png"}
    assert stored[1]["image"] == {"bytes": b"raw", "path": "c.png"}
    assert stored[2]["image"] == {"bytes": None, "path": "only/a/path.png"}
    assert stored[3]["image"] is None
    assert stored[4]["image"] == {"bytes": Path(second.file).read_bytes(), "path": "source/b.jpg"}
    assert pq.ParquetFile(shard).metadata.num_row_groups == 2  # 3 rows, then 2
    assert datasets.load_dataset("parquet", data_files=str(shard), split="train").features == FEATURES


def test_row_groups_are_bounded_by_image_bytes_and_rows_written_counts_them(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "out", "train", FEATURES, max_batch_bytes=2500)
    for index in range(7):
        writer.write({"image": image_file(tmp_path, f"{index}.png", 1000), "label": index})
        assert writer.rows_written == 3 * ((index + 1) // 3)  # a row group every 3 rows (3000 bytes >= 2500)
    (shard,) = writer.close()
    metadata = pq.ParquetFile(shard).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [3, 3, 1]
    assert writer.rows_written == writer.num_rows == 7


def test_shard_names_carry_the_digest_of_the_shards_content(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "out", "test", FEATURES, max_shard_bytes=2500, rows_per_batch=2)
    for index in range(9):
        writer.write({"image": image_file(tmp_path, f"{index}.png", 600 + index), "label": index})
    shards = writer.close()
    assert len(shards) >= 3
    digest = xxhash.xxh3_128(b"".join(path.read_bytes() for path in shards)).hexdigest()[:12]
    assert [path.name for path in shards] == [f"test-{i:05d}-of-{len(shards):05d}-{digest}.parquet"
                                              for i in range(len(shards))]
    assert sum(pq.ParquetFile(path).metadata.num_rows for path in shards) == 9


def test_an_empty_split_gets_one_empty_named_shard(tmp_path: Path) -> None:
    (shard,) = ShardWriter(tmp_path / "out", "validation", FEATURES).close()
    assert shard.name.endswith(xxhash.xxh3_128(shard.read_bytes()).hexdigest()[:12] + ".parquet")
    assert pq.read_table(shard).num_rows == 0


def test_a_file_that_changed_size_is_an_error_naming_it(tmp_path: Path) -> None:
    cell = image_file(tmp_path, "a.png", 100)
    Path(cell.file).write_bytes(b"shorter")
    writer = ShardWriter(tmp_path / "out", "train", FEATURES)
    writer.write({"image": cell, "label": 0})
    with pytest.raises(OSError, match="a.png: not 100 bytes long"):
        writer.close()
