"""Training FLOPs per token and the accelerator's peak, for model FLOPs utilisation (MFU)."""

from __future__ import annotations

import torch

from cs288_lm.model import count_flops_per_token
from cs288_lm.models.architectures import ModelConfig

# Dense bf16 peak FLOP/s by GPU name, for model FLOPs utilisation (MFU).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def training_flops_per_token(config: ModelConfig) -> int | None:
    """Forward + backward FLOPs per token of ``config``'s model, for model FLOPs utilisation (MFU).

    Three times the forward pass, counted by Part 2's
    :func:`~cs288_lm.model.count_flops_per_token`; None while that function is not written yet
    (the MFU is then reported as unavailable, and training runs all the same).
    """

    def forward_flops(d_ff: int) -> int:
        return count_flops_per_token(
            config.vocab_size, config.context_length, config.d_model, config.num_layers, config.num_heads, d_ff
        )

    try:
        if config.architecture == "llama":
            forward = forward_flops(config.resolved_d_ff)
        else:
            # GPT-2's MLP multiplies by two d_model x d_ff matrices where a SwiGLU of the same width
            # multiplies by three: 2/3 of the SwiGLU's FLOPs; the rest of the model counts the same.
            without_mlp = forward_flops(0)
            forward = without_mlp + (forward_flops(config.resolved_d_ff) - without_mlp) * 2 // 3
    except NotImplementedError:
        return None
    return 3 * forward
