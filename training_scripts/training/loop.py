"""The training run: checks, accelerate set-up, the step loop with accumulation, checkpoints, evaluation, saving."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch.distributed.tensor import DTensor

from rclip_hf.loss import MAX_LOGIT_SCALE, ClipLoss
from rclip_hf.precision import accelerate_mixed_precision, precision_name
from rclip_hf.progress import progress_bar
from rclip_hf.staging import staged_folder, state_dict_bytes

from .arguments import DataArguments, HubArguments, ModelArguments, TrainArguments
from .augment import TrainAugmentation
from .checkpoint import TrainState, check_output_dir, load_checkpoint, resolve_resume, save_checkpoint
from .data import PixelNormalizer, build_train_dataloader, load_caption_corpus
from .evaluation_hook import RetrievalEvaluator
from .model import ContrastiveModule, build_model_and_processor, check_model_arguments
from .optim import build_optimizer_and_scheduler
from .publish import check_hub_arguments, training_card, write_card_and_push

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"


def check_train_arguments(args: TrainArguments) -> None:
    """Value checks that need no process group; each message names the flag and the value."""
    if args.mixed_precision is not None:  # the shared names (bfloat16, ...) become accelerate's (bf16, ...)
        args.mixed_precision = accelerate_mixed_precision(args.mixed_precision)
    for name in ("batch_size", "gradient_accumulation_steps", "max_steps", "logging_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("checkpointing_steps", "eval_steps", "warmup_steps"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")


def warn_on_precision_conflict(requested: str | None) -> str | None:
    """Log a warning naming both values when an explicit `--mixed_precision` (flag or YAML) differs from the
    launcher's (`accelerate launch --mixed_precision` or its config file, passed as ACCELERATE_MIXED_PRECISION); the
    explicit value is used. Returns the warning, or None when they agree or either is unset."""
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if requested is None or not launcher or launcher == requested:
        return None
    message = (f"--mixed_precision {requested} (flag or YAML) overrides the launcher's mixed precision {launcher} "
               "(accelerate launch --mixed_precision / its config file); leave --mixed_precision out to use the "
               "launcher's")
    logger.warning(message)
    return message


def per_device_batch_size(batch_size: int, num_processes: int, accumulation_steps: int) -> int:
    """Global batch / (processes x accumulation steps); raises unless it divides exactly."""
    divisor = num_processes * accumulation_steps
    if batch_size % divisor != 0:
        raise ValueError(
            f"--batch_size {batch_size} is not divisible by num_processes ({num_processes}) x "
            f"gradient_accumulation_steps ({accumulation_steps}) = {divisor}"
        )
    return batch_size // divisor


def resolve_trackers(report_to: list[str]) -> list[str]:
    """Requested trackers that are installed (`none` disables all); a missing one is skipped with a warning."""
    if not report_to or report_to == ["none"]:
        return []
    modules = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml"}
    available = []
    for name in report_to:
        if importlib.util.find_spec(modules.get(name, name)) is None:
            logger.warning("--report_to %s: the package is not installed, tracker skipped", name)
        else:
            available.append(name)
    return available


def _forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], normalize: PixelNormalizer
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's (image, text, scale) outputs for a batch of uint8 pixels, normalised here on the device."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 pixel_values=normalize(batch["pixel_values"]))


def training_step(model: torch.nn.Module, micro_batches: Sequence[dict[str, torch.Tensor]], loss_fn: ClipLoss,
                  accelerator: Accelerator, normalize: PixelNormalizer) -> torch.Tensor:
    """Forward, gathered InfoNCE and backward of one optimiser step whose micro-batches form ONE contrastive batch;
    returns the detached local loss of that batch.

    With several micro-batches this is open_clip's `--accum-freq`: every micro-batch's features are computed first
    without gradient, then each micro-batch is recomputed with gradient and scored against the cached features of
    all the others (the whole batch's negatives). The accumulated gradients then equal those of one step on the
    concatenated batch: each backward carries the loss's gradient through one micro-batch's features, and the
    temperature's gradient is taken once (on the last micro-batch). Gradients are synchronised across processes on
    the last backward only. The cost is one extra forward pass without gradient per micro-batch. This is exact for
    models without batch statistics (the ViTs); a ResNet tower's BatchNorm normalises each micro-batch with its own
    statistics and updates its running statistics in both passes, as under open_clip's `--accum-freq`.
    """
    if len(micro_batches) == 1:
        image_embeds, text_embeds, logit_scale = _forward(model, micro_batches[0], normalize)
        loss = loss_fn(image_embeds, text_embeds, logit_scale)
        accelerator.backward(loss)
        return loss.detach()
    with torch.no_grad():
        cached = [_forward(model, batch, normalize)[:2] for batch in micro_batches]
    last = len(micro_batches) - 1
    for index, batch in enumerate(micro_batches):
        with accelerator.no_sync(model) if index < last else contextlib.nullcontext():
            image_embeds, text_embeds, logit_scale = _forward(model, batch, normalize)
            images = torch.cat([features[0] for features in cached[:index]] + [image_embeds]
                               + [features[0] for features in cached[index + 1:]])
            texts = torch.cat([features[1] for features in cached[:index]] + [text_embeds]
                              + [features[1] for features in cached[index + 1:]])
            loss = loss_fn(images, texts, logit_scale if index == last else logit_scale.detach())
            accelerator.backward(loss)
    return loss.detach()


def shardable_logit_scale(module: ContrastiveModule) -> None:
    """FSDP2 shards only parameters with at least one dimension: the scalar `logit_scale` becomes a (1,) parameter
    for training (the loss broadcasts it; `save_final_model` saves the scalar again)."""
    module.model.logit_scale = torch.nn.Parameter(module.model.logit_scale.detach().reshape(1))


def keep_present_no_split_modules(module: torch.nn.Module) -> None:
    """Narrows `module._no_split_modules` to the block classes the model has (a ViT has no ResNet bottleneck and
    vice versa): FSDP's TRANSFORMER_BASED_WRAP wraps each listed class and accelerate raises on a missing one."""
    present = {type(submodule).__name__ for submodule in module.modules()}
    module._no_split_modules = [name for name in module._no_split_modules if name in present]


def clamp_logit_scale(model: torch.nn.Module, accelerator: Accelerator) -> None:
    """CLIP's temperature clamp after each optimiser step: `logit_scale` (a log) stays in [0, ln 100]."""
    with torch.no_grad():
        accelerator.unwrap_model(model).model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)


