"""Random number generators: everything a resumed run needs to continue identically (given)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(batch_rng: np.random.Generator) -> dict:
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy_batches": batch_rng.bit_generator.state,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, batch_rng: np.random.Generator) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    batch_rng.bit_generator.state = state["numpy_batches"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
