"""Symmetric InfoNCE (CLIP) loss whose negatives span every process: features are all-gathered with gradients.

Semantics follow open_clip's `ClipLoss`: with `local_loss=False` every process computes the loss of the whole
global batch; with `local_loss=True` it computes only its own rows against all columns (labels offset by its rank)
and the mean over processes is the global loss. Either way, after the data-parallel gradient average the
gradients equal those of one process on the concatenated batch. A single process calls no collective.

The temperature is not clamped here: the training step clamps the `logit_scale` parameter to `[0, ln(100)]`
after each optimiser step (as CLIP and open_clip do), and the loss receives `logit_scale.exp()`.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

#: Upper bound of the learnable log-temperature: CLIP clamps `logit_scale` at ln(100).
MAX_LOGIT_SCALE = math.log(100.0)


class AllGatherWithGrad(torch.autograd.Function):
    """(local_batch, dim) -> (world_size * local_batch, dim), rank-ordered, with blocking c10d collectives; the
    backward is the gradient of this process's rows summed over processes (all-reduce, then its slice).

    The functional collectives' `all_gather_single_autograd` corrupted the heap of DDP runs on gloo (CPU) within a
    few thousand steps (`malloc(): unaligned tcache chunk detected`, SIGSEGV in the backward); this does not.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, features: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
        gathered = [torch.empty_like(features) for _ in range(ctx.world_size)]
        dist.all_gather(gathered, features.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_all: torch.Tensor) -> torch.Tensor:
        summed = grad_all.clone(memory_format=torch.contiguous_format)  # autograd's buffer is not ours to change
        dist.all_reduce(summed)  # (world_size * local_batch, dim): every process's gradient, summed
        return summed.chunk(ctx.world_size, dim=0)[ctx.rank]


def gather_features(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    *,
    local_loss: bool = False,
    gather_with_grad: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gathers (local_batch, dim) features from every process into (world_size * local_batch, dim), rank-ordered.

    `gather_with_grad=True` gathers with `AllGatherWithGrad`, whose backward sends each process the gradient of
    its own rows summed over processes (as open_clip's `torch.distributed.nn.functional.all_gather`). Without it
    the gather carries no gradient and, unless `local_loss`, this process's own rows are put back so that they
    keep theirs.
    """
    if world_size == 1:
        return image_features, text_features
    if gather_with_grad:
        return AllGatherWithGrad.apply(image_features), AllGatherWithGrad.apply(text_features)
    gathered_image = [torch.zeros_like(image_features) for _ in range(world_size)]
    gathered_text = [torch.zeros_like(text_features) for _ in range(world_size)]
    dist.all_gather(gathered_image, image_features.contiguous())
    dist.all_gather(gathered_text, text_features.contiguous())
    if not local_loss:
        gathered_image[rank] = image_features
        gathered_text[rank] = text_features
    return torch.cat(gathered_image, dim=0), torch.cat(gathered_text, dim=0)


class ClipLoss(nn.Module):
    """Symmetric cross-entropy over image-text similarities; positives on the (rank-offset) diagonal."""

    def __init__(self, *, local_loss: bool = False, gather_with_grad: bool = True, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"ClipLoss: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.rank = rank
        self.world_size = world_size

    def get_logits(self, image_features: torch.Tensor, text_features: torch.Tensor,
                   logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(local_batch, dim) x2 and the scale (exp of the log-temperature) -> logits per image and per text.

        Shapes: (local_batch, global_batch) each with `local_loss`, otherwise (global_batch, global_batch).
        """
        if self.world_size == 1:
            logits_per_image = logit_scale * image_features @ text_features.T
            return logits_per_image, logits_per_image.T
        all_image, all_text = gather_features(
            image_features, text_features, local_loss=self.local_loss, gather_with_grad=self.gather_with_grad,
            rank=self.rank, world_size=self.world_size,
        )
        if self.local_loss:
            return logit_scale * image_features @ all_text.T, logit_scale * text_features @ all_image.T
        logits_per_image = logit_scale * all_image @ all_text.T
        return logits_per_image, logits_per_image.T

    def get_ground_truth(self, num_logits: int, device: torch.device) -> torch.Tensor:
        """(num_logits,) int64 index of the positive column of each row: offset by rank under `local_loss`."""
        labels = torch.arange(num_logits, device=device, dtype=torch.long)
        if self.world_size > 1 and self.local_loss:
            labels = labels + num_logits * self.rank
        return labels

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        """Scalar loss: mean of image->text and text->image cross-entropies. Features should be L2-normalised."""
        if image_features.shape != text_features.shape:
            raise ValueError(
                f"ClipLoss: image features {tuple(image_features.shape)} and text features "
                f"{tuple(text_features.shape)} must have the same (batch, dim) shape"
            )
        logits_per_image, logits_per_text = self.get_logits(image_features, text_features, logit_scale)
        labels = self.get_ground_truth(logits_per_image.shape[0], image_features.device)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


__all__ = ["MAX_LOGIT_SCALE", "ClipLoss", "gather_features"]