def save_final_model(accelerator: Accelerator, model: torch.nn.Module, processor: Any, output_dir: Path) -> Path:
    """`save_pretrained` (safetensors + config) and the processor in `output_dir/final`."""
    final = output_dir / "final"
    wrapped_state = accelerator.get_state_dict(model)  # full state on the main process under FSDP/DeepSpeed too
    inner = accelerator.unwrap_model(model).model
    if accelerator.is_main_process:
        state_dict = {key.removeprefix("model."): value for key, value in wrapped_state.items()}
        state_dict["logit_scale"] = state_dict["logit_scale"].reshape(())  # a scalar, as the model defines it
        # written whole: a previous final/ and the checkpoints stay until the new final/ is complete
        with staged_folder(final, state_dict_bytes(state_dict)) as staging:
            inner.save_pretrained(staging, state_dict=state_dict, safe_serialization=True)
            processor.save_pretrained(staging)
    accelerator.wait_for_everyone()
    return final


def run(model_args: ModelArguments, data_args: DataArguments, args: TrainArguments,
        hub: HubArguments | None = None) -> Path:
    """Trains and returns the folder of the final model (with its card; uploaded with `hub.push_to_hub`)."""
    hub = hub or HubArguments()
    check_train_arguments(args)
    check_model_arguments(model_args)
    api = check_hub_arguments(hub)  # before any work: a push without a token or write access fails here
    output_dir = Path(args.output_dir)
    trackers = resolve_trackers(args.report_to)
    warn_on_precision_conflict(args.mixed_precision)
    # accumulation is done by `training_step` itself (no `accumulate`: the loss spans every micro-batch of a step)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,  # None: `accelerate launch` / its config file decide
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dynamo_backend="inductor" if model_args.torch_compile else None,
    )
    # the value in force, logged and saved in train_args.json in the shared vocabulary (bfloat16, not bf16)
    args.mixed_precision = precision_name(accelerator.mixed_precision)
    logger.info("accelerate: %s on %d process(es), mixed precision %s", accelerator.distributed_type,
                accelerator.num_processes, args.mixed_precision)
    per_device = per_device_batch_size(args.batch_size, accelerator.num_processes, args.gradient_accumulation_steps)
    resume_path = resolve_resume(args.resume, output_dir)
    check_output_dir(output_dir, resume_path is not None, args.overwrite_output_dir, accelerator.is_main_process)
    accelerator.wait_for_everyone()
    with accelerator.main_process_first():
        corpus = load_caption_corpus(data_args)
    set_seed(args.seed)
    model, processor = build_model_and_processor(model_args)
    augmentation = TrainAugmentation(size=model.config.image_size, scale=tuple(data_args.crop_scale),
                                     ratio=tuple(data_args.crop_ratio), horizontal_flip=data_args.horizontal_flip,
                                     rotation=data_args.rotation)
    logger.info("model: %.2f M parameters, image size %d, per-device batch %d",
                sum(p.numel() for p in model.parameters()) / 1e6, model.config.image_size, per_device)

    module = ContrastiveModule(model)
    keep_present_no_split_modules(module)
    if accelerator.is_fsdp2:
        shardable_logit_scale(module)
    optimizer, scheduler = build_optimizer_and_scheduler(module, args)
    dataloader = build_train_dataloader(corpus, processor, augmentation, data_args, per_device, args.seed)
    module, optimizer, dataloader = accelerator.prepare(module, optimizer, dataloader)
    state = TrainState()  # saved with the scheduler (not prepared: it steps once per step) as JSON by checkpoint.py
    loss_fn = ClipLoss(local_loss=args.local_loss, gather_with_grad=True, rank=accelerator.process_index,
                       world_size=accelerator.num_processes)
    # on every process: under FSDP each one holds a shard of the weights the evaluation needs
    evaluator = RetrievalEvaluator(corpus, data_args.eval_samples, processor) if data_args.eval_samples > 0 else None
    normalize = PixelNormalizer(processor.image_processor.image_mean, processor.image_processor.image_std)

    if resume_path is not None:
        logger.info("resuming from %s", resume_path)
        load_checkpoint(accelerator, resume_path, state, scheduler)
        if accelerator.is_main_process:
            forget_logged_steps_after(output_dir / TRAIN_LOG, state.step)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_args.json").write_text(json.dumps(
            {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
             "train": dataclasses.asdict(args), "num_processes": accelerator.num_processes}, indent=2, default=str))
    accelerator.init_trackers(args.project_name, config={k: v for k, v in dataclasses.asdict(args).items()
                                                         if isinstance(v, (int, float, str, bool))})
    _train_loop(accelerator, module, optimizer, scheduler, dataloader, loss_fn, normalize, state, evaluator, args,
                output_dir)
    final = save_final_model(accelerator, module, processor, output_dir)
    if accelerator.is_main_process:
        card = training_card(final, model_args, data_args, args, accelerator.num_processes, hub.hub_model_id)
        write_card_and_push(final, card, hub, api)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _train_loop(accelerator: Accelerator, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, dataloader: torch.utils.data.DataLoader,
                loss_fn: ClipLoss, normalize: PixelNormalizer, state: TrainState, evaluator: RetrievalEvaluator | None,
                args: TrainArguments, output_dir: Path) -> None:
    """Optimiser steps until `max_steps`, each over `gradient_accumulation_steps` micro-batches (which may span an
    epoch's end); the data position (epoch, micro-batches into it) lives in `state`."""
    progress = progress_bar(total=args.max_steps, initial=state.step, desc="train", unit="step",
                    disable=not accelerator.is_local_main_process)
    window_loss = torch.zeros((), device=accelerator.device)
    window_steps = 0
    micro_batches: list[dict[str, torch.Tensor]] = []
    module.train()
    while state.step < args.max_steps:
        dataloader.set_epoch(state.epoch)
        batches = (accelerator.skip_first_batches(dataloader, state.epoch_batches) if state.epoch_batches
                   else dataloader)
        for batch in batches:
            micro_batches.append(batch)
            state.epoch_batches += 1
            if len(micro_batches) < args.gradient_accumulation_steps:
                continue
            window_loss += training_step(module, micro_batches, loss_fn, accelerator, normalize)
            micro_batches = []
            if args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(module.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            clamp_logit_scale(module, accelerator)
            window_steps += 1
            state.step += 1
            progress.update(1)
            if state.step % args.logging_steps == 0 or state.step == args.max_steps:
                mean_loss = accelerator.reduce(window_loss / window_steps, reduction="mean").item()
                _log(accelerator, module, scheduler, state, mean_loss, output_dir)
                progress.set_postfix(loss=f"{mean_loss:.4f}")
                window_loss.zero_()
                window_steps = 0
            if args.checkpointing_steps and state.step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, output_dir, state.step, args.checkpoints_total_limit, state, scheduler)
            if evaluator is not None and args.eval_steps and state.step % args.eval_steps == 0:
                _evaluate(accelerator, module, evaluator, state.step)
            if state.step >= args.max_steps:
                break
        else:
            if state.epoch_batches == 0:  # a whole epoch without one full batch: looping again would never end
                raise ValueError(
                    f"the training data yields no full batch (--batch_size {args.batch_size} over "
                    f"{accelerator.num_processes} process(es), incomplete batches dropped): use a larger dataset "
                    "or a smaller --batch_size"
                )
            state.epoch += 1
            state.epoch_batches = 0
    progress.close()
    if evaluator is not None and not (args.eval_steps and state.step % args.eval_steps == 0):
        _evaluate(accelerator, module, evaluator, state.step)


