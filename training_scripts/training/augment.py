"""The paper's training augmentation: random resized crop, horizontal flip, rotation by a multiple of 90°, giving
a uint8 tensor (normalisation happens on the device, in the training step).

Every random draw comes from a `numpy.random.Generator` passed in, so a sample's augmentation is a function of
(seed, epoch, index) and a resumed run sees exactly the images an uninterrupted one would. The crop is drawn from
the image's header size before any pixel is decoded; a JPEG is then decoded at 1/2, 1/4 or 1/8 of its size
(libjpeg's DCT scaling through PIL `draft`) whenever the crop still holds at least `size` x `size` pixels at that
scale, so the bicubic resize stays a downscale and only the decode gets cheaper. A full decode is cropped and
resized as torchvision's `RandomResizedCrop` does on tensors (crop, then antialiased bicubic with PIL's kernel) by
torch's vectorised uint8 kernel, at a fraction of PIL's cost; a crop of a reduced decode, whose box falls between
pixels, by PIL's box resize. Stored RGB JPEG and 8-bit PNG bytes are fully decoded by TorchCodec, whose
libjpeg-turbo and libpng decoders give PIL's pixels in less time and straight into a tensor.

Pixels follow inference's image rule (`rclip_hf.images.model_image`): 16-bit, 32-bit and float images are
stretched to 8-bit RGB as inference stretches them (not clipped at 255 by `convert("RGB")`), and images with
alpha, a palette, 1 bit or CMYK are cropped and resized in their own mode and converted to RGB last, as open_clip's
train transform (`RandomResizedCrop` on PIL images, then `_convert_to_rgb`) and inference's processor do: alpha is
dropped after a premultiplied resize, palette and 1-bit images are resized by nearest neighbour. RGB and grey
images, for which the conversion commutes with the crop and resize, take the fast path above.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchcodec.decoders import decode_jpeg, decode_png

from rclip_hf.images import EIGHT_BIT_MODES, model_image

#: TorchCodec's decoder of each format whose RGB pixels it gives exactly as PIL does (libjpeg-turbo, libpng)
TORCHCODEC_DECODERS = {"JPEG": decode_jpeg, "PNG": decode_png}


@dataclass(frozen=True)
class TrainAugmentation:
    """Random resized crop to `size` (torchvision's sampling rule, bicubic), flip (p=0.5), rotation (0/90/180/270)."""

    size: int
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = True
    rotation: bool = True

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"TrainAugmentation: size must be >= 1, got {self.size}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"TrainAugmentation: crop_scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"TrainAugmentation: crop_ratio must satisfy 0 < low <= high, got {self.ratio}")

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(left, top, crop_width, crop_height): 10 tries at a random area and log-uniform ratio, else a centre crop."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            crop_width = round(math.sqrt(target_area * aspect))
            crop_height = round(math.sqrt(target_area / aspect))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                left = int(rng.integers(0, width - crop_width + 1))
                top = int(rng.integers(0, height - crop_height + 1))
                return left, top, crop_width, crop_height
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            crop_width, crop_height = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            crop_width, crop_height = round(height * self.ratio[1]), height
        else:
            crop_width, crop_height = width, height
        return (width - crop_width) // 2, (height - crop_height) // 2, crop_width, crop_height

    def __call__(self, image: bytes | Image.Image, rng: np.random.Generator) -> torch.Tensor:
        """(3, size, size) uint8 augmented crop of `image`: stored (encoded) bytes, or a PIL image (opened lazily or
        already loaded)."""
        encoded = image if isinstance(image, bytes) else None
        if encoded is not None:
            image = Image.open(io.BytesIO(encoded))
        width, height = image.size
        left, top, crop_width, crop_height = self.crop_box(width, height, rng)
        if image.mode not in EIGHT_BIT_MODES:  # 16-bit, 32-bit, float: stretched to RGB as inference does
            image, encoded = model_image(image), None
        # the largest JPEG DCT reduction that keeps the crop at least `size` pixels wide and high (None: not a
        # JPEG or already loaded)
        drafted = image.draft(None, (math.ceil(width * self.size / crop_width),
                                     math.ceil(height * self.size / crop_height)))
        reduction = width / drafted[1][2] if drafted is not None else 1.0
        if reduction == 1 and image.mode in ("RGB", "L"):  # full size: crop, then torch's uint8 antialiased
            # bicubic (PIL's kernel, vectorised)
            crop = rgb_tensor(image, encoded)[None, :, top:top + crop_height, left:left + crop_width]
            resized = F.interpolate(crop.contiguous(memory_format=torch.channels_last), size=(self.size, self.size),
                                    mode="bicubic", antialias=True)[0]  # (3, size, size) uint8, HWC in memory
            pixels_hwc = resized.permute(1, 2, 0).numpy()
        elif reduction == 1:  # alpha, palette, 1-bit, CMYK: crop and resize in the image's own mode, then RGB
            crop = image.crop((left, top, left + crop_width, top + crop_height))
            pixels_hwc = np.array(crop.resize((self.size, self.size), Image.Resampling.BICUBIC).convert("RGB"))
        else:  # reduced decode: the crop box falls between pixels, which PIL's box resize keeps
            box = (left / reduction, top / reduction, (left + crop_width) / reduction, (top + crop_height) / reduction)
            pixels_hwc = np.array(image.resize((self.size, self.size), Image.Resampling.BICUBIC,
                                               box=box).convert("RGB"))
        if self.horizontal_flip and rng.random() < 0.5:
            pixels_hwc = pixels_hwc[:, ::-1]
        if self.rotation:
            pixels_hwc = np.rot90(pixels_hwc, int(rng.integers(0, 4)))  # counter-clockwise, as PIL ROTATE_90
        # the flip and rotation are numpy views (negative strides, which torch lacks) until this one copy
        return torch.from_numpy(np.ascontiguousarray(pixels_hwc.transpose(2, 0, 1)))


def rgb_tensor(image: Image.Image, encoded: bytes | None) -> torch.Tensor:
    """(3, H, W) uint8 pixels of `image` as `convert("RGB")` gives them, held HWC in memory (channels last):
    `encoded`, its stored bytes when it is an RGB JPEG or PNG, is decoded by TorchCodec, the rest by PIL."""
    decoder = TORCHCODEC_DECODERS.get(image.format) if encoded is not None and image.mode == "RGB" else None
    if decoder is not None:
        pixels = decoder(encoded, mode="RGB", output_dtype="auto")
        if pixels.dtype == torch.uint8:  # a 16-bit PNG stays uint16 here; PIL reduces it to its high bytes
            return pixels
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
