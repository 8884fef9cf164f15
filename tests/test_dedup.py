"""Tests of dataset_builders.dedup: p-Hash, exact near-duplicate pairs, keep-first selection, test-set guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dataset_builders.dedup import (
    KeepFirstFilter,
    hamming_distance,
    near_duplicate_pairs,
    near_test_images,
    phash_image,
    phash_images,
    phash_value,
    segment_layout,
    select_duplicates,
)


def brute_force_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All pairs i < j within max_distance by the full (N, N) distance matrix, sorted."""
    distances = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    first, second = np.nonzero(np.triu(distances <= max_distance, k=1))
    return np.stack([first, second], axis=1).astype(np.int64)


def flip_bits(value: np.uint64, count: int, rng: np.random.Generator) -> np.uint64:
    """``value`` with exactly ``count`` distinct bits flipped."""
    mask = 0
    for bit in rng.choice(64, size=count, replace=False):
        mask |= 1 << int(bit)
    return value ^ np.uint64(mask)


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    """3,000 random hashes with near-duplicates planted at every distance 0..12, chains and an identical group."""
    rng = np.random.default_rng(1234)
    hashes = rng.integers(0, 2**64, size=3000, dtype=np.uint64)
    position = 0
    for distance in range(13):
        for _ in range(25):
            hashes[position + 1] = flip_bits(hashes[position], distance, rng)
            position += 2
    for _ in range(20):  # chains a - b - c at distance 1 each
        hashes[position + 1] = flip_bits(hashes[position], 1, rng)
        hashes[position + 2] = flip_bits(hashes[position + 1], 1, rng)
        position += 3
    hashes[position:position + 40] = hashes[position]  # 40 identical hashes (blank tiles)
    hashes[position + 40:position + 60] = [flip_bits(hashes[position], 2, rng) for _ in range(20)]
    return rng.permutation(hashes)


def test_segment_layout_covers_64_bits_in_max_distance_plus_one_segments() -> None:
    assert segment_layout(0) == [(0, 64)]
    assert segment_layout(1) == [(0, 32), (32, 32)]
    assert segment_layout(4) == [(0, 13), (13, 13), (26, 13), (39, 13), (52, 12)]
    assert sum(width for _, width in segment_layout(12)) == 64


def test_near_duplicate_pairs_hand_checked() -> None:
    hashes = np.array([0b0000, 0b0001, 0b0011, 0b1111_0000, 0b0000, 2**63], dtype=np.uint64)
    np.testing.assert_array_equal(near_duplicate_pairs(hashes, 0), [[0, 4]])
    np.testing.assert_array_equal(near_duplicate_pairs(hashes), [[0, 1], [0, 4], [0, 5], [1, 2], [1, 4], [4, 5]])
    np.testing.assert_array_equal(near_duplicate_pairs(hashes, 2),
                                  [[0, 1], [0, 2], [0, 4], [0, 5], [1, 2], [1, 4], [1, 5], [2, 4], [4, 5]])


def test_near_duplicate_pairs_output_shape_and_dtype() -> None:
    pairs = near_duplicate_pairs(np.array([5, 5, 7], dtype=np.uint64), 1)
    assert pairs.shape == (3, 2) and pairs.dtype == np.int64
    assert near_duplicate_pairs(np.array([], dtype=np.uint64)).shape == (0, 2)
    assert near_duplicate_pairs(np.array([1], dtype=np.uint64)).shape == (0, 2)


@pytest.mark.parametrize("max_distance", [0, 1, 2, 4, 8, 12])
def test_near_duplicate_pairs_equals_brute_force(planted: np.ndarray, max_distance: int) -> None:
    expected = brute_force_pairs(planted, max_distance)
    found = near_duplicate_pairs(planted, max_distance)
    assert len(expected) >= 25 * (max_distance + 1)  # the planted pairs are there to be found
    np.testing.assert_array_equal(found, expected)


@settings(max_examples=60, deadline=None)
@given(pool=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6),
       picks=st.lists(st.tuples(st.integers(0, 5), st.lists(st.integers(0, 63), max_size=6)), max_size=60),
       max_distance=st.integers(0, 10))
def test_near_duplicate_pairs_property(pool: list[int], picks: list[tuple[int, list[int]]], max_distance: int) -> None:
    hashes = np.array([pool[index % len(pool)] ^ sum(1 << bit for bit in set(bits)) for index, bits in picks],
                      dtype=np.uint64)
    np.testing.assert_array_equal(near_duplicate_pairs(hashes, max_distance), brute_force_pairs(hashes, max_distance))


