"""p-Hash de-duplication: 64-bit perceptual hashes and exact near-duplicate search by multi-index segments.

The paper (RemoteCLIP, §III-B) hashes every image with a 64-bit p-Hash, splits each hash into N segments,
looks pairs up through N dictionaries (segment value -> images) and calls two images duplicates when their
Hamming distance is below 2. By the pigeonhole principle two hashes within Hamming distance ``d`` agree
exactly on at least one of ``d + 1`` disjoint segments, so with ``N = max_distance + 1`` segments the lookup
finds every pair: it is exact, not approximate.

Here each "dictionary" is a stable sort of the segment values: images with equal segment values are
adjacent, so every candidate pair of a group is ``(sorted[p], sorted[p + k])`` for some offset ``k``. The
offsets are walked one at a time over the positions whose group still reaches that far, so memory stays
``O(N)`` per step however large a group is (thousands of identical hashes of blank tiles included), and the
work is the number of candidate pairs. Every candidate is verified with ``np.bitwise_count(a ^ b)``; a pair
is emitted only in the first segment on which it agrees, so no pair is reported twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from pathlib import Path

import numpy as np
import scipy.fftpack
from PIL import Image, UnidentifiedImageError

from dataset_builders.lanczos import resize_gray, single_threaded_blas
from dataset_builders.records import Skipped
from rclip_hf.images import load_image
from rclip_hf.progress import progress_bar

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "HASH_BITS",
    "KeepFirstFilter",
    "hamming_distance",
    "near_duplicate_pairs",
    "near_test_images",
    "phash_image",
    "phash_images",
    "phash_value",
    "segment_layout",
    "select_duplicates",
]

logger = logging.getLogger(__name__)

HASH_BITS = 64
DEFAULT_MAX_DISTANCE = 1  # the paper: "distance < 2 means duplicate"
_MAX_IMAGES = 3_000_000_000  # pairs are encoded as i * N + j in int64
_CROSS_CHUNK = 1 << 20  # candidate pairs materialised at once by the train/test join
_PHASH_BITS_SIDE = 8  # imagehash.phash defaults: hash_size=8, highfreq_factor=4
_PHASH_SIZE = _PHASH_BITS_SIDE * 4


def phash_value(image: Image.Image) -> int:
    """64-bit p-Hash of a decoded image as a Python int, bit for bit ``int(str(imagehash.phash(image)), 16)``.

    The same steps as ``imagehash.phash`` (grayscale, 32x32 Lanczos, 2-D DCT-II, the 8x8 low frequencies
    against their median, row-major bits, first bit most significant) without its per-call overhead: the
    Lanczos resize is Pillow's arithmetic done by matrix products (``dataset_builders.lanczos``), the
    median of the 64 values is the mean of the two middle ones of a sort (what ``np.median`` computes) and the
    bits are packed with ``np.packbits`` instead of a bit string.
    """
    small = resize_gray(image.convert("L"), _PHASH_SIZE, _PHASH_SIZE)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(small, axis=0), axis=1)
    low = dct[:_PHASH_BITS_SIDE, :_PHASH_BITS_SIDE].ravel()
    middle = np.sort(low)[low.size // 2 - 1: low.size // 2 + 1]
    return int.from_bytes(np.packbits(low > (middle[0] + middle[1]) / 2).tobytes(), "big")


def phash_image(path: Path | str) -> int:
    """64-bit p-Hash of one image file as a Python int: ``phash_value`` of the file read by ``rclip_hf.images``,
    the rule the corpus decodes its images by, so a 16-bit or multi-band test image hashes as its corpus twin."""
    return phash_value(load_image(path))


def _phash_or_reason(path: str) -> tuple[int | None, str]:
    """(hash, "") or (None, reason) for one file; never raises for unreadable or corrupt images."""
    try:
        return phash_image(path), ""
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        return None, f"p-Hash: unreadable image: {type(error).__name__}: {error}"


def phash_images(paths: Sequence[Path], num_proc: int = 1) -> tuple[np.ndarray, list[Skipped]]:
    """p-Hashes of the readable images (in input order, unreadable ones left out) and a Skipped per unreadable one.

    Returns ``(hashes, skipped)``: ``hashes`` is ``(M,)`` ``np.uint64`` with ``M = len(paths) - len(skipped)``,
    one hash per readable path in the order of ``paths``. ``num_proc > 1`` hashes in a process pool.
    """
    if num_proc < 1:
        raise ValueError(f"phash_images: num_proc must be >= 1, got {num_proc}")
    names = [str(path) for path in paths]
    with single_threaded_blas():
        if num_proc == 1 or len(names) < 2:
            results: Iterator[tuple[int | None, str]] = map(_phash_or_reason, names)
            return _collect_hashes(names, progress_bar(results, total=len(names), desc="p-Hash", unit="img"))
        chunksize = max(1, min(64, len(names) // (4 * num_proc)))
        with ProcessPoolExecutor(max_workers=num_proc) as pool:
            results = pool.map(_phash_or_reason, names, chunksize=chunksize)
            return _collect_hashes(names, progress_bar(results, total=len(names), desc="p-Hash", unit="img"))


def _collect_hashes(names: list[str], results: Iterator[tuple[int | None, str]]) -> tuple[np.ndarray, list[Skipped]]:
    """Split per-file results into the hash array of readable files and the Skipped of the others."""
    hashes: list[int] = []
    skipped: list[Skipped] = []
    for name, (value, reason) in zip(names, results):
        if value is None:
            skipped.append(Skipped(path=name, reason=reason))
        else:
            hashes.append(value)
    if skipped:
        logger.warning("p-Hash: %d of %d images unreadable (recorded as skipped)", len(skipped), len(names))
    return np.array(hashes, dtype=np.uint64), skipped


def segment_layout(max_distance: int) -> list[tuple[int, int]]:
    """``max_distance + 1`` disjoint bit segments ``(shift, width)`` covering the 64 bits, widths differing by <= 1."""
    _check_distance(max_distance)
    count = max_distance + 1
    base, extra = divmod(HASH_BITS, count)
    widths = [base + 1 if index < extra else base for index in range(count)]
    shifts = np.concatenate([[0], np.cumsum(widths)[:-1]]).tolist()
    return [(int(shift), width) for shift, width in zip(shifts, widths)]


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance of two ``np.uint64`` arrays (broadcasting) as ``np.uint8``."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def _check_distance(max_distance: int) -> None:
    if not isinstance(max_distance, (int, np.integer)) or isinstance(max_distance, bool):
        raise TypeError(f"max_distance must be an int, got {type(max_distance).__name__} {max_distance!r}")
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"max_distance must be in [0, {HASH_BITS - 1}], got {max_distance}")


def _check_hashes(hashes: np.ndarray, name: str) -> np.ndarray:
    hashes = np.asarray(hashes)
    if hashes.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of np.uint64 hashes, got shape {hashes.shape}")
    if hashes.dtype != np.uint64:
        raise TypeError(f"{name} must have dtype uint64 (e.g. int(str(imagehash_value), 16)), got {hashes.dtype}")
    return hashes


def _segment_values(hashes: np.ndarray, shift: int, width: int) -> np.ndarray:
    """The ``width``-bit segment at ``shift`` of every hash, in the smallest unsigned dtype that holds it."""
    values = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
    dtype = np.uint16 if width <= 16 else np.uint32 if width <= 32 else np.uint64
    return values.astype(dtype)


def _agrees_earlier(xor: np.ndarray, layout: list[tuple[int, int]], segment: int) -> np.ndarray:
    """Mask of xor values that are zero on some segment before ``segment`` (pair already found there)."""
    agrees = np.zeros(xor.shape, dtype=bool)
    for shift, width in layout[:segment]:
        agrees |= (xor & np.uint64(((1 << width) - 1) << shift)) == 0
    return agrees


def _self_pairs_in_segment(hashes: np.ndarray, layout: list[tuple[int, int]], segment: int,
                           max_distance: int) -> np.ndarray:
    """Codes ``i * len(hashes) + j`` of the pairs ``i < j`` within ``max_distance`` whose FIRST exactly-equal
    segment is ``segment`` (1-D int64). The stable sort keeps each group in index order, so ``i < j``."""
    shift, width = layout[segment]
    values = _segment_values(hashes, shift, width)
    order = np.argsort(values, kind="stable")
    keys = values[order]
    sorted_hashes = hashes[order]
    size = keys.size
    # room[p] = positions from p to the end of its group: sorted positions p and p + k share a segment value
    # (are a candidate pair) iff room[p] > k
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    sizes = np.diff(np.concatenate([starts, [size]]))
    room = np.repeat(starts + sizes, sizes) - np.arange(size)
    # reaching[k] = number of positions p with room[p] > k, i.e. candidate pairs at offset k
    reaching = size - np.cumsum(np.bincount(room, minlength=2))
    found: list[np.ndarray] = []
    active: np.ndarray | None = None  # sparse mode: the positions still reaching the current offset
    for offset in range(1, reaching.size):
        if not reaching[offset]:
            break
        if active is None and 3 * reaching[offset] > size - offset:
            # dense mode: contiguous slices over all positions (most of the work on random hashes)
            xor = sorted_hashes[: size - offset] ^ sorted_hashes[offset:]
            first = np.flatnonzero((np.bitwise_count(xor) <= max_distance) & (room[: size - offset] > offset))
            xor = xor[first]
        else:
            # sparse mode: gather the few positions in groups larger than the offset (memory O(active))
            active = np.flatnonzero(room > offset) if active is None else active[room[active] > offset]
            xor = sorted_hashes[active] ^ sorted_hashes[active + offset]
            hit = np.bitwise_count(xor) <= max_distance
            first, xor = active[hit], xor[hit]
        if segment and first.size:
            keep = ~_agrees_earlier(xor, layout, segment)
            first = first[keep]
        if first.size:
            found.append(order[first] * size + order[first + offset])
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _decode_pairs(codes: np.ndarray, size: int) -> np.ndarray:
    """Pair codes ``i * size + j`` -> ``(P, 2)`` int64 rows ``(i, j)`` sorted lexicographically."""
    codes = np.sort(codes)
    first = codes // size
    return np.stack([first, codes - first * size], axis=1)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE) -> np.ndarray:
    """Every index pair ``i < j`` with Hamming distance ``<= max_distance``: exact, ``(P, 2)`` int64, sorted.

    ``hashes`` is a 1-D ``np.uint64`` array (one 64-bit p-Hash per image). Uses ``max_distance + 1`` segments
    (pigeonhole), so no pair is missed and none is reported twice; see the module docstring.
    """
    hashes = _check_hashes(hashes, "hashes")
    layout = segment_layout(max_distance)
    if hashes.size > _MAX_IMAGES:
        raise ValueError(f"near_duplicate_pairs: at most {_MAX_IMAGES} hashes (pair codes are int64), got {hashes.size}")
    if hashes.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    found = [_self_pairs_in_segment(hashes, layout, segment, max_distance) for segment in range(len(layout))]
    return _decode_pairs(np.concatenate(found), hashes.size)


class KeepFirstFilter:
    """Keep-first de-duplication of hashes that arrive in batches (in index order), e.g. while images are decoded.

    An image is removed when it lies within ``max_distance`` of an EARLIER KEPT image, and its kept twin is the
    lowest-index such image. So the first image of every group is kept, and in a chain ``a - b - c`` where only
    neighbours are within distance, ``b`` goes (twin of ``a``) and ``c`` stays (its only near neighbour ``b`` was
    removed): nothing is removed for resembling a removed image. Decisions depend only on earlier images, so any
    split into batches gives the same result as one batch of everything.
    """

    def __init__(self, max_distance: int = DEFAULT_MAX_DISTANCE) -> None:
        _check_distance(max_distance)
        self.max_distance = max_distance
        self._layout = segment_layout(max_distance)
        self._kept_hashes = np.empty(0, dtype=np.uint64)  # (K,) in index order
        self._kept_indices = np.empty(0, dtype=np.int64)  # (K,) their global indices, increasing
        self._seen = 0

    def add(self, hashes: np.ndarray) -> list[tuple[int, int, int]]:
        """Decide the next images: ``(removed index, kept index, distance)`` for each one removed, by removed index.

        Indices count every hash added so far (the first call's first hash is 0)."""
        batch = _check_hashes(hashes, "hashes")
        offset, self._seen = self._seen, self._seen + batch.size
        # twin among earlier batches: position (in the kept arrays) of the lowest-index kept image within
        # max_distance; K (one past the end) when there is none
        earlier_twin = np.full(batch.size, self._kept_hashes.size, dtype=np.int64)
        if self._kept_hashes.size and batch.size:
            parts = [part for segment in range(len(self._layout)) for part in
                     _cross_pairs_in_segment(batch, self._kept_hashes, self._layout, segment, self.max_distance)]
            if parts:
                rows, kept_positions = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
                np.minimum.at(earlier_twin, rows, kept_positions)  # kept positions follow index order
        has_earlier_twin = earlier_twin < self._kept_hashes.size
        # twins within the batch: near pairs (i, j), i < j, grouped by the later image j
        pairs = near_duplicate_pairs(batch, self.max_distance)
        by_later = np.lexsort((pairs[:, 0], pairs[:, 1]))
        earlier, later = pairs[by_later, 0], pairs[by_later, 1]
        bounds = np.flatnonzero(np.concatenate([[True], later[1:] != later[:-1], [True]])).tolist() if later.size else []
        within = {int(later[start]): earlier[start:stop] for start, stop in pairwise(bounds)}
        kept = np.ones(batch.size, dtype=bool)
        removed: list[tuple[int, int, int]] = []
        for index in sorted(set(np.flatnonzero(has_earlier_twin).tolist()) | set(within)):
            if has_earlier_twin[index]:  # earlier batches' indices are all lower than this batch's
                position = earlier_twin[index]
                twin, twin_hash = int(self._kept_indices[position]), self._kept_hashes[position]
            else:
                candidates = within[index][kept[within[index]]]  # earlier images of this batch still kept
                if not candidates.size:
                    continue
                twin, twin_hash = offset + int(candidates[0]), batch[candidates[0]]
            kept[index] = False
            removed.append((offset + index, twin, int(np.bitwise_count(batch[index] ^ twin_hash))))
        self._kept_hashes = np.concatenate([self._kept_hashes, batch[kept]])
        self._kept_indices = np.concatenate([self._kept_indices, offset + np.flatnonzero(kept)])
        return removed


def select_duplicates(hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[tuple[int, int, int]]:
    """Keep-first de-duplication of all ``hashes`` at once (see ``KeepFirstFilter``): ``(removed index, kept index,
    distance)`` for every removed image, by removed index."""
    return KeepFirstFilter(max_distance).add(hashes)


def _cross_pairs_in_segment(train: np.ndarray, test: np.ndarray, layout: list[tuple[int, int]], segment: int,
                            max_distance: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train idx, test idx, distance) arrays of the cross pairs within ``max_distance`` first agreeing on ``segment``.

    Candidates are generated in chunks of about ``_CROSS_CHUNK`` pairs, so memory stays bounded.
    """
    shift, width = layout[segment]
    test_values = _segment_values(test, shift, width)
    test_order = np.argsort(test_values, kind="stable")
    test_keys = test_values[test_order]
    train_values = _segment_values(train, shift, width)
    low = np.searchsorted(test_keys, train_values, side="left")
    counts = np.searchsorted(test_keys, train_values, side="right") - low
    matching = np.flatnonzero(counts)
    ends = np.cumsum(counts[matching])
    cuts = np.searchsorted(ends, np.arange(_CROSS_CHUNK, int(ends[-1]) if ends.size else 0, _CROSS_CHUNK))
    for chunk in np.split(matching, np.unique(cuts)):
        if not chunk.size:
            continue
        repeats = counts[chunk]
        train_index = np.repeat(chunk, repeats)
        starts = np.repeat(np.cumsum(repeats) - repeats, repeats)
        test_index = test_order[np.repeat(low[chunk], repeats) + np.arange(train_index.size) - starts]
        xor = train[train_index] ^ test[test_index]
        hit = np.bitwise_count(xor) <= max_distance
        if segment:
            hit[hit] = ~_agrees_earlier(xor[hit], layout, segment)
        yield train_index[hit], test_index[hit], np.bitwise_count(xor[hit])


def near_test_images(train_hashes: np.ndarray, test_hashes: np.ndarray,
                     max_distance: int = DEFAULT_MAX_DISTANCE) -> list[tuple[int, int, int]]:
    """Training images within ``max_distance`` of a test image: ``(train idx, test idx, distance)``, by train idx.

    Exact (same multi-index scheme as ``near_duplicate_pairs``). One entry per contaminated training image,
    naming its nearest test image (ties: the lowest test index). Used by the corpus builder's ``--exclude-near``.
    """
    train = _check_hashes(train_hashes, "train_hashes")
    test = _check_hashes(test_hashes, "test_hashes")
    layout = segment_layout(max_distance)
    parts = [part for segment in range(len(layout))
             for part in _cross_pairs_in_segment(train, test, layout, segment, max_distance)]
    if not parts:
        return []
    train_index, test_index, distance = (np.concatenate(column) for column in zip(*parts))
    if not train_index.size:
        return []
    order = np.lexsort((test_index, distance, train_index))
    train_index, test_index, distance = train_index[order], test_index[order], distance[order]
    first = np.flatnonzero(np.concatenate([[True], train_index[1:] != train_index[:-1]]))
    return list(zip(train_index[first].tolist(), test_index[first].tolist(), distance[first].tolist()))
