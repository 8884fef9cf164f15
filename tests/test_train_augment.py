"""The fast input path of training: uint8 crops decoded at reduced size, the same augmentation law as the PIL
reference (fixed seeds and statistically), token batches, and normalisation on the device."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms.v2 import functional as tv_functional

REPO_ROOT = Path(__file__).resolve().parents[1]

import rclip_hf
from training_scripts.training import augment as augment_module
from training_scripts.training.augment import TrainAugmentation, rgb_tensor
from training_scripts.training.data import PairCollator, PixelNormalizer, stored_image

#: PIL transposes of the reference, as in the paper's augmentation.
ROTATIONS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


def reference_augment(augment: TrainAugmentation, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Today's (before the fast path) augmentation: full decode, crop + bicubic resize, flip, rotation, in PIL."""
    image = image.convert("RGB")
    left, top, width, height = augment.crop_box(image.width, image.height, rng)
    image = image.resize((augment.size, augment.size), Image.Resampling.BICUBIC,
                         box=(left, top, left + width, top + height))
    if augment.horizontal_flip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if augment.rotation and (transpose := ROTATIONS[int(rng.integers(0, 4))]) is not None:
        image = image.transpose(transpose)
    return np.array(image).transpose(2, 0, 1)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def coordinate_image(side: int) -> Image.Image:
    """R = x / (side / 256), G = y / (side / 256), B = 0: each pixel tells where it came from."""
    ramp = (np.arange(side) * 256 // side).astype(np.uint8)
    pixels = np.zeros((side, side, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1] = ramp[None, :], ramp[:, None]
    return Image.fromarray(pixels)


def geometry(crop: torch.Tensor, side: int) -> tuple[float, float, tuple[bool, int, int]]:
    """(crop width, crop height) in source pixels and the orientation (x along columns?, sign of x, sign of y),
    recovered from an augmented `coordinate_image`."""
    red, green = crop[0].double(), crop[1].double()
    size = crop.shape[-1]
    x_cols, x_rows = float((red[:, -1] - red[:, 0]).mean()), float((red[-1] - red[0]).mean())
    y_cols, y_rows = float((green[:, -1] - green[:, 0]).mean()), float((green[-1] - green[0]).mean())
    x_on_cols = abs(x_cols) > abs(x_rows)
    dx, dy = (x_cols, y_rows) if x_on_cols else (x_rows, y_cols)
    per_level = side / 256 * size / (size - 1)  # source pixels per level, between the first and last pixel centre
    return abs(dx) * per_level, abs(dy) * per_level, (x_on_cols, int(np.sign(dx)), int(np.sign(dy)))


def expected_orientation(seed: int, augment: TrainAugmentation, side: int) -> tuple[bool, int, int]:
    """The orientation the generator's flip and rotation draws give, replayed on index grids with numpy."""
    rng = np.random.default_rng(seed)
    augment.crop_box(side, side, rng)
    xs, ys = np.meshgrid(np.arange(4.0), np.arange(4.0))
    if rng.random() < 0.5:
        xs, ys = np.fliplr(xs), np.fliplr(ys)
    turns = int(rng.integers(0, 4))  # PIL ROTATE_90 is counter-clockwise, as np.rot90
    xs, ys = np.rot90(xs, turns), np.rot90(ys, turns)
    x_on_cols = abs(xs[0, -1] - xs[0, 0]) > 0
    dx = xs[0, -1] - xs[0, 0] if x_on_cols else xs[-1, 0] - xs[0, 0]
    dy = ys[-1, 0] - ys[0, 0] if x_on_cols else ys[0, -1] - ys[0, 0]
    return bool(x_on_cols), int(np.sign(dx)), int(np.sign(dy))


def test_output_is_a_seeded_uint8_tensor_of_the_model_size():
    image = Image.fromarray(np.arange(80 * 60 * 3, dtype=np.uint8).reshape(60, 80, 3) % 251)
    augment = TrainAugmentation(size=32, scale=(0.5, 1.0))
    first = augment(image, np.random.default_rng(7))
    assert first.shape == (3, 32, 32) and first.dtype == torch.uint8
    assert torch.equal(first, augment(image, np.random.default_rng(7)))
    assert len({augment(image, np.random.default_rng(seed)).numpy().tobytes() for seed in range(8)}) > 1


def test_rotation_only_gives_the_four_right_angles():
    image = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4))
    augment = TrainAugmentation(size=4, scale=(1.0, 1.0), ratio=(1.0, 1.0), horizontal_flip=False)
    seen = {augment(image, np.random.default_rng(seed))[0].numpy().tobytes() for seed in range(40)}
    pixels = np.asarray(image)
    assert seen == {np.rot90(pixels, turns).tobytes() for turns in range(4)}


