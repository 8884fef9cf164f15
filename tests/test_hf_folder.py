"""ShardWriter: image cells from bytes or files, row groups bounded by rows and bytes, content-addressed names."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import datasets.config
import pyarrow.parquet as pq
import pytest
import xxhash

from dataset_builders.hf_folder import ImageFile, ShardWriter, card_metadata, card_text, size_category

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


def test_shards_are_written_as_datasets_writes_parquet(tmp_path: Path) -> None:
    """Content-defined chunking recorded as datasets records it, the page index written, image bytes PLAIN."""
    writer = ShardWriter(tmp_path / "out", "train", FEATURES, rows_per_batch=2)
    for index in range(5):
        writer.write({"image": image_file(tmp_path, f"{index}.png", 3000), "label": index})
    (shard,) = writer.close()
    metadata = pq.ParquetFile(shard).metadata
    assert json.loads(metadata.metadata[b"content_defined_chunking"]) == datasets.config.DEFAULT_CDC_OPTIONS
    columns = [metadata.row_group(0).column(i) for i in range(metadata.num_columns)]
    assert all(column.has_offset_index for column in columns)
    image_bytes = next(column for column in columns if column.path_in_schema == "image.bytes")
    assert image_bytes.compression == "UNCOMPRESSED" and not image_bytes.is_stats_set
    assert next(column for column in columns if column.path_in_schema == "label").is_stats_set
    plain = ShardWriter(tmp_path / "plain", "train", FEATURES, content_defined_chunking=False)
    plain.write({"image": image_file(tmp_path, "x.png", 10), "label": 0})
    assert b"content_defined_chunking" not in (pq.ParquetFile(plain.close()[0]).metadata.metadata or {})


def test_card_metadata_splits_sizes_and_checks(tmp_path: Path) -> None:
    shards = {}
    for split, count in (("train", 3), ("test", 2)):
        writer = ShardWriter(tmp_path, split, FEATURES)
        for index in range(count):
            writer.write({"image": image_file(tmp_path, f"{split}{index}.png", 500), "label": index})
        shards[split] = writer.close()
    metadata = card_metadata(shards, tmp_path, FEATURES, pretty_name="demo")
    assert list(metadata)[:3] == ["pretty_name", "language", "size_categories"]
    assert metadata["language"] == ["en"] and metadata["size_categories"] == ["n<1K"]
    splits = metadata["dataset_info"]["splits"]
    assert [(split["name"], split["num_examples"]) for split in splits] == [("train", 3), ("test", 2)]
    assert all(split["num_bytes"] >= 500 * count for split, count in zip(splits, (3, 2)))
    assert metadata["dataset_info"]["download_size"] == sum(p.stat().st_size for paths in shards.values() for p in paths)
    assert metadata["configs"][0]["data_files"][1] == {"split": "test", "path": [shards["test"][0].name.join(["data/", ""])]}
    assert [size_category(n) for n in (999, 1000, 99_999, 2_000_000, 10**10)] == [
        "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M", "n>1B"]
    with pytest.raises(ValueError, match=r"task_categories \['text-to-image-retrieval'\] are not Hub tasks"):
        card_text({"task_categories": ["image-to-text", "text-to-image-retrieval"]}, "body")
    with pytest.raises(ValueError, match="license 'other' needs license_name and license_link"):
        card_text({"license": "other", "license_name": "x"}, "body")
    assert card_text({"license": "mit", "task_categories": ["text-retrieval"]}, "# t").endswith("---\n\n# t\n")
