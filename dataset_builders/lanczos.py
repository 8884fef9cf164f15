"""Pillow's Lanczos resize of 8-bit grayscale images (the step of ``imagehash.phash`` that costs the most),
computed bit for bit the same with float64 matrix products.

Pillow resizes in two passes (horizontal then vertical; since Pillow 13, vertical first when the height
shrinks more than twice as much as the width). Each output pixel of a pass is a fixed-point sum: the
normalised Lanczos weights are rounded to integers with 22 fractional bits, multiplied with the 8-bit
inputs, summed with ``2**21`` added, shifted right by 22 and clipped to 0..255. Every such sum is an integer
far below ``2**53``, so float64 arithmetic computes it exactly, whatever the order of the additions: the same
integer weights in a float64 matrix, applied by BLAS to bands of output pixels (the inputs a band reads are
contiguous) and blocks of rows, give Pillow's pixels exactly, with 2-4x less CPU time (one thread). The pass
order of the installed Pillow is found once by comparing with it on probe images; if neither order reproduces
it, ``resize_gray`` falls back to Pillow itself, as it does for sizes met for the first time (their weights
cost about as much as one resize).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
from PIL import Image
from threadpoolctl import threadpool_limits

__all__ = ["resize_gray", "single_threaded_blas"]

_PRECISION_BITS = 22  # Pillow's Resample.c: 32 - 8 - 2
_BAND = 8  # output pixels per matrix product: a band's inputs are 8 + 6 output-pixel spans wide
_BLOCK = 1 << 18  # input pixels converted to float64 and multiplied at a time (2 MiB: they stay in cache)
_SCRATCH = threading.local()
_MET: set[tuple[int, int]] = set()  # (input size, output size) pairs met so far by ``resize_gray``


def _lanczos(positions: np.ndarray) -> np.ndarray:
    """Pillow's ``lanczos_filter`` (``sinc(x) * sinc(x / 3)`` on [-3, 3), else 0) of each position, with the C
    library's ``sin`` (``math.sin``: numpy's vectorised sine may differ from it in the last bit)."""
    return np.where((-3.0 <= positions) & (positions < 3.0), _sinc(positions) * _sinc(positions / 3.0), 0.0)


def _sinc(positions: np.ndarray) -> np.ndarray:
    angles = positions * math.pi
    sines = np.fromiter(map(math.sin, angles.tolist()), dtype=np.float64, count=angles.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(positions == 0.0, 1.0, sines / angles)


@functools.lru_cache(maxsize=256)
def _bands(in_size: int, out_size: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """Pillow's fixed-point weights (``precompute_coeffs`` + ``normalize_coeffs_8bpc``) for ``in_size -> out_size``,
    as bands ``(first output, end output, first input, end input, (inputs, outputs) float64 weights)``."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    inv_filterscale = 1.0 / filterscale
    outputs = np.arange(out_size)
    centers = (outputs + 0.5) * scale
    firsts = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # C's (int): truncation toward zero
    counts = np.minimum((centers + support + 0.5).astype(np.int64), in_size) - firsts
    ends = np.cumsum(counts)
    owner = np.repeat(outputs, counts)  # the output pixel of each tap
    inputs = np.arange(ends[-1]) - np.repeat(ends - counts - firsts, counts)
    taps = _lanczos((inputs - centers[owner] + 0.5) * inv_filterscale)
    totals = np.array([np.cumsum(taps[end - count:end])[-1] if count else 0.0  # summed in order, as in C
                       for end, count in zip(ends.tolist(), counts.tolist())])
    taps = np.where(totals[owner] != 0.0, taps / np.where(totals == 0.0, 1.0, totals)[owner], taps)
    weights = np.zeros((in_size, out_size))
    weights[inputs, owner] = np.trunc(np.where(taps < 0, -0.5, 0.5) + taps * (1 << _PRECISION_BITS))
    bands = []
    for start in range(0, out_size, _BAND):
        block = weights[:, start:start + _BAND]
        used = np.flatnonzero(block.any(axis=1))
        low, high = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        bands.append((start, start + block.shape[1], low, high, np.ascontiguousarray(block[low:high])))
    return tuple(bands)


def _round_clip(sums: np.ndarray) -> np.ndarray:
    """Pillow's ``clip8``: (sum + 2**21) >> 22, clipped to 0..255 (in place, float64 holding integers)."""
    sums += 1 << (_PRECISION_BITS - 1)
    sums *= 1.0 / (1 << _PRECISION_BITS)
    np.floor(sums, out=sums)
    return np.clip(sums, 0, 255, out=sums)