def torchvision_augment(augment: TrainAugmentation, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
    """The same draws through torchvision's tensor ops: `resized_crop` (antialiased bicubic), `hflip`, `rot90`."""
    pixels = tv_functional.pil_to_tensor(image.convert("RGB"))
    left, top, width, height = augment.crop_box(image.width, image.height, rng)
    pixels = tv_functional.resized_crop(pixels, top, left, height, width, [augment.size, augment.size],
                                        tv_functional.InterpolationMode.BICUBIC, antialias=True)
    if augment.horizontal_flip and rng.random() < 0.5:
        pixels = tv_functional.hflip(pixels)
    return torch.rot90(pixels, int(rng.integers(0, 4)), dims=(1, 2)) if augment.rotation else pixels


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_non_jpeg_equals_torchvision_exactly_and_the_pil_reference_closely_on_fixed_seeds(shared_data, fmt):
    image = Image.open(next((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))).convert("RGB")
    data = encoded(image, fmt, lossless=True) if fmt == "WEBP" else encoded(image, fmt)
    augment = TrainAugmentation(size=48, scale=(0.3, 1.0))
    for seed in range(10):
        fast = augment(Image.open(io.BytesIO(data)), np.random.default_rng(seed))
        torchvision = torchvision_augment(augment, Image.open(io.BytesIO(data)), np.random.default_rng(seed))
        assert torch.equal(fast, torchvision), seed
        reference = reference_augment(augment, Image.open(io.BytesIO(data)), np.random.default_rng(seed))
        difference = np.abs(fast.numpy().astype(int) - reference.astype(int))
        # PIL's box resize reads past the crop's edges, a crop-then-resize does not: the interior agrees
        assert difference[:, 2:-2, 2:-2].max() <= 2 and difference.mean() < 0.5, (seed, difference.max(),
                                                                                  difference.mean())


def test_jpeg_is_decoded_at_reduced_size_and_stays_close_to_the_full_decode(shared_data):
    path = next((shared_data / "rsscn7" / "fResident").glob("*.jpg"))  # 400 x 400 JPEG
    augment = TrainAugmentation(size=64)
    differences = []
    for seed in range(10):
        lazy = Image.open(path)
        fast = augment(lazy, np.random.default_rng(seed))
        assert lazy.size == (100, 100)  # crops of >= 0.9 of 400 px hold 64 px at 1/4 scale: decoded at 100 x 100
        reference = reference_augment(augment, Image.open(path), np.random.default_rng(seed))
        differences.append(np.abs(fast.numpy().astype(int) - reference.astype(int)).mean())
    assert max(differences) < 3.0, differences  # mean absolute difference in 8-bit levels
    small = Image.open(path)
    TrainAugmentation(size=224)(small, np.random.default_rng(0))
    assert small.size == (400, 400)  # no reduction when the crop would hold fewer than 224 px


def test_jpeg_crop_geometry_and_orientation_match_the_draws_on_fixed_seeds():
    side = 1024
    data = encoded(coordinate_image(side), "JPEG", quality=100, subsampling=0)
    augment = TrainAugmentation(size=32, scale=(0.2, 1.0))
    for seed in range(12):
        lazy = Image.open(io.BytesIO(data))
        crop = augment(lazy, np.random.default_rng(seed))
        assert lazy.size[0] < side  # decoded at reduced size
        _, _, width, height = augment.crop_box(side, side, np.random.default_rng(seed))
        got_width, got_height, orientation = geometry(crop, side)
        assert orientation == expected_orientation(seed, augment, side), seed
        assert abs(got_width - width) < 0.03 * side and abs(got_height - height) < 0.03 * side, (seed, width, height,
                                                                                                got_width, got_height)


def test_same_distribution_as_the_reference_augmentation():
    side, samples = 512, 300
    data = encoded(coordinate_image(side), "JPEG", quality=100, subsampling=0)
    augment = TrainAugmentation(size=24, scale=(0.2, 1.0))
    fast = [geometry(augment(Image.open(io.BytesIO(data)), np.random.default_rng(seed)), side)
            for seed in range(samples)]
    image = Image.open(io.BytesIO(data)).convert("RGB")
    reference = [geometry(torch.from_numpy(reference_augment(augment, image, np.random.default_rng(seed))), side)
                 for seed in range(10_000, 10_000 + samples)]  # other seeds: two independent samples of each law
    for measure in (lambda w, h: w * h / side**2, lambda w, h: np.log(w / h)):  # crop area fraction, log aspect
        p_value = stats.ks_2samp([measure(w, h) for w, h, _ in fast], [measure(w, h) for w, h, _ in reference]).pvalue
        assert p_value > 1e-3, p_value
    orientations = sorted({o for *_, o in fast} | {o for *_, o in reference})
    assert len(orientations) == 8  # flips x rotations: the 8 symmetries of the square
    table = [[sum(o == key for *_, o in sample) for key in orientations] for sample in (fast, reference)]
    assert stats.chi2_contingency(table).pvalue > 1e-3
    assert stats.chisquare(table[0]).pvalue > 1e-3  # each symmetry with probability 1/8


def test_stored_image_gives_the_stored_bytes_and_decodes_path_only_cells(tmp_path):
    image = Image.new("RGB", (40, 30), (10, 20, 30))
    data = encoded(image, "JPEG")
    assert stored_image({"bytes": data, "path": "x.jpg"}) is data
    image.save(tmp_path / "y.png")
    assert stored_image({"bytes": None, "path": str(tmp_path / "y.png")}).getpixel((0, 0)) == (10, 20, 30)


def sixteen_bit_png(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of (H, W, 3) uint16 `pixels` (PIL writes none: OpenCV does)."""
    import cv2

    return cv2.imencode(".png", pixels[..., ::-1])[1].tobytes()


def test_rgb_jpeg_and_png_bytes_decode_with_torchcodec_to_pils_pixels_and_the_rest_with_pil(shared_data, monkeypatch):
    scene = Image.open(shared_data / "dota" / "images" / "P1888.png").convert("RGB").crop((0, 0, 300, 200))
    rng = np.random.default_rng(0)
    cases = {  # name: (stored bytes, TorchCodec's pixels used?)
        "released JPEG": ((next((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))).read_bytes(), True),
        "JPEG q95 4:4:4": (encoded(scene, "JPEG", quality=95, subsampling=0), True),
        "JPEG 4:2:0": (encoded(scene, "JPEG", quality=75), True),
        "RGB PNG": (encoded(scene, "PNG"), True),
        "interlaced PNG": (encoded(scene, "PNG", interlace=1), True),
        "grey JPEG": (encoded(scene.convert("L"), "JPEG"), False),
        "RGBA PNG": (encoded(scene.convert("RGBA"), "PNG"), False),
        "palette PNG": (encoded(scene.convert("P"), "PNG"), False),
        "16-bit PNG": (sixteen_bit_png(rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)), False),
        "WebP": (encoded(scene, "WEBP", lossless=True), False),
    }
    decoded = []  # the tensors TorchCodec returned

    def spy(decoder):
        return lambda *args, **kwargs: decoded.append(decoder(*args, **kwargs)) or decoded[-1]

    for name, decoder in augment_module.TORCHCODEC_DECODERS.items():
        monkeypatch.setitem(augment_module.TORCHCODEC_DECODERS, name, spy(decoder))
    for name, (data, by_torchcodec) in cases.items():
        decoded.clear()
        pixels = rgb_tensor(Image.open(io.BytesIO(data)), data)
        assert any(tensor is pixels for tensor in decoded) == by_torchcodec, name
        expected = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
        assert pixels.dtype == torch.uint8 and np.array_equal(pixels.permute(1, 2, 0).numpy(), expected), name
        assert pixels.permute(1, 2, 0).is_contiguous()  # HWC in memory: a crop of it resizes channels-last
        augment = TrainAugmentation(size=48, scale=(0.3, 1.0))
        for seed in range(3):  # the augmentation of the bytes equals that of the PIL image, draw for draw
            assert torch.equal(augment(data, np.random.default_rng(seed)),
                               augment(Image.open(io.BytesIO(data)), np.random.default_rng(seed))), (name, seed)


def test_collated_batch_normalised_on_the_device_equals_the_processor():
    processor = rclip_hf.build_processor(32)
    rng = np.random.default_rng(0)
    crops = [torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)) for _ in range(3)]
    captions = ["a plane.", "Many small vehicles at the edge of the picture.", "a storage tank"]
    batch = PairCollator(processor.tokenizer)(list(zip(crops, captions)))
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape == (3, 3, 32, 32)
    expected = processor(text=captions, images=[Image.fromarray(crop.permute(1, 2, 0).numpy()) for crop in crops],
                         return_tensors="pt", padding="longest")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    normalize = PixelNormalizer(processor.image_processor.image_mean, processor.image_processor.image_std)
    pixels = normalize(batch["pixel_values"])
    assert pixels.dtype == torch.float32
    torch.testing.assert_close(pixels, expected["pixel_values"], atol=1e-5, rtol=0)


def test_a_batch_is_fetched_with_one_read_and_equals_the_pairs_fetched_one_by_one(shared_data):
    import datasets

    from training_scripts.training.data import CaptionPairDataset

    paths = sorted((shared_data / "rsscn7" / "aGrass").glob("*.jpg"))[:5]
    corpus = datasets.Dataset.from_dict(
        {"image": [str(path) for path in paths], "captions": [[f"grass {i}", f"a field {i}"] for i in range(5)]},
        features=datasets.Features({"image": datasets.Image(), "captions": datasets.List(datasets.Value("string"))}))
    pairs = CaptionPairDataset(corpus, TrainAugmentation(size=32), seed=3)
    keys = [(4, 1), (0, 1), (2, 7), (4, 2)]
    batched = pairs.__getitems__(keys)
    single = [pairs[key] for key in keys]
    assert [caption for _, caption in batched] == [caption for _, caption in single]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batched, single))
    assert not torch.equal(batched[0][0], batched[3][0])  # the same row in another epoch: other draws
    loader = torch.utils.data.DataLoader(pairs, batch_size=4, sampler=keys, collate_fn=list)
    assert [caption for _, caption in next(iter(loader))] == [caption for _, caption in single]



#: A real image with real transparent pixels: a DOTA crop with a nodata collar (tests/data/make_transparent_sample.py).
TRANSPARENT_SAMPLE = REPO_ROOT / "tests" / "data" / "transparent" / "P1888_rotated.png"


def test_sixteen_bit_png_is_stretched_as_inference_stretches_it(tmp_path):
    """A 16-bit grey PNG gives inference's 256 grey levels (the stretch), not the few `convert("RGB")` leaves."""
    from rclip_hf.images import open_image

    grey = np.asarray(Image.open(TRANSPARENT_SAMPLE).convert("L"), dtype=np.uint16) * 200 + 300  # 300..51300
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode == "I;16"
    whole = TrainAugmentation(size=200, scale=(1.0, 1.0), ratio=(1.0, 1.0), horizontal_flip=False, rotation=False)
    for image in (path.read_bytes(), Image.open(path)):
        train = whole(image, np.random.default_rng(0)).permute(1, 2, 0).numpy()
        assert np.array_equal(train, np.asarray(open_image(path).convert("RGB")))  # what inference reads
        assert len(np.unique(train)) > 200
    crop = TrainAugmentation(size=48, scale=(0.3, 1.0))
    stretched = encoded(open_image(path), "PNG")  # the same draws on the stretched image: the same crops
    for seed in range(3):
        assert torch.equal(crop(path.read_bytes(), np.random.default_rng(seed)),
                           crop(stretched, np.random.default_rng(seed))), seed


def test_transparent_png_is_cropped_and_resized_before_alpha_is_dropped():
    """As open_clip's train transform (PIL `RandomResizedCrop`, then `convert("RGB")`) and inference's processor do:
    alpha dropped after a premultiplied resize, on a real sample with transparent corners and soft alpha edges."""
    from rclip_hf.processing_remoteclip import open_clip_rgb

    data = TRANSPARENT_SAMPLE.read_bytes()
    whole = TrainAugmentation(size=64, scale=(1.0, 1.0), ratio=(1.0, 1.0), horizontal_flip=False, rotation=False)
    inference = open_clip_rgb(Image.open(TRANSPARENT_SAMPLE), shortest_edge=64, crop_size=(64, 64))  # the processor's
    assert np.array_equal(whole(data, np.random.default_rng(0)).permute(1, 2, 0).numpy(), np.asarray(inference))
    augment = TrainAugmentation(size=48, scale=(0.3, 1.0), horizontal_flip=False, rotation=False)
    for seed in range(5):
        left, top, width, height = augment.crop_box(200, 200, np.random.default_rng(seed))
        expected = Image.open(TRANSPARENT_SAMPLE).crop((left, top, left + width, top + height)).resize(
            (48, 48), Image.Resampling.BICUBIC).convert("RGB")
        assert np.array_equal(augment(data, np.random.default_rng(seed)).permute(1, 2, 0).numpy(),
                              np.asarray(expected)), seed