def test_near_duplicate_pairs_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="dtype uint64"):
        near_duplicate_pairs(np.array([1, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="1-D array"):
        near_duplicate_pairs(np.zeros((2, 2), dtype=np.uint64))
    with pytest.raises(ValueError, match=r"max_distance must be in \[0, 63\], got 64"):
        near_duplicate_pairs(np.zeros(2, dtype=np.uint64), 64)
    with pytest.raises(TypeError, match="max_distance must be an int"):
        near_duplicate_pairs(np.zeros(2, dtype=np.uint64), 1.5)


def test_select_duplicates_keep_first_and_chains() -> None:
    # 0 ~ 1 (d=1), 1 ~ 2 (d=1), 0 !~ 2 (d=2): 1 goes as twin of 0, 2 stays (its only near image 1 was removed)
    # 4 ~ 3 (d=0) and 5 ~ 3 (d=1): both go as twins of 3
    hashes = np.array([0b000, 0b001, 0b011, 0xF000, 0xF000, 0xF001, 0xFFFF_0000_0000], dtype=np.uint64)
    assert select_duplicates(hashes) == [(1, 0, 1), (4, 3, 0), (5, 3, 1)]
    assert select_duplicates(hashes, 0) == [(4, 3, 0)]
    assert select_duplicates(hashes, 2) == [(1, 0, 1), (2, 0, 2), (4, 3, 0), (5, 3, 1)]
    assert select_duplicates(np.array([7, 2**50], dtype=np.uint64)) == []


def test_select_duplicates_invariants(planted: np.ndarray) -> None:
    for max_distance in (1, 4):
        removed = select_duplicates(planted, max_distance)
        gone = {index for index, _, _ in removed}
        kept = np.array(sorted(set(range(planted.size)) - gone))
        assert brute_force_pairs(planted[kept], max_distance).size == 0  # kept images are pairwise distinct
        for index, twin, distance in removed:
            assert twin < index and twin not in gone
            assert distance == int(hamming_distance(planted[index], planted[twin])) <= max_distance
        assert [index for index, _, _ in removed] == sorted(gone)


def keep_first_reference(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """Keep-first by definition: each image against every earlier kept image, lowest index first."""
    kept: list[int] = []
    removed = []
    for index in range(hashes.size):
        distances = hamming_distance(hashes[kept], hashes[index]) if kept else np.empty(0)
        near = np.flatnonzero(distances <= max_distance)
        if near.size:
            removed.append((index, kept[near[0]], int(distances[near[0]])))
        else:
            kept.append(index)
    return removed


@pytest.mark.parametrize("max_distance", [1, 4])
def test_keep_first_filter_in_batches_equals_the_definition(planted: np.ndarray, max_distance: int) -> None:
    expected = keep_first_reference(planted, max_distance)
    assert len(expected) >= 100  # planted pairs, chains and identical tiles are found
    assert select_duplicates(planted, max_distance) == expected
    for batch_size in (1, 7, 500):
        deduplicator = KeepFirstFilter(max_distance)
        removed = [entry for start in range(0, planted.size, batch_size)
                   for entry in deduplicator.add(planted[start:start + batch_size])]
        assert removed == expected


def test_near_test_images_hand_checked() -> None:
    # distances train x test: [[4, 1, 0], [6, 3, 2], [1, 2, 3], [0, 3, 4]]; nearest test image wins
    train = np.array([0b0000, 0b1100_0000, 0b0111, 0b1111], dtype=np.uint64)
    test = np.array([0b1111, 0b0001, 0b0000], dtype=np.uint64)
    assert near_test_images(train, test) == [(0, 2, 0), (2, 0, 1), (3, 0, 0)]
    assert near_test_images(train, test, 2) == [(0, 2, 0), (1, 2, 2), (2, 0, 1), (3, 0, 0)]
    assert near_test_images(train, np.array([], dtype=np.uint64)) == []
    with pytest.raises(TypeError, match="test_hashes must have dtype uint64"):
        near_test_images(train, [1, 2])


@pytest.mark.parametrize("max_distance", [0, 1, 4, 12])
def test_near_test_images_equals_brute_force(planted: np.ndarray, max_distance: int) -> None:
    train, test = planted[:2500], planted[2500:]
    distances = np.bitwise_count(train[:, None] ^ test[None, :]).astype(np.int64)
    nearest, best = distances.argmin(axis=1), distances.min(axis=1)
    expected = [(index, int(nearest[index]), int(best[index])) for index in np.flatnonzero(best <= max_distance)]
    assert near_test_images(train, test, max_distance) == expected


@pytest.fixture(scope="module")
def image_files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four real RSSCN7 JPEGs, a lossless PNG copy of the first, a corrupt and a truncated file."""
    folder = tmp_path_factory.mktemp("phash")
    sources = sorted((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))[:2] + \
        sorted((shared_data / "rsscn7" / "gParking").glob("*.jpg"))[:2]
    files = [Path(shutil.copy(source, folder / source.name)) for source in sources]
    Image.open(files[0]).save(folder / "copy.png")
    (folder / "corrupt.jpg").write_bytes(b"this is not an image")
    (folder / "truncated.jpg").write_bytes(files[2].read_bytes()[:200])
    return [*files, folder / "copy.png", folder / "corrupt.jpg", folder / "truncated.jpg"]


def test_phash_images_matches_imagehash_and_skips_unreadable(image_files: list[Path]) -> None:
    hashes, skipped = phash_images(image_files)
    expected = [int(str(imagehash.phash(Image.open(path))), 16) for path in image_files[:5]]
    assert hashes.dtype == np.uint64 and hashes.shape == (5,)
    assert hashes.tolist() == expected
    assert [item.path for item in skipped] == [str(image_files[5]), str(image_files[6])]
    assert all(item.reason.startswith("p-Hash: unreadable image") for item in skipped)
    assert select_duplicates(hashes) == [(4, 0, 0)]  # the lossless copy is the duplicate of its original


def test_phash_images_in_parallel_equals_serial(image_files: list[Path]) -> None:
    serial, serial_skipped = phash_images(image_files, num_proc=1)
    parallel, parallel_skipped = phash_images(image_files, num_proc=2)
    np.testing.assert_array_equal(parallel, serial)
    assert parallel_skipped == serial_skipped
    with pytest.raises(ValueError, match="num_proc must be >= 1, got 0"):
        phash_images(image_files, num_proc=0)


def imagehash_value(image: Image.Image) -> int:
    """The reference: ``imagehash.phash`` as a Python int."""
    return int(str(imagehash.phash(image)), 16)


def test_phash_value_equals_imagehash_on_real_images(shared_data: Path) -> None:
    """The one p-Hash of the project (dedup and corpus builder) is bit for bit ``imagehash.phash``, on real
    images of every sample source and mode (JPEG tiles, RGBA patch, large PNG, masks) and their RGB decodes."""
    files = sorted((shared_data / "aid150").rglob("*.jpg"))[::40] + sorted((shared_data / "rsscn7").rglob("*.jpg"))[::25]
    files += [*sorted((shared_data / "dota_split").rglob("*.png")), *sorted((shared_data / "isaid").rglob("*.png")),
              *sorted((shared_data / "dior").rglob("*.jpg")), shared_data / "remoteclip" / "airport.jpg"]
    modes = set()
    for path in files:
        with Image.open(path) as image:
            modes.add(image.mode)
            assert phash_value(image) == imagehash_value(image), path
            rgb = image.convert("RGB")
            assert phash_value(rgb) == imagehash_value(rgb), path
        assert phash_image(path) == imagehash_value(Image.open(path)), path
    assert len(files) > 40 and {"RGB", "RGBA"} <= modes


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 200), height=st.integers(1, 200), mode=st.sampled_from(["RGB", "L", "RGBA", "P"]),
       seed=st.integers(0, 2**32 - 1), smooth=st.booleans())
def test_phash_value_equals_imagehash_on_random_images(width: int, height: int, mode: str, seed: int,
                                                         smooth: bool) -> None:
    """Any size (1 pixel wide included), any mode, noise or smooth gradients (many near-median DCT values)."""
    rng = np.random.default_rng(seed)
    if smooth:
        ramp = np.add.outer(np.linspace(0, 255, height), np.linspace(0, rng.uniform(0, 255), width)) / 2
        pixels = np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)
    else:
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    assert phash_value(image) == imagehash_value(image)


def test_phash_value_of_flat_images() -> None:
    """A flat image has only a DC coefficient: the median of the 64 low frequencies is 0, so only the first
    (most significant) bit can be set, and it is when the image is not black."""
    for value, expected in ((0, 0), (128, 1 << 63), (255, 1 << 63)):
        image = Image.new("RGB", (40, 30), (value,) * 3)
        assert phash_value(image) == imagehash_value(image) == expected
