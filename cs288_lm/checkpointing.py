"""Saving and restoring training state (Part 3)."""

from __future__ import annotations

import os
from typing import BinaryIO

import torch
from torch import nn


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO,
) -> None:
    """Save the model's and the optimizer's ``state_dict()`` and the iteration to ``out``.

    ``out`` is a path or a binary file object (``torch.save`` accepts both).
    """
    # BEGIN SOLUTION
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration}, out)
    # END SOLUTION


def load_checkpoint(src: str | os.PathLike | BinaryIO, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` and ``optimizer``.

    Returns the saved iteration. ``src`` is a path or a binary file object.
    """
    # BEGIN SOLUTION
    checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return checkpoint["iteration"]
    # END SOLUTION
