"""resize_gray: Pillow's 8-bit Lanczos resize, bit for bit, on every kind of size (down, up, tall, wide, tiny)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dataset_builders import lanczos
from dataset_builders.lanczos import resize_gray

rng = np.random.default_rng(7)
SIZES = sorted({(int(w), int(h)) for w, h in rng.integers(1, 1300, (120, 2))} | {
    (1, 1), (1, 500), (500, 1), (31, 32), (32, 32), (33, 33), (32, 900), (900, 32), (20, 20), (45, 700), (700, 45),
    (150, 150), (256, 256), (400, 400), (600, 600), (800, 800), (1000, 600), (2000, 300), (66, 2000)})


def pillow(image: Image.Image, width: int, height: int) -> np.ndarray:
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))


def test_the_fast_arithmetic_is_in_use_with_the_installed_pillow() -> None:
    assert lanczos._pillow_pass_order() in ("rule", "horizontal")


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_equals_pillow_on_random_and_extreme_pixels(width: int, height: int) -> None:
    noise = rng.integers(0, 256, (height, width), dtype=np.uint8)
    binary = (rng.random((height, width)) < 0.5).astype(np.uint8) * 255  # largest overshoots: clipping on both sides
    for out in ((32, 32), (17, 40)):
        resize_gray(Image.new("L", (width, height)), *out)  # meet the size: the weights are computed from now on
        for pixels in (noise, binary):
            image = Image.fromarray(pixels)
            assert np.array_equal(resize_gray(image, *out), pillow(image, *out)), (width, height, out)


def test_equals_pillow_on_a_real_photo(shared_data) -> None:
    with Image.open(next((shared_data / "dior" / "JPEGImages").glob("*.jpg"))) as photo:
        gray = photo.convert("L")
    for size in ((32, 32), (64, 48)):
        for _ in range(2):  # Pillow the first time the size is met, the matrix products the second time
            assert np.array_equal(resize_gray(gray, *size), pillow(gray, *size))


def test_weights_are_computed_only_for_sizes_met_before(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(lanczos, "_resize", lambda *args: calls.append(args[1:]) or np.zeros((32, 32), np.uint8))
    monkeypatch.setattr(lanczos, "_MET", set())
    for size in ((300, 200), (300, 200), (200, 300), (300, 201), (300, 201)):
        resize_gray(Image.new("L", size), 32, 32)
    assert calls == [(32, 32, False), (32, 32, False), (32, 32, False)]  # the 2nd, 3rd (300 and 200 met) and 5th


def test_pass_order_matters_on_the_probe() -> None:
    """The probe can tell Pillow's two pass orders apart (else its verdict would mean nothing)."""
    tall = np.random.default_rng(0).integers(0, 256, (700, 45), dtype=np.uint8)
    assert not np.array_equal(lanczos._resize(tall, 32, 32, True), lanczos._resize(tall, 32, 32, False))


def test_falls_back_to_pillow_when_its_arithmetic_is_not_reproduced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanczos, "_pillow_pass_order", lambda: None)
    monkeypatch.setattr(lanczos, "_resize", lambda *args: pytest.fail("the matrix path ran"))
    image = Image.fromarray(rng.integers(0, 256, (90, 70), dtype=np.uint8))
    assert np.array_equal(resize_gray(image, 32, 32), pillow(image, 32, 32))


def test_only_grayscale_images() -> None:
    with pytest.raises(ValueError, match="'L' image is needed, got mode 'RGB'"):
        resize_gray(Image.new("RGB", (40, 40)), 32, 32)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_workers_forked_in_single_threaded_blas_use_one_blas_thread() -> None:
    import multiprocessing

    before = _blas_threads()
    if max(before, default=1) < 2:
        pytest.skip("BLAS already runs one thread here (one core)")
    with lanczos.single_threaded_blas(), multiprocessing.get_context("fork").Pool(1) as pool:
        assert set(pool.apply(_blas_threads)) == {1}  # every BLAS library loaded (numpy's, scipy's)
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before  # restored in this process


def test_pixels_are_read_without_a_copy_or_copied_when_pillow_cannot_export(monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.fromarray(rng.integers(0, 256, (30, 50), dtype=np.uint8))
    view = lanczos._pixels(image)
    assert np.array_equal(view, np.asarray(image)) and view.shape == (30, 50) and not view.flags.owndata

    def no_export(*args, **kwargs):
        raise ValueError("image is in multiple blocks")

    monkeypatch.setattr(lanczos.pa, "array", no_export)
    assert np.array_equal(lanczos._pixels(image), np.asarray(image))
