"""Run under `accelerate launch`: one training step of tiny.yaml on the first global batch of 8, in ACCUM
micro-batches per process (default 1); rank 0 saves the loss and gradients.

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N tests/distributed_step.py CORPUS_DIR \
        OUT_FILE [ACCUM]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

REPO_ROOT = Path(__file__).resolve().parents[1]
from rclip_hf.loss import ClipLoss
from training_scripts.training.arguments import parse_arguments
from training_scripts.training.augment import TrainAugmentation
from training_scripts.training.data import PixelNormalizer, build_train_dataloader, load_caption_corpus
from training_scripts.training.loop import per_device_batch_size, training_step
from training_scripts.training.model import ContrastiveModule, build_model_and_processor


def main(corpus: str, out_file: str, accumulation: str = "1") -> None:
    model_args, data_args, args = parse_arguments(
        ["--config", str(REPO_ROOT / "training_scripts/configs/tiny.yaml"), "--dataset", corpus, "--batch_size", "8"])
    accelerator = Accelerator(mixed_precision="no")
    per_device = per_device_batch_size(args.batch_size, accelerator.num_processes, int(accumulation))
    set_seed(args.seed)
    model, processor = build_model_and_processor(model_args)
    augmentation = TrainAugmentation(size=model.config.image_size)
    dataloader = build_train_dataloader(load_caption_corpus(data_args), processor, augmentation, data_args,
                                        per_device, args.seed)
    module, dataloader = accelerator.prepare(ContrastiveModule(model), dataloader)
    loss_fn = ClipLoss(local_loss=args.local_loss, rank=accelerator.process_index,
                       world_size=accelerator.num_processes)
    batches = iter(dataloader)
    normalize = PixelNormalizer(processor.image_processor.image_mean, processor.image_processor.image_std)
    loss = training_step(module, [next(batches) for _ in range(int(accumulation))], loss_fn, accelerator, normalize)
    mean_loss = accelerator.reduce(loss, reduction="mean")
    if accelerator.is_main_process:
        grads = {name: parameter.grad.clone() for name, parameter in
                 accelerator.unwrap_model(module).named_parameters()}
        torch.save({"loss": mean_loss, "grads": grads, "num_processes": accelerator.num_processes}, out_file)


if __name__ == "__main__":
    main(*sys.argv[1:])
