"""Language-modeling data: random training batches from an array of token ids (Part 3).

:func:`get_batch` samples training windows from a 1-D token array, for example a ``.npy`` file
written by :func:`cs288_lm.training.token_files.prepare_token_file` and memory-mapped with
:func:`cs288_lm.training.token_files.load_tokens`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from jaxtyping import Int
from torch import Tensor


def get_batch(
    dataset: npt.NDArray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    rng: np.random.Generator | None = None,
) -> tuple[Int[Tensor, "batch_size context_length"], Int[Tensor, "batch_size context_length"]]:
    """Sample ``batch_size`` random windows of a 1-D token array: inputs and next-token targets.

    Each window starts at an index drawn uniformly from ``0 .. len(dataset) - context_length - 1``
    (every start whose target window fits), independently for each row. Returns
    ``(inputs, targets)``, int64 tensors of shape (batch_size, context_length) on ``device``, with
    ``targets[i, j] == inputs[i, j + 1]`` wherever both exist. ``dataset`` may be a ``np.memmap``:
    read only the windows, never the whole array. ``rng`` (default: numpy's global generator)
    makes the batches reproducible. A dataset shorter than ``context_length + 1`` is a ValueError.
    """
    # BEGIN SOLUTION
    if len(dataset) < context_length + 1:
        raise ValueError(
            f"the dataset has {len(dataset)} tokens; a window of context_length={context_length} needs at least "
            f"{context_length + 1}"
        )
    high = len(dataset) - context_length
    starts = rng.integers(0, high, size=batch_size) if rng is not None else np.random.randint(0, high, size=batch_size)
    windows = np.asarray(dataset[starts[:, None] + np.arange(context_length + 1)], dtype=np.int64)
    batch = torch.from_numpy(windows)
    if torch.device(device).type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    return batch[:, :-1], batch[:, 1:]
    # END SOLUTION
