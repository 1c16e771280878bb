"""Numerical building blocks shared by the model and the training code (Parts 2 and 3).

Write them with basic tensor operations: ``torch.nn.functional`` (``F.softmax``,
``F.cross_entropy``, ...) and ``torch.nn.utils.clip_grad_norm_`` are what the tests compare with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


def softmax(x: Float[Tensor, "..."], dim: int = -1) -> Float[Tensor, "..."]:
    """Softmax over dimension ``dim``: ``exp(x_i) / sum_j exp(x_j)``.

    Must be numerically stable: subtract the maximum along ``dim`` before exponentiating, so that
    inputs such as 1000 or -1000 give the right answer instead of ``inf``/``nan``. The result has
    the shape and dtype of ``x``; each slice along ``dim`` sums to 1.
    """
    # BEGIN SOLUTION
    shifted = x - x.amax(dim=dim, keepdim=True)
    exponentials = torch.exp(shifted)
    return exponentials / exponentials.sum(dim=dim, keepdim=True)
    # END SOLUTION


def log_softmax(x: Float[Tensor, "..."], dim: int = -1) -> Float[Tensor, "..."]:
    """``log(softmax(x))`` computed stably: ``x - max - log(sum(exp(x - max)))`` along ``dim``.

    Never take the log of a softmax that has underflowed to 0: with logits in the thousands the
    result must still be finite.
    """
    # BEGIN SOLUTION
    shifted = x - x.amax(dim=dim, keepdim=True)
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))
    # END SOLUTION


def cross_entropy(
    logits: Float[Tensor, "... vocab_size"], targets: Int[Tensor, "..."], ignore_index: int | None = None
) -> Float[Tensor, ""]:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    ``logits`` has any leading dimensions (batch, seq, ...) and the vocabulary last; ``targets``
    has the leading dimensions. The mean is over all positions, except those whose target equals
    ``ignore_index`` (padding), which count for nothing. If every position is ignored the loss is
    0. Stable for logits in the thousands: subtract the maximum, then use :func:`log_softmax`
    or ``-log p(target) = logsumexp(shifted) - shifted[target]`` (``torch.logsumexp`` is allowed).
    """
    # BEGIN SOLUTION
    keep = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    safe_targets = torch.where(keep, targets, torch.zeros_like(targets))
    # Shift by the maximum first: logsumexp(x) - x[t] on raw logits of 1e8 loses log(4) to rounding.
    shifted = logits - logits.amax(dim=-1, keepdim=True).detach()
    target_logits = shifted.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    losses = torch.logsumexp(shifted, dim=-1) - target_logits
    # where, not multiply: an ignored row may hold -inf, and inf * 0 is NaN.
    return torch.where(keep, losses, torch.zeros_like(losses)).sum() / keep.sum().clamp_min(1)
    # END SOLUTION


def perplexity(
    logits: Float[Tensor, "... vocab_size"], targets: Int[Tensor, "..."], ignore_index: int | None = None
) -> Float[Tensor, ""]:
    """``exp`` of the mean cross-entropy: the effective number of equally likely next tokens."""
    # BEGIN SOLUTION
    return torch.exp(cross_entropy(logits, targets, ignore_index))
    # END SOLUTION


def token_accuracy(
    logits: Float[Tensor, "... vocab_size"], targets: Int[Tensor, "..."], ignore_index: int | None = None
) -> Float[Tensor, ""]:
    """Fraction of positions whose most likely token (argmax of the logits) is the target.

    Positions whose target equals ``ignore_index`` are left out; 0 if none is left.
    """
    # BEGIN SOLUTION
    keep = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    correct = (logits.argmax(dim=-1) == targets) & keep
    return correct.sum().float() / keep.sum().clamp_min(1)
    # END SOLUTION


def gradient_clipping(parameters: Iterable[nn.Parameter], max_l2_norm: float, eps: float = 1e-6) -> Tensor:
    """Clip gradients in place by their global L2 norm; return the norm before clipping.

    The norm is over all gradients together (parameters without a gradient are skipped). If it
    exceeds ``max_l2_norm``, every gradient is multiplied by ``max_l2_norm / (norm + eps)``.
    """
    # BEGIN SOLUTION
    gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if not gradients:
        return torch.tensor(0.0)
    # sum() starts from the int 0, which mypy cannot rule out for an empty list (returned above).
    norm = torch.sqrt(sum(gradient.detach().float().pow(2).sum() for gradient in gradients))  # type: ignore[arg-type]
    # torch.where, not `if norm > max_l2_norm`: a Python branch on a tensor waits for the device at
    # every step. Below the threshold the factor is exactly 1.0, which leaves the gradients unchanged.
    scale = torch.where(norm > max_l2_norm, max_l2_norm / (norm + eps), torch.ones_like(norm))
    for gradient in gradients:
        gradient.mul_(scale.to(gradient.dtype))
    return norm
    # END SOLUTION


def get_lr_cosine_schedule(
    it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    """The learning rate at step ``it``: linear warmup, cosine decay, then constant.

    * ``it < warmup_iters``: ``it / warmup_iters * max_learning_rate`` (starts at 0);
    * ``warmup_iters <= it <= cosine_cycle_iters``: ``min + (max - min) * (1 + cos(pi * progress)) / 2``
      with ``progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)``;
    * ``it > cosine_cycle_iters``: ``min_learning_rate``.
    """
    # BEGIN SOLUTION
    if it < warmup_iters:
        return it / warmup_iters * max_learning_rate
    if it > cosine_cycle_iters:
        return min_learning_rate
    span = cosine_cycle_iters - warmup_iters
    progress = (it - warmup_iters) / span if span > 0 else 1.0
    return min_learning_rate + (max_learning_rate - min_learning_rate) * (1 + math.cos(math.pi * progress)) / 2
    # END SOLUTION