def _horizontal(pixels: np.ndarray, out_width: int) -> np.ndarray:
    """(H, W) pixels (uint8 or float64 integers) -> (H, out_width) float64 integers 0..255."""
    result = np.empty((pixels.shape[0], out_width))
    bands = _bands(pixels.shape[1], out_width)
    step = max(1, _BLOCK // pixels.shape[1])  # rows per block
    scratch = _scratch(step * pixels.shape[1])
    for row in range(0, pixels.shape[0], step):
        block = pixels[row:row + step]
        rows = scratch[:block.size].reshape(block.shape)
        np.copyto(rows, block)
        for start, end, low, high, weights in bands:
            np.matmul(rows[:, low:high], weights, out=result[row:row + step, start:end])
    return _round_clip(result)


def _scratch(size: int) -> np.ndarray:
    """A float64 buffer of at least ``size`` values, kept per thread (no new memory for every image)."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _SCRATCH.buffer = np.empty(size)
    return buffer


def _vertical(pixels: np.ndarray, out_height: int) -> np.ndarray:
    """(H, W) pixels -> (out_height, W) float64 integers 0..255: the horizontal pass of the transpose."""
    return _horizontal(pixels.T, out_height).T


def _resize(pixels: np.ndarray, width: int, height: int, vertical_first: bool) -> np.ndarray:
    """Both passes in the given order (a pass whose size does not change is skipped, as in Pillow)."""
    in_height, in_width = pixels.shape
    result: np.ndarray = pixels
    if vertical_first:
        if in_height != height:
            result = _vertical(result, height)
        if in_width != width:
            result = _horizontal(result, width)
    else:
        if in_width != width:
            result = _horizontal(result, width)
        if in_height != height:
            result = _vertical(result, height)
    return result.astype(np.uint8)


def _vertical_first_rule(in_width: int, in_height: int, width: int, height: int) -> bool:
    """Pillow 13's rule: vertical pass first when the height shrinks more than twice as much as the width."""
    return in_height - height > 0 and in_height - height > (in_width - width) * 2


@functools.cache
def _pillow_pass_order() -> str | None:
    """"rule" (Pillow 13's order), "horizontal" (always horizontal first, Pillow < 13) or None (neither
    reproduces the installed Pillow: do not use this module's arithmetic), found on random probe images."""
    rng = np.random.default_rng(0)
    tall, square = rng.integers(0, 256, (700, 45), dtype=np.uint8), rng.integers(0, 256, (97, 131), dtype=np.uint8)
    pillow = [np.asarray(Image.fromarray(probe).resize((32, 32), Image.Resampling.LANCZOS)) for probe in (tall, square)]
    for order, vertical_first in (("rule", True), ("horizontal", False)):
        if (np.array_equal(_resize(tall, 32, 32, vertical_first), pillow[0])
                and np.array_equal(_resize(square, 32, 32, False), pillow[1])):
            return order
    return None


def _met_before(in_size: int, out_size: int) -> bool:
    """Whether a resize ``in_size -> out_size`` was met before (and note it). Computing the weights of a size
    costs about one Pillow resize, so they are computed only for sizes that recur (tiles of one dataset), and
    an image of a size met for the first time is resized by Pillow."""
    key = (in_size, out_size)
    if key in _MET:
        return True
    _MET.add(key)
    return False


def resize_gray(image: Image.Image, width: int, height: int) -> np.ndarray:
    """``np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))`` of an ``L`` image, bit for bit."""
    if image.mode != "L":
        raise ValueError(f"resize_gray: an 'L' image is needed, got mode {image.mode!r}")
    in_width, in_height = image.size
    order = _pillow_pass_order()
    met_before = [_met_before(in_width, width), _met_before(in_height, height)]
    if order is None or not all(met_before):
        return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))
    vertical_first = order == "rule" and _vertical_first_rule(in_width, in_height, width, height)
    return _resize(_pixels(image), width, height, vertical_first)


def _pixels(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 view of an ``L`` image's memory through Pillow's Arrow export (no copy), or a copy
    (``np.asarray``) where Pillow cannot export it (older Pillow, an image in several memory blocks)."""
    try:
        return pa.array(image).to_numpy(zero_copy_only=True).reshape(image.height, image.width)
    except (AttributeError, TypeError, ValueError, pa.ArrowException):
        return np.asarray(image)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread in this process while the block runs, and in the worker processes it forks
    meanwhile (they inherit the setting): the resize's products are small, so more BLAS threads cost CPU time
    without saving any, and a pool's processes already keep every core busy. Pillow's pass order is found
    first, so forked workers inherit that too. (Limiting each worker after the fork instead costs tens of
    milliseconds per worker, in OpenBLAS.)"""
    _pillow_pass_order()
    with threadpool_limits(limits=1, user_api="blas"):
        yield
