"""How many CPU threads torch uses while the report measures a model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from cs288_lm.model import count_parameters

BIG_MODEL = 20_000_000  # parameters: above this, torch's default number of CPU threads
TORCH_THREADS = torch.get_num_threads()


def threads_for(model: nn.Module, requested: int | None) -> int:
    """``requested``, else 1 thread for a model under :data:`BIG_MODEL` parameters, else torch's default."""
    if requested is not None:
        return requested
    return 1 if count_parameters(model) < BIG_MODEL else TORCH_THREADS


@contextlib.contextmanager
def threads_while(model: nn.Module, requested: int | None) -> Iterator[None]:
    """Use :func:`threads_for` threads inside the block, then as many as before."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads_for(model, requested))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
