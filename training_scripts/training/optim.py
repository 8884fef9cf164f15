"""AdamW with CLIP's decay exclusions and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from .arguments import TrainArguments


def decays(name: str, parameter: nn.Parameter) -> bool:
    """True for weight matrices; False for biases, norm scales and `logit_scale` (open_clip's exclusions) and also
    for embedding tables (token, positional, class), which open_clip's `main.py` does decay."""
    if parameter.ndim < 2 or "logit_scale" in name:
        return False
    return "embedding" not in name


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weight matrices, and everything else without decay."""
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    return [
        {"params": [p for name, p in trainable if decays(name, p)], "weight_decay": weight_decay},
        {"params": [p for name, p in trainable if not decays(name, p)], "weight_decay": 0.0},
    ]


def adamw(groups: list[dict], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
          ) -> torch.optim.AdamW:
    """AdamW over parameter groups, with the fused kernel (one pass over all parameters, CPU and CUDA) when every
    parameter is a floating-point tensor, as for the CLIP models here; its updates equal the loop implementation's
    to float rounding."""
    fused = all(parameter.is_floating_point() for group in groups for parameter in group["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def build_optimizer_and_scheduler(model: nn.Module, args: TrainArguments
                                  ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """`adamw` over `parameter_groups` and a schedule stepped once per optimiser step."""
    optimizer = adamw(parameter_groups(model, args.weight_decay), args.learning_rate,
                      (args.adam_beta1, args.adam_beta2), args.adam_epsilon)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=args.warmup_steps,
                                                num_training_steps=args.max_steps)
    return optimizer, scheduler