def forget_logged_steps_after(log: Path, step: int) -> None:
    """Drop the records of steps after `step` from the training log (a resumed run redoes them and logs them
    again: each step is recorded once); rewritten atomically."""
    if not log.is_file():
        return
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) < len(lines):
        partial = log.with_name(f".{log.name}.partial")
        partial.write_text("".join(kept), encoding="utf-8")
        partial.replace(log)


def _logged_step(line: str) -> int:
    """The step of one log record (a line that does not parse, such as one cut by a kill, counts as after all)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


def _log(accelerator: Accelerator, module: torch.nn.Module, scheduler: torch.optim.lr_scheduler.LRScheduler,
         state: TrainState, loss: float, output_dir: Path) -> None:
    """Sends loss, learning rate and temperature to the trackers and appends them to `train_log.jsonl`."""
    logit_scale = accelerator.unwrap_model(module).model.logit_scale.detach()
    if isinstance(logit_scale, DTensor):  # FSDP2: a shard on each process
        logit_scale = logit_scale.full_tensor()
    logit_scale = logit_scale.exp().item()
    record = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": scheduler.get_last_lr()[0],
              "logit_scale": logit_scale}
    accelerator.log({f"train/{key}": value for key, value in record.items() if key != "step"}, step=state.step)
    if accelerator.is_main_process:
        with (output_dir / TRAIN_LOG).open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _evaluate(accelerator: Accelerator, module: torch.nn.Module, evaluator: RetrievalEvaluator, step: int) -> None:
    """Retrieval metrics of the current model, computed on every process (the same numbers on each; under FSDP the
    root's sharded weights are gathered for it and the layers gather theirs as in training), logged by the main one."""
    fsdp_root = module if accelerator.is_fsdp2 else None
    if fsdp_root is not None:
        fsdp_root.unshard()
    metrics = evaluator(accelerator.unwrap_model(module).model)
    if fsdp_root is not None:
        fsdp_root.reshard()
    accelerator.log({f"eval/{key}": value for key, value in metrics.items()}, step=step)
    if accelerator.is_main_process:
        logger.info("step %d retrieval on the training corpus: %s", step, metrics)
        with (Path(accelerator.project_dir) / TRAIN_LOG).open("a") as handle:
            handle.write(json.dumps({"step": step, "eval": metrics}) + "\n")
