"""Numerical building blocks shared by the model and the training code (Parts 2 and 3)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


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
