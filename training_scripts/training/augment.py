"""The paper's training augmentation: random resized crop, horizontal flip, rotation by a multiple of 90°, giving
a uint8 tensor (normalisation happens on the device, in the training step).

Every random draw comes from a `numpy.random.Generator` passed in, so a sample's augmentation is a function of
(seed, epoch, index) and a resumed run sees exactly the images an uninterrupted one would. The crop is drawn from
the image's header size before any pixel is decoded; a JPEG not yet loaded is then decoded at 1/2, 1/4 or 1/8
of its size (libjpeg's DCT scaling through PIL `draft`) whenever the crop still holds at least `size` x `size`
pixels at that scale, so the bicubic resize stays a downscale and only the decode gets cheaper. A crop of a
full decode is resized as torchvision's `RandomResizedCrop` does on tensors (crop, then antialiased bicubic with
PIL's kernel) by torch's vectorised uint8 kernel, at a fraction of PIL's cost; a crop of a reduced decode, whose
box falls between pixels, by PIL's box resize.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


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

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        """(3, size, size) uint8 augmented crop of `image` (an opened, not necessarily loaded, PIL image)."""
        width, height = image.size
        left, top, crop_width, crop_height = self.crop_box(width, height, rng)
        # the largest JPEG DCT reduction that keeps the crop at least `size` pixels wide and high (None: not a
        # JPEG or already loaded)
        drafted = image.draft(None, (math.ceil(width * self.size / crop_width),
                                     math.ceil(height * self.size / crop_height)))
        reduction = width / drafted[1][2] if drafted is not None else 1.0
        image = image.convert("RGB")
        if reduction == 1:  # full size: crop, then torch's uint8 antialiased bicubic (PIL's kernel, vectorised)
            crop_hwc = torch.from_numpy(np.array(image.crop((left, top, left + crop_width, top + crop_height))))
            pixels = F.interpolate(crop_hwc.permute(2, 0, 1)[None], size=(self.size, self.size), mode="bicubic",
                                   antialias=True)[0]  # (3, size, size) uint8
        else:  # reduced decode: the crop box falls between pixels, which PIL's box resize keeps
            box = (left / reduction, top / reduction, (left + crop_width) / reduction, (top + crop_height) / reduction)
            resized = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
            pixels = torch.from_numpy(np.array(resized)).permute(2, 0, 1)  # (3, size, size) uint8
        if self.horizontal_flip and rng.random() < 0.5:
            pixels = pixels.flip(-1)
        if self.rotation:
            pixels = torch.rot90(pixels, int(rng.integers(0, 4)), dims=(1, 2))  # counter-clockwise, as PIL ROTATE_90
        return pixels
