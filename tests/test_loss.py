"""rclip_hf.loss: hand-checked InfoNCE values, the CLIP oracle, and the two-process gather (gloo on CPU)."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from transformers.models.clip.modeling_clip import image_text_contrastive_loss

from rclip_hf import loss as loss_module
from rclip_hf.loss import MAX_LOGIT_SCALE, ClipLoss, gather_features


def test_hand_case_two_orthogonal_pairs():
    features = torch.eye(2)
    loss = ClipLoss()(features, features, torch.tensor(1.0))
    # each row: logits (1, 0), positive first -> -log(e / (e + 1)) = log(1 + e^-1)
    torch.testing.assert_close(loss, torch.tensor(math.log(1 + math.exp(-1))))


def test_hand_case_swapped_texts_uses_the_diagonal():
    images = torch.eye(2)
    texts = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss = ClipLoss()(images, texts, torch.tensor(2.0))
    # positives now score 0, negatives 2 -> -log(1 / (1 + e^2))
    torch.testing.assert_close(loss, torch.tensor(math.log(1 + math.exp(2))))


def test_matches_transformers_clip_loss_oracle():
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    scale = torch.tensor(14.3)
    expected = image_text_contrastive_loss(scale * texts @ images.T)  # transformers takes logits per text
    torch.testing.assert_close(ClipLoss()(images, texts, scale), expected)


def test_logits_and_ground_truth_shapes():
    loss = ClipLoss()
    logits_per_image, logits_per_text = loss.get_logits(torch.randn(3, 4), torch.randn(3, 4), torch.tensor(1.0))
    assert logits_per_image.shape == (3, 3) and logits_per_text.shape == (3, 3)
    torch.testing.assert_close(logits_per_text, logits_per_image.T)
    assert loss.get_ground_truth(3, torch.device("cpu")).tolist() == [0, 1, 2]
    assert ClipLoss(local_loss=True, rank=1, world_size=2).get_ground_truth(3, torch.device("cpu")).tolist() == [3, 4, 5]


def test_local_loss_scores_own_rows_against_every_column_and_averages_to_the_global_loss(monkeypatch):
    """`local_loss`: each process's logits are its rows of the global logits, its labels offset by its rank, and
    the mean of the processes' losses is the loss of the whole batch (the gather is replaced by the whole batch)."""
    generator = torch.Generator().manual_seed(2)
    images = F.normalize(torch.randn(8, 5, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(8, 5, generator=generator), dim=-1)
    scale = torch.tensor(7.0)
    gathered = []

    def whole_batch(image_features, text_features, **kwargs):
        gathered.append(kwargs)
        return images, texts

    monkeypatch.setattr(loss_module, "gather_features", whole_batch)
    global_logits = scale * images @ texts.T
    losses = []
    for rank in range(2):
        rows = slice(4 * rank, 4 * rank + 4)
        loss_fn = ClipLoss(local_loss=True, rank=rank, world_size=2)
        logits_per_image, logits_per_text = loss_fn.get_logits(images[rows], texts[rows], scale)
        assert logits_per_image.shape == logits_per_text.shape == (4, 8)
        torch.testing.assert_close(logits_per_image, global_logits[rows])
        torch.testing.assert_close(logits_per_text, global_logits.T[rows])
        losses.append(loss_fn(images[rows], texts[rows], scale))
    assert all(kwargs["local_loss"] for kwargs in gathered)
    torch.testing.assert_close(sum(losses) / 2, ClipLoss()(images, texts, scale))


def _local_gradients(images: torch.Tensor, texts: torch.Tensor, log_scale: float, rank: int,
                     world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of one process's rows under open_clip's local loss with a gather without gradient: its own rows
    scored against every column, the other processes' features constant."""
    per_rank = images.shape[0] // world_size
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    local_images, local_texts = images[rows].clone().requires_grad_(), texts[rows].clone().requires_grad_()
    labels = torch.arange(per_rank) + rank * per_rank
    scale = math.exp(log_scale)
    loss = (F.cross_entropy(scale * local_images @ texts.T, labels)
            + F.cross_entropy(scale * local_texts @ images.T, labels)) / 2
    loss.backward()
    return local_images.grad, local_texts.grad


def test_single_process_calls_no_collective():
    images, texts = torch.randn(2, 3), torch.randn(2, 3)
    assert not dist.is_initialized()
    gathered_images, gathered_texts = gather_features(images, texts, world_size=1)
    assert gathered_images is images and gathered_texts is texts


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        ClipLoss(rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        ClipLoss()(torch.randn(2, 3), torch.randn(2, 4), torch.tensor(1.0))


def test_max_logit_scale_is_ln_100():
    assert MAX_LOGIT_SCALE == pytest.approx(4.605170186)


def _reference(images: torch.Tensor, texts: torch.Tensor, log_scale: float):
    images, texts = images.clone().requires_grad_(), texts.clone().requires_grad_()
    scale = torch.tensor(log_scale, requires_grad=True)
    loss = ClipLoss()(images, texts, scale.exp())
    loss.backward()
    return loss.detach(), images.grad, texts.grad, scale.grad


def _worker(rank: int, world_size: int, port: int, images, texts, log_scale, out_dir) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        per_rank = images.shape[0] // world_size
        rows = slice(rank * per_rank, (rank + 1) * per_rank)
        for local_loss, with_grad in [(False, True), (True, True), (False, False), (True, False)]:
            local_images = images[rows].clone().requires_grad_()
            local_texts = texts[rows].clone().requires_grad_()
            scale = torch.tensor(log_scale, requires_grad=True)
            loss_fn = ClipLoss(local_loss=local_loss, gather_with_grad=with_grad, rank=rank, world_size=world_size)
            loss = loss_fn(local_images, local_texts, scale.exp())
            loss.backward()
            # what DDP does: average losses for reporting and gradients of shared parameters
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            dist.all_reduce(scale.grad)
            grads = [local_images.grad, local_texts.grad]
            torch.save((rank, local_loss, with_grad, mean_loss / world_size,
                        [grad / world_size for grad in grads], scale.grad / world_size),
                       os.path.join(out_dir, f"{rank}-{local_loss}-{with_grad}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    generator = torch.Generator().manual_seed(1)
    images = F.normalize(torch.randn(8, 5, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(8, 5, generator=generator), dim=-1)
    log_scale = 2.0
    ref_loss, ref_images, ref_texts, ref_scale = _reference(images, texts, log_scale)
    mp.spawn(_worker, args=(2, _free_port(), images, texts, log_scale, str(tmp_path)), nprocs=2, join=True)
    outputs = [torch.load(path) for path in sorted(tmp_path.glob("*.pt"))]
    assert len(outputs) == 8
    for rank, local_loss, with_grad, loss, (grad_images, grad_texts), grad_scale in outputs:
        torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
        rows = slice(rank * 4, (rank + 1) * 4)
        if with_grad:
            # the gather's backward returns every process's gradient of these rows; DDP's average restores it
            torch.testing.assert_close(grad_images, ref_images[rows], atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(grad_texts, ref_texts[rows], atol=1e-6, rtol=1e-5)
        elif local_loss:
            # open_clip's local loss without gradient through the gather: each process's own loss terms only
            expected_images, expected_texts = _local_gradients(images, texts, log_scale, rank, 2)
            torch.testing.assert_close(grad_images * 2, expected_images, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(grad_texts * 2, expected_texts, atol=1e-6, rtol=1e-5)
        else:
            # without gradient the gather keeps only this process's share: 1 / world_size of the true gradient
            torch.testing.assert_close(grad_images * 2, ref_images[rows], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(grad_scale, ref_scale, atol=1e-6, rtol=1e-5)
